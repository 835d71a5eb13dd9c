"""TinyGSM's data filters and 13-gram decontamination.

The paper keeps a generated problem unless its question is too short or has no number, or its code does
not run; it checks no answers. Training questions that share a 13-gram (of normalised words) with any
evaluation question are removed (slm.teach.filters.NgramIndex, shared with every recipe).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from slm.recipes.tinygsm.formats import execute_programs, split_program
from slm.recipes.tinygsm.problems import Problem
from slm.teach.filters import NgramIndex, ngrams, normalized_words  # noqa: F401  (re-exported for the recipe)

_NUMBER = re.compile(r"\d")


@dataclass
class FilterReport:
    kept: int = 0
    too_short: int = 0
    no_number: int = 0
    no_program: int = 0  # the code has no `simple_math_problem` with the question as docstring
    does_not_run: int = 0  # error, timeout, forbidden operation, or a value that is not a number
    contaminated: int = 0
    examples: list[str] = field(default_factory=list)  # a few reasons with sources, for the log

    def summary(self) -> str:
        dropped = {k: getattr(self, k) for k in ("too_short", "no_number", "no_program", "does_not_run",
                                                 "contaminated") if getattr(self, k)}
        return f"kept {self.kept}" + (", dropped " + ", ".join(f"{v} {k}" for k, v in dropped.items())
                                      if dropped else "")


def question_ok(question: str, min_words: int = 8) -> str | None:
    """Why the question is dropped ("too_short", "no_number"), or None when it is kept."""
    if len(question.split()) < min_words:
        return "too_short"
    if not _NUMBER.search(question):
        return "no_number"
    return None


def apply_filters(problems: list[Problem], min_words: int = 8, report: FilterReport | None = None,
                  **execute_options) -> tuple[list[Problem], FilterReport]:
    """Keep problems whose question passes `question_ok` and whose code runs in the sandbox and returns a
    number. The returned value becomes the problem's answer (TinyGSM trusts the code; it has no other)."""
    report = report or FilterReport()
    candidates = []
    for p in problems:
        why = question_ok(p.question, min_words) or (None if split_program(p.code) else "no_program")
        if why:
            setattr(report, why, getattr(report, why) + 1)
            _note(report, p, why)
        else:
            candidates.append(p)
    kept = []
    for p, run in zip(candidates, execute_programs([p.code for p in candidates], **execute_options)):
        if run.status != "ok" or run.value is None:
            report.does_not_run += 1
            _note(report, p, f"does not run ({run.status}{': ' + run.error if run.error else ''})")
            continue
        p.answer = run.value
        kept.append(p)
    report.kept = len(kept)
    return kept, report


def _note(report: FilterReport, p: Problem, why: str) -> None:
    if len(report.examples) < 5:
        report.examples.append(f"{p.source or p.template}: {why}")


# ------------------------------------------------------------------------------------------ decontamination

class Decontaminator(NgramIndex):
    """The evaluation questions' n-grams (slm.teach.filters.NgramIndex); `filter` drops problems whose question
    shares one, and counts them in a FilterReport."""

    def filter(self, problems: list[Problem], report: FilterReport | None = None
               ) -> tuple[list[Problem], FilterReport]:
        report = report or FilterReport()
        kept = []
        for p in problems:
            if self.contaminated(p.question):
                report.contaminated += 1
                _note(report, p, f"shares a {self.n}-gram with the evaluation set")
            else:
                kept.append(p)
        report.kept = len(kept)
        return kept, report
