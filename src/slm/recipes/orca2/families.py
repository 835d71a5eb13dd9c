"""The task families' items and their checkers.

    items = family_items("arithmetic", n=400, seed=0)        # [{"question", "answer", "steps", "fact", "explanation"}]
    train, held_out = split_items(items, held_out=40)      # disjoint by question
    correct(text, item, check="number")                    # is this answer right?

Each built-in source writes items with every field a strategy's scripted answer reads, so the scripted teacher
can answer any family in any strategy. Checkers read the answer an output gives (after its last "Answer:" or
"The answer is", else its last line): `number` compares its last number with the item's answer, which for
arithmetic is the question's expression executed (a safe evaluator over + and -); `key` wants the item's answer
as a whole word of a short answer (at most 12 words, so a list of every candidate does not pass).
"""
from __future__ import annotations

import ast
import json
import operator
import random
import re
from pathlib import Path

from slm.errors import ConfigError

NAMES = ["red", "blue", "green", "gold", "grey", "pink", "teal", "plum", "jade", "rust", "sand", "mint"]
ARITHMETIC_ASKS = ["Compute {e}.", "What is {e}?", "Work out {e}.", "Calculate {e}."]
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub}


def evaluate_sum(expression: str) -> int:
    """The value of an expression of integers, + and - only (never eval)."""
    def walk(node):
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        raise ValueError(f"not a sum of integers: {expression!r}")
    return walk(ast.parse(expression, mode="eval").body)


def arithmetic(rng: random.Random) -> dict:
    numbers = [rng.randint(10, 99) for _ in range(rng.randint(3, 4))]
    ops = [rng.choice("+-") for _ in numbers[1:]]
    expression = " ".join([str(numbers[0])] + [f"{o} {n}" for o, n in zip(ops, numbers[1:])])
    steps, total = [], numbers[0]
    for o, n in zip(ops, numbers[1:]):
        new = total + n if o == "+" else total - n
        steps.append(f"{total} {o} {n} = {new}")
        total = new
    answer = evaluate_sum(expression)  # the checker's truth is the executed expression, not the steps above
    return {"question": rng.choice(ARITHMETIC_ASKS).format(e=expression), "answer": str(answer), "steps": steps,
            "fact": f"adding and subtracting left to right gives {answer}",
            "explanation": f"working left to right, {expression} comes to {answer}."}


def lookup(rng: random.Random) -> dict:
    names = rng.sample(NAMES, rng.randint(4, 6))
    values = {n: rng.randint(1, 99) for n in names}
    key = rng.choice(names)
    listing = ", ".join(f"{n}={v}" for n, v in values.items())
    return {"question": f"Stock: {listing}. How many {key}?", "answer": str(values[key]),
            "steps": [f"Find {key} in the list: {key}={values[key]}.", f"So there are {values[key]} {key}."],
            "fact": f"the list says {key}={values[key]}", "explanation": f"the list pairs {key} with {values[key]}."}


def compare(rng: random.Random) -> dict:
    a, b = rng.sample(range(10, 100), 2)
    larger = rng.random() < 0.5
    pick = max(a, b) if larger else min(a, b)
    word = "larger" if larger else "smaller"
    if a // 10 != b // 10:
        reason = f"{a} has {a // 10} tens and {b} has {b // 10} tens"
    else:
        reason = f"both have {a // 10} tens, and {a} has {a % 10} ones while {b} has {b % 10}"
    return {"question": f"Which is {word}, {a} or {b}?", "answer": str(pick),
            "steps": [f"Compare: {reason}.", f"So {pick} is {word}."],
            "fact": f"{reason}", "explanation": f"{reason}, so {pick} is {word}."}


def stdlib_functions(files: int) -> list[tuple[str, str]]:
    """(function, dotted module) for public top-level functions defined in exactly one of the first stdlib files."""
    from slm.data.sources import stdlib_dir, stdlib_files

    root, seen = stdlib_dir(), {}
    for path in stdlib_files(files):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError, ValueError):
            continue
        module = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                seen.setdefault(node.name, set()).add(module)
    return sorted((name, next(iter(mods))) for name, mods in seen.items() if len(mods) == 1)


def recall_items(n: int, seed: int, files: int = 300) -> list[dict]:
    functions = stdlib_functions(files)
    random.Random(f"orca2-recall:{seed}").shuffle(functions)
    return [{"question": f"Which module of the Python standard library defines the function {name}?",
             "answer": module, "steps": [f"{name} is a function of the standard library.", f"It is defined in {module}."],
             "fact": f"{name} is defined in the {module} module", "explanation": f"{name} lives in {module}."}
            for name, module in functions[:n]]


SOURCES = {"arithmetic": arithmetic, "lookup": lookup, "compare": compare}


def family_items(source: str, n: int, seed: int, files: int = 300) -> list[dict]:
    """n distinct items (by question) from a built-in source or a JSONL file of {"question", "answer", ...}."""
    if source == "recall":
        return recall_items(n, seed, files)
    if source in SOURCES:
        rng, items, questions = random.Random(f"orca2-{source}:{seed}"), [], set()
        for _ in range(50 * n):
            item = SOURCES[source](rng)
            if item["question"] not in questions:
                questions.add(item["question"])
                items.append(item)
                if len(items) == n:
                    break
        return items
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"family source {source!r} is neither a built-in ({', '.join([*SOURCES, 'recall'])}) "
                          "nor a JSONL file")
    from slm.io import iter_jsonl

    items = []
    for where, record in iter_jsonl(path, what="family source"):
        if not {"question", "answer"} <= set(record):
            raise ConfigError(f"{where}: every line needs \"question\" and \"answer\"")
        items.append({**record, "answer": str(record["answer"])})
    return items[:n]


def split_items(items: list[dict], held_out: int) -> tuple[list[dict], list[dict]]:
    """(train, held out): the last `held_out` items are held out; no held-out question is in the training part."""
    if held_out >= len(items):
        raise ConfigError(f"{len(items)} items leave nothing to train on after holding out {held_out}")
    train, test = items[:-held_out], items[-held_out:]
    questions = {i["question"] for i in test}
    return [i for i in train if i["question"] not in questions], test


def given_answer(text: str) -> str:
    """The answer an output gives: after its last "Answer:" or "The answer is", else its last non-blank line."""
    for marker in ("Answer:", "The answer is"):
        if marker in text:
            tail = text.rsplit(marker, 1)[1].strip()
            return tail.splitlines()[0].strip().rstrip(".") if tail else ""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def correct(text: str, item: dict, check: str) -> bool:
    answer = given_answer(text)
    if check == "number":
        numbers = re.findall(r"-?\d+", answer)
        return bool(numbers) and int(numbers[-1]) == int(item["answer"])
    words = answer.split()
    return 0 < len(words) <= 12 and re.search(rf"(?<![\w.]){re.escape(item['answer'])}(?![\w.])", answer) is not None
