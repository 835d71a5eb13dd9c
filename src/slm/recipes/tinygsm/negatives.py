"""Contrast pairs for the verifier: a correct program, and the same program with one number miscopied.

On problems from unfamiliar templates, the small generator's commonest mistake is a miscopied number: the
program's structure is right but a literal is not the question's (`per_hour = 11` for "$7 an hour").
Ranking the samples of one question therefore means checking each literal against the question. The
paper's verifier data (generator samples labelled by execution) hold few such contrasts at CPU scale, and
a verifier trained on them alone ranks the samples of one question at chance (docs/recipes/tinygsm.md). These
pairs put the contrast in directly: the gold program (label 1) and copies with one literal replaced by
another number of the question or a nearby value, each run in the sandbox and labelled 0 only when its
answer changes. Labels still come from execution; this is an addition to the paper's data, not a
replacement, and it is off unless `verifier.contrast_pairs` is set.
"""
from __future__ import annotations

import random
import re

from slm.recipes.tinygsm.formats import answers_match, execute_programs, prompt_for, split_program

_LITERAL = re.compile(r"^(\s+\w+ = )(\d+)$")


def miscopied(code: str, rng: random.Random) -> str | None:
    """The program with one integer literal of its body replaced, or None when it has none to replace."""
    parts = split_program(code)
    if parts is None:
        return None
    question, body = parts
    lines = body.split("\n")
    slots = [i for i, line in enumerate(lines) if _LITERAL.match(line)]
    if not slots:
        return None
    i = rng.choice(slots)
    prefix, digits = _LITERAL.match(lines[i]).groups()
    value = int(digits)
    others = sorted({int(n) for n in re.findall(r"\d+", question)} - {value})
    if others and rng.random() < 0.5:
        new = rng.choice(others)  # another number of the question: the wrong one copied
    else:
        new = value + rng.choice((-1, 1)) * rng.randint(1, max(2, value // 2))  # a near miss
    if new < 0 or new == value:
        return None
    lines[i] = f"{prefix}{new}"
    return prompt_for(question) + "\n".join(lines)


def contrast_pairs(problems, per_problem: int, seed: int, workers: int | None = None):
    """[(question, body, correct)]: each problem's gold body (correct) and up to `per_problem` miscopied
    bodies whose executed answer differs from the gold one."""
    rng = random.Random(seed)
    gold, corrupted = [], []
    for p in problems:
        parts = split_program(p.code)
        if parts is None or p.answer is None:
            continue
        gold.append((p.question, parts[1], True))
        for _ in range(per_problem):
            program = miscopied(p.code, rng)
            if program is not None:
                corrupted.append((p, program))
    runs = execute_programs([program for _, program in corrupted], workers=workers)
    wrong = [(p.question, split_program(program)[1], False) for (p, program), run in zip(corrupted, runs)
             if run.value is not None and not answers_match(run.value, p.answer)]
    return gold + wrong
