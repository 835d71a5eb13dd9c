"""The embedded task collection: 21 instruction tasks in 7 clusters, made from the Python standard library that
every machine has (no download), each phrased by 5-8 templates written for it, 1-2 of them turned around.

    collection = stdlib_collection(files=300, per_task=1500)
    collection.clusters   # {"summarization": [...], "naming": [...], "nli": [...], "paraphrase": [...], ...}

Clusters (FLAN's names where the kind of task matches):
  summarization  function / class / module -> the first sentence of its docstring        (Rouge-L)
  naming         docstring or body -> the function's or class's name                     (exact match)
  nli            does this docstring describe this code / name / method? yes or no       (rank classification)
  paraphrase     are these two lines / sentences / signatures the same up to rewording?  (rank classification)
  cloze          the identifier, keyword or docstring word behind ___                    (exact match / rank)
  arithmetic     counting word problems about the code, with worked reasoning (CoT)      (exact match)
  read_comp      questions answered by reading a function: first parameter, count, return (exact match)
Negative pairs (nli, paraphrase) pair an item with another one drawn by a seeded generator, half of each task's
examples positive.
"""
from __future__ import annotations

import ast
import keyword
import random
import re

from slm.instruct.tasks import Collection, Task, Template

YES_NO = ["yes", "no"]
KEYWORDS = ["def", "return", "import", "if", "for", "while", "class", "with", "raise", "try"]


def _first_sentence(doc: str | None) -> str | None:
    if not doc:
        return None
    text = " ".join(doc.strip().split("\n\n")[0].split())
    sentence = re.split(r"(?<=[.!?])\s", text)[0]
    return sentence if 3 <= len(sentence.split()) <= 25 and sentence.isascii() else None


def _items(files: int) -> dict[str, list]:
    """Functions, classes and modules of the first `files` stdlib files, with what the tasks read of them."""
    from slm.data.sources import stdlib_files

    functions, classes, modules, lines = [], [], [], []
    for path in stdlib_files(files):
        try:
            source = path.read_text(encoding="utf-8")
            tree = ast.parse(source)
        except (SyntaxError, UnicodeDecodeError, OSError, ValueError):
            continue
        names = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
        doc = _first_sentence(ast.get_docstring(tree))
        if doc and len(names) >= 2:
            modules.append({"module": path.stem, "names": ", ".join(names[:8]), "answer": doc})
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("__"):
                summary = _first_sentence(ast.get_docstring(node))
                params = [a.arg for a in node.args.args]
                body = [ast.unparse(s) for s in node.body if not (isinstance(s, ast.Expr) and
                                                                   isinstance(s.value, ast.Constant))]
                code = "\n".join(body)[:200]
                if not body or len(code) < 20:
                    continue
                signature = f"def {node.name}({', '.join(params)}):"
                returns = [ast.unparse(n.value) for n in ast.walk(node) if isinstance(n, ast.Return) and n.value]
                functions.append({"name": node.name, "params": params, "signature": signature, "body": code,
                                  "code": f"{signature}\n    " + code.replace("\n", "\n    "), "summary": summary,
                                  "returns": returns[0] if returns and len(returns[0]) <= 40 else None})
            elif isinstance(node, ast.ClassDef):
                methods = [n.name for n in node.body if isinstance(n, ast.FunctionDef)]
                summary = _first_sentence(ast.get_docstring(node))
                if summary and methods:
                    classes.append({"name": node.name, "methods": methods, "summary": summary,
                                    "code": f"class {node.name}:\n" + "\n".join(f"    def {m}(...): ..."
                                                                                  for m in methods[:6])})
        lines += [ln.strip() for ln in source.splitlines() if 12 <= len(ln.strip()) <= 70 and ln.strip().isascii()
                  and not ln.strip().startswith(("#", '"', "'"))]
    return {"functions": functions, "classes": classes, "modules": modules, "lines": lines}


def _pairs(items: list[dict], n: int, rng: random.Random, make) -> list[dict]:
    """n examples, half positive (an item with itself) and half negative (with another item)."""
    out = []
    for i in range(min(n, len(items))):
        a = items[rng.randrange(len(items))]
        b = a if i % 2 == 0 else items[rng.randrange(len(items))]
        if b is not a and make(a, b, "no") == make(a, a, "no"):
            continue
        out.append(make(a, b, "yes" if b is a else "no"))
    return out


def _yes_no_templates(question: str, turned: str | None = None) -> list[Template]:
    """Six phrasings of a yes/no question over the fields `first` and `second`."""
    t = [Template(f"{{{{first}}}}\n\n{{{{second}}}}\n\n{question}"),
         Template(f"{question}\n\nA: {{{{first}}}}\nB: {{{{second}}}}"),
         Template(f"Here are two items.\n{{{{first}}}}\n---\n{{{{second}}}}\nAnswer yes or no: {question}"),
         Template(f"{{{{first}}}}\nand\n{{{{second}}}}\n{question} Yes or no?"),
         Template(f"Question: {question}\nFirst: {{{{first}}}}\nSecond: {{{{second}}}}\nAnswer:"),
         Template(f"Consider:\n{{{{first}}}}\n\nNow consider:\n{{{{second}}}}\n\n{question}")]
    if turned:
        t.append(Template(turned, "{{second}}", turned=True))
    return t


def _mask(text: str, word: str) -> str:
    return re.sub(rf"\b{re.escape(word)}\b", "___", text, count=1)


def stdlib_collection(files: int = 300, per_task: int = 1500, seed: int = 0) -> Collection:
    rng = random.Random(f"flan-collection:{seed}")
    items = _items(files)
    fns = [f for f in items["functions"]]
    documented = [f for f in fns if f["summary"]]
    classes, modules, lines = items["classes"], items["modules"], items["lines"]
    rng.shuffle(fns)
    rng.shuffle(documented)
    c = Collection()

    def add(name, cluster, metric, examples, templates, **kw):
        c.add(Task(name, cluster, metric, examples[:per_task], templates, **kw))

    # ---- summarization
    add("function_summary", "summarization", "rougeL",
        [{"code": f["code"], "name": f["name"], "answer": f["summary"]} for f in documented], [
            Template("{{code}}\n\nSummarize what this function does in one sentence."),
            Template("Write a one-line docstring for this function:\n{{code}}"),
            Template("What does `{{name}}` do?\n\n{{code}}"),
            Template("{{code}}\n\nTL;DR:"),
            Template("Describe the purpose of the following Python code.\n{{code}}"),
            Template("Write a Python function that does the following: {{answer}}", "{{code}}", turned=True)],
        overlaps=("function_name_from_doc", "docstring_matches_code"))
    add("class_summary", "summarization", "rougeL",
        [{"code": k["code"], "name": k["name"], "answer": k["summary"]} for k in classes], [
            Template("{{code}}\n\nSummarize what this class is for."),
            Template("Write the first line of the docstring of class {{name}}:\n{{code}}"),
            Template("In one sentence, what is `{{name}}`?\n{{code}}"),
            Template("{{code}}\n\nOne-sentence description:"),
            Template("Sketch the methods of a class described as: {{answer}}", "{{code}}", turned=True)])
    add("module_summary", "summarization", "rougeL",
        [{"module": m["module"], "names": m["names"], "answer": m["answer"]} for m in modules], [
            Template("The module {{module}} defines {{names}}. Summarize the module."),
            Template("Module: {{module}}\nContents: {{names}}\nWhat is this module about?"),
            Template("Write a module docstring for {{module}}, which contains {{names}}."),
            Template("{{module}} ({{names}}): describe it in one sentence."),
            Template("Name some functions a module described as \"{{answer}}\" would define.", "{{names}}",
                     turned=True)])
    # ---- naming
    add("function_name_from_doc", "naming", "exact_match",
        [{"doc": f["summary"], "answer": f["name"]} for f in documented], [
            Template("A function is documented as: \"{{doc}}\" What is it called?"),
            Template("Docstring: {{doc}}\nFunction name:"),
            Template("Suggest the Python name of a function that does this: {{doc}}"),
            Template("{{doc}}\n\nWhich function is this?"),
            Template("Name the function.\n\n{{doc}}"),
            Template("What might the function {{answer}} do?", "{{doc}}", turned=True)])
    add("function_name_from_body", "naming", "exact_match",
        [{"body": f["body"], "answer": f["name"]} for f in fns], [
            Template("def ___(...):\n{{body}}\n\nWhat is the name of this function?"),
            Template("Give this function body a name:\n{{body}}"),
            Template("{{body}}\n\nThe function containing this code is called"),
            Template("Read the code and name the function.\n{{body}}"),
            Template("Write the body of a function called {{answer}}.", "{{body}}", turned=True)])
    add("class_name_from_doc", "naming", "exact_match",
        [{"doc": k["summary"], "answer": k["name"]} for k in classes], [
            Template("A class is documented as: \"{{doc}}\" What is it called?"),
            Template("Class docstring: {{doc}}\nClass name:"),
            Template("Which Python class is described here? {{doc}}"),
            Template("{{doc}}\n\nName the class."),
            Template("Describe the class {{answer}}.", "{{doc}}", turned=True)])
    # ---- nli: does the first entail (describe) the second?
    add("docstring_matches_code", "nli", "rank_classification",
        _pairs(documented, per_task, rng, lambda a, b, y: {"first": a["summary"], "second": b["code"], "answer": y,
                                                            "options": YES_NO}),
        _yes_no_templates("Does the sentence describe the code?",
                          "Write code that the sentence describes:\n{{first}}"), options_field="options")
    add("name_matches_docstring", "nli", "rank_classification",
        _pairs(documented, per_task, rng, lambda a, b, y: {"first": a["summary"], "second": b["name"], "answer": y,
                                                            "options": YES_NO}),
        _yes_no_templates("Is the second the name of the function the first describes?",
                          "Name a function documented as: {{first}}"), options_field="options")
    add("class_has_method", "nli", "rank_classification",
        _pairs(classes, per_task, rng, lambda a, b, y: {"first": f"class {a['name']}: {a['summary']}",
                                                         "second": b["methods"][0], "answer": y,
                                                         "options": YES_NO}),
        _yes_no_templates("Does the class in the first define the method in the second?"),
        options_field="options")

    # ---- paraphrase: the same thing said twice?
    def renamed(line: str) -> str:
        words = [w for w in re.findall(r"\b[a-z_][a-z0-9_]{2,}\b", line) if not keyword.iskeyword(w)]
        return re.sub(rf"\b{re.escape(words[0])}\b", words[0] + "_2", line) if words else line + "  # same"
    add("same_line_renamed", "paraphrase", "rank_classification",
        _pairs([{"line": ln} for ln in lines], per_task, rng,
               lambda a, b, y: {"first": a["line"], "second": renamed(b["line"]), "answer": y, "options": YES_NO}),
        _yes_no_templates("Are these two lines the same code up to renaming one name?"), options_field="options")
    add("same_sentence_reworded", "paraphrase", "rank_classification",
        _pairs(documented, per_task, rng, lambda a, b, y: {
            "first": a["summary"], "second": re.sub(r"[^\w\s]", "", b["summary"]).lower(), "answer": y,
            "options": YES_NO}),
        _yes_no_templates("Do these two sentences say the same thing?",
                          "Rewrite this sentence in lower case without punctuation: {{first}}"),
        options_field="options")
    add("same_signature_spacing", "paraphrase", "rank_classification",
        _pairs(fns, per_task, rng, lambda a, b, y: {"first": a["signature"],
                                                    "second": b["signature"].replace(", ", ",").replace("(", "( "),
                                                    "answer": y, "options": YES_NO}),
        _yes_no_templates("Are these the same function signature, ignoring spaces?"), options_field="options")
    # ---- cloze
    cloze_lines = []
    for ln in lines:
        words = [w for w in re.findall(r"\b[a-z_][a-z0-9_]{3,}\b", ln) if not keyword.iskeyword(w)]
        if words:
            word = words[len(words) // 2]
            cloze_lines.append({"masked": _mask(ln, word), "answer": word, "line": ln})
    add("fill_identifier", "cloze", "exact_match", cloze_lines, [
        Template("Fill in the blank:\n{{masked}}"),
        Template("{{masked}}\n\nWhat name goes in place of ___?"),
        Template("Complete the line of Python: {{masked}}"),
        Template("The missing identifier in `{{masked}}` is"),
        Template("Blank out one identifier in this line: {{line}}", "{{masked}}", turned=True)])
    keyword_lines = []
    for ln in lines:
        first = ln.split()[0] if ln.split() else ""
        if first in KEYWORDS:
            keyword_lines.append({"masked": "___" + ln[len(first):], "answer": first,
                                  "options": sorted(rng.sample([k for k in KEYWORDS if k != first], 3) + [first])})
    add("fill_keyword", "cloze", "rank_classification", keyword_lines, [
        Template("Which keyword starts this line?\n{{masked}}"),
        Template("{{masked}}\n\nThe missing keyword is"),
        Template("Fill in the Python keyword: {{masked}}"),
        Template("Complete: {{masked}}"),
        Template("What is the first word of the line?\n{{masked}}")], options_field="options")
    doc_words = []
    for f in documented:
        words = [w for w in re.findall(r"\b[a-z]{4,}\b", f["summary"])]
        if words:
            doc_words.append({"masked": _mask(f["summary"], words[-1]), "answer": words[-1], "doc": f["summary"]})
    add("fill_docstring_word", "cloze", "exact_match", doc_words, [
        Template("Fill in the missing word: {{masked}}"),
        Template("{{masked}}\n\nWhich word is missing?"),
        Template("Complete the docstring: {{masked}}"),
        Template("The blank in \"{{masked}}\" is"),
        Template("Remove one word from: {{doc}}", "{{masked}}", turned=True)])

    # ---- arithmetic with worked answers (CoT)
    def arithmetic(kind: str) -> list[dict]:
        out = []
        for i in range(per_task):
            r = random.Random(f"flan-arith:{seed}:{kind}:{i}")
            f = fns[r.randrange(len(fns))]
            a, b, k = r.randint(2, 30), r.randint(2, 30), r.randint(2, 9)
            if kind == "add":
                q = f"A module has {a} functions like {f['name']} and {b} classes. How many definitions is that?"
                cot, ans = f"{a} functions plus {b} classes is {a} + {b} = {a + b}.", a + b
            elif kind == "multiply":
                q = f"Each of {k} files defines {a} functions like {f['name']}. How many functions in all?"
                cot, ans = f"{k} files times {a} functions is {k} * {a} = {k * a}.", k * a
            else:
                q = (f"A package has {k} modules with {a} functions each, plus {b} helpers like {f['name']}. "
                     "How many functions does it have?")
                cot, ans = f"{k} * {a} = {k * a} functions in modules, and {k * a} + {b} = {k * a + b}.", k * a + b
            out.append({"question": q, "cot": cot, "answer": str(ans)})
        return out
    arithmetic_templates = [Template("{{question}}"), Template("Q: {{question}}\nA:"),
                            Template("Solve: {{question}}"), Template("{{question}} Show your work."),
                            Template("Answer the question.\n{{question}}"),
                            Template("Write a word problem whose answer is {{answer}}.", "{{question}}",
                                     turned=True)]
    for kind in ("add", "multiply", "two_step"):
        add(f"count_{kind}", "arithmetic", "exact_match", arithmetic(kind), arithmetic_templates, cot_field="cot")
    # ---- reading comprehension over a function's source
    with_params = [f for f in fns if f["params"] and f["params"][0] not in ("self", "cls")]
    add("first_parameter", "read_comp", "exact_match",
        [{"code": f["code"], "answer": f["params"][0]} for f in with_params], [
            Template("{{code}}\n\nWhat is the first parameter of this function?"),
            Template("Read the code.\n{{code}}\nQuestion: which argument comes first?\nAnswer:"),
            Template("{{code}}\n\nName the function's first argument."),
            Template("Given\n{{code}}\nthe first parameter is"),
            Template("Write a function whose first parameter is {{answer}}.", "{{code}}", turned=True)])
    add("count_parameters", "read_comp", "exact_match",
        [{"code": f["code"], "answer": str(len(f["params"]))} for f in fns], [
            Template("{{code}}\n\nHow many parameters does this function take?"),
            Template("Read the code.\n{{code}}\nQuestion: how many arguments?\nAnswer:"),
            Template("{{code}}\n\nCount the parameters."),
            Template("The number of parameters of\n{{code}}\nis")])
    add("return_value", "read_comp", "exact_match",
        [{"code": f["code"], "answer": f["returns"]} for f in fns if f["returns"]], [
            Template("{{code}}\n\nWhat expression does this function return first?"),
            Template("Read the code.\n{{code}}\nQuestion: what does the first return statement return?\nAnswer:"),
            Template("{{code}}\n\nThe first return value is"),
            Template("Write a function that returns {{answer}}.", "{{code}}", turned=True)])
    return c
