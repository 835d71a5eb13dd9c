"""TinyGSM data: the program format, the generator and its template splits, readers, filters, decontamination."""
import json
import random

import pytest

from slm.errors import SlmError
from slm.recipes.tinygsm import filters, formats, problems
from slm.recipes.tinygsm.problems import Problem

GOLDEN = '''def simple_math_problem() -> int:
    """
    Emma has 12 apples. She buys 5 more apples. How many apples does she have now?
    """
    apples = 12
    more = 5
    apples = apples + more
    result = apples
    return result
'''


def test_render_and_split_golden():
    question = "Emma has 12 apples.  She buys 5 more apples.\nHow many apples does she have now?"
    lines = ["apples = 12", "more = 5", "apples = apples + more", "result = apples", "return result"]
    code = formats.render_program(question, lines)
    assert code == GOLDEN
    q, body = formats.split_program(code)
    assert q == "Emma has 12 apples. She buys 5 more apples. How many apples does she have now?"
    assert body == "".join(f"    {line}\n" for line in lines)
    assert formats.prompt_for(q) + body == code
    assert formats.split_program("x = 1\n") is None


def test_completion_body_stops_at_unindented_text():
    text = "    x = 2\n    result = x\n    return result\n\nprint('junk')\ndef other():\n"
    assert formats.completion_body(text) == "    x = 2\n    result = x\n    return result\n"


def test_generated_programs_return_their_answers():
    templates = problems.all_templates()
    rng = random.Random(0)
    sample = [problems.instantiate(t, rng) for t in rng.sample(templates, 150)]
    runs = formats.execute_programs([p.code for p in sample], batch_size=50)
    for p, run in zip(sample, runs):
        assert run.status == "ok", (p.code, run)
        assert formats.answers_match(run.value, p.answer), (p.code, run.value, p.answer)
        assert formats.split_program(p.code)[0] == p.question


def test_generator_is_reproducible_and_covers_the_issue_topics():
    templates = problems.all_templates()
    a = problems.generate(templates, 400, seed=3)
    b = problems.generate(templates, 400, seed=3)
    assert [p.code for p in a] == [p.code for p in b]
    assert [p.code for p in a] != [p.code for p in problems.generate(templates, 400, seed=4)]
    text = " ".join(p.question for p in a)
    for topic in ("%", "$", "per hour", "minutes", "km", "meters", "years old", "dozen"):
        assert topic in text, topic
    # Every program computes: at least one arithmetic operation after the docstring.
    assert all(sum(line.count(op) for line in p.code.splitlines()[4:] for op in "+-*/") >= 1 for p in a)
    noisy = [p for p in a if "noise.none" not in p.template]
    assert noisy and len(noisy) < len(a)


def test_template_split_is_disjoint_seeded_and_keeps_every_part_in_training():
    templates = problems.all_templates()
    train, test = problems.template_split(templates, 0.2, seed=0)
    assert {t.id for t in train}.isdisjoint({t.id for t in test})
    # No paraphrase crosses the split: a skeleton's phrasing and noise variants all fall on one side.
    assert {t.skeleton for t in train}.isdisjoint({t.skeleton for t in test})
    assert len({t.skeleton for t in test}) > 50
    assert len(train) + len(test) == len(templates)
    assert 0.15 < len(test) / len(templates) < 0.25
    assert {t.id for t in problems.template_split(templates, 0.2, seed=1)[1]} != {t.id for t in test}
    # Held-out templates are new combinations: each of their parts appears in some training template.
    train_parts = {part for t in train for part in t.id.split("|")}
    assert all(set(t.id.split("|")) <= train_parts for t in test)
    generated = problems.generate(test, 50, seed=0)
    assert {p.template for p in generated} <= {t.id for t in test}


def test_read_tinygsm_jsonl(tmp_path):
    path = tmp_path / "tinygsm.jsonl"
    records = [{"question": "Emma has 12 apples. She buys 5 more apples. How many apples does she have now?",
                "code": GOLDEN},
               {"question": "Tom has 3 bags with 4 pens in each bag. How many pens does he have?",
                "code": "pens = 3 * 4\nresult = pens\nreturn result"}]  # a body without the header
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n\n")
    read = formats.read_tinygsm_jsonl(path)
    assert [p.question for p in read] == [r["question"] for r in records]
    assert read[0].code == GOLDEN
    assert read[1].code.startswith(formats.prompt_for(records[1]["question"]))
    assert read[0].answer is None and read[0].source.endswith(":1")
    kept, report = filters.apply_filters(read)
    assert [p.answer for p in kept] == [17, 12]
    (tmp_path / "bad.jsonl").write_text('{"question": "x"}\n')
    with pytest.raises(SlmError, match="bad.jsonl:1"):
        formats.read_tinygsm_jsonl(tmp_path / "bad.jsonl")


def test_read_gsm8k_jsonl(tmp_path):
    path = tmp_path / "gsm8k.jsonl"
    rows = [{"question": "A pen costs 3 dollars. How much do 4 pens cost?", "answer": "4 * 3 = <<4*3=12>>12\n#### 12"},
            {"question": "Q2 has 1,000 dollars?", "answer": "...\n#### $1,250"},
            {"question": "Q3?", "answer": "#### -2.5"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    read = formats.read_gsm8k_jsonl(path)
    assert [p.answer for p in read] == [12, 1250, -2.5]
    assert read[0].code == ""
    (tmp_path / "noanswer.jsonl").write_text(json.dumps({"question": "q", "answer": "12"}) + "\n")
    with pytest.raises(SlmError, match="####"):
        formats.read_gsm8k_jsonl(tmp_path / "noanswer.jsonl")
    with pytest.raises(SlmError, match="not found"):
        formats.read_gsm8k_jsonl(tmp_path / "missing.jsonl")


def test_parse_number_and_answers_match():
    assert formats.parse_number("12") == 12 and formats.parse_number("2.5") == 2.5
    for text in ("True", "'12'", "[1]", "nan", "float('inf')", None, "__import__('os')"):
        assert formats.parse_number(text) is None
    assert formats.answers_match(12.0, 12) and formats.answers_match(12.00001, 12)
    assert not formats.answers_match(12.1, 12) and not formats.answers_match(None, 12)


def _program(question, body):
    return formats.prompt_for(question) + body


def test_filters_drop_short_numberless_and_broken_programs():
    q = "Emma has 12 apples and buys 5 more of them. How many apples now?"
    good = Problem(q, _program(q, "    result = 12 + 5\n    return result\n"), None)
    short = Problem("Has 3 apples?", _program("Has 3 apples?", "    return 3\n"), None)
    numberless = Problem("Emma has some apples and buys more of them. How many apples now?", "", None)
    numberless.code = _program(numberless.question, "    return 1\n")
    crashes = Problem(q, _program(q, "    result = apples + 5\n    return result\n"), None)
    loops = Problem(q, _program(q, "    while True:\n        pass\n"), None)
    not_a_number = Problem(q, _program(q, "    return 'seventeen'\n"), None)
    no_program = Problem(q, "print(17)\n", None)
    kept, report = filters.apply_filters([good, short, numberless, crashes, loops, not_a_number, no_program],
                                         per_program_timeout=0.5)
    assert kept == [good] and good.answer == 17
    assert (report.too_short, report.no_number, report.does_not_run, report.no_program, report.kept) == (1, 1, 3, 1, 1)
    assert "kept 1" in report.summary()


def test_a_forbidden_program_does_not_sink_its_batch():
    ok = "def simple_math_problem():\n    return 7\n"
    evil = "import os\nos.system('echo hi')\ndef simple_math_problem():\n    return 1\n"
    runs = formats.execute_programs([ok, evil, ok], batch_size=3)
    assert [r.status for r in runs] == ["ok", "forbidden", "ok"]
    assert [r.value for r in runs] == [7, None, 7]


def test_programs_do_not_share_state():
    first = "import math\nmath.pi = 3\nlen = None\ndef simple_math_problem():\n    return 1\n"
    second = "import math\ndef simple_math_problem():\n    return round(math.pi, 2) + len([1])\n"
    runs = formats.execute_programs([first, second], batch_size=2)
    assert runs[1].status == "ok"
    # builtins are per program; a module is shared within a batch, a documented limit of batching
    assert runs[1].value in (4.14, 4)


def test_decontamination_uses_13_grams_of_normalised_words():
    eval_q = "Emma has 12 apples. She buys 5 more apples at the store on Monday. How many apples does she have?"
    decon = filters.Decontaminator([eval_q])
    # the same 13 words with other case, punctuation and spacing: contaminated
    copy = "LIAM SAYS: emma has 12 apples; she buys 5 more apples at the   store on monday!"
    assert decon.contaminated(copy)
    # 12 shared words in a row are not enough
    twelve = "emma has 12 apples she buys 5 more apples at the store yesterday"
    assert not decon.contaminated(twelve)
    assert filters.ngrams("a b c", 13) == set()
    clean = Problem("Noah has 40 marbles and loses 3 of them in the park. How many are left?", "", None)
    dirty = Problem(copy, "", None)
    kept, report = decon.filter([clean, dirty])
    assert kept == [clean] and report.contaminated == 1


def test_write_jsonl_round_trips(tmp_path):
    ps = problems.generate(problems.all_templates(), 5, seed=0)
    formats.write_jsonl(ps, tmp_path / "out.jsonl")
    back = formats.read_tinygsm_jsonl(tmp_path / "out.jsonl")
    assert [p.code for p in back] == [p.code for p in ps]


def test_contrast_pairs_miscopy_one_number_and_are_labelled_by_execution():
    from slm.recipes.tinygsm import negatives

    probs = problems.generate(problems.all_templates(), 12, seed=5)
    rng = random.Random(0)
    for p in probs:
        bad = negatives.miscopied(p.code, rng)
        if bad is None:
            continue
        before, after = p.code.splitlines(), bad.splitlines()
        changed = [(a, b) for a, b in zip(before, after) if a != b]
        assert len(before) == len(after) and len(changed) == 1  # one line, one literal, nothing else
        (a, b), = changed
        assert a.split("=")[0] == b.split("=")[0] and a.split("=")[1].strip().isdigit()
    assert negatives.miscopied("print(1)\n", rng) is None  # not a TinyGSM program
    pairs = negatives.contrast_pairs(probs, 2, seed=0)
    gold = [(q, body) for q, body, ok in pairs if ok]
    assert gold == [formats.split_program(p.code) for p in probs]
    wrong = [(q, body) for q, body, ok in pairs if not ok]
    assert len(wrong) >= len(probs)  # most miscopies change the answer
    answers = {p.question: p.answer for p in probs}
    runs = formats.execute_programs([formats.prompt_for(q) + body for q, body in wrong])
    assert all(r.value is not None and not formats.answers_match(r.value, answers[q]) for (q, _), r in zip(wrong, runs))
