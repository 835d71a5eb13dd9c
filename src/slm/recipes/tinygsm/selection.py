"""Test-time selection among N sampled programs, and the accuracies of each way of choosing.

For every question we have N samples, each with its executed value (None if it did not run), whether that
value is the gold answer, and a verifier score. The selectors:

    greedy       the one temperature-0 program (a separate sample)
    majority@N   the most common returned value among the samples that ran (ties: the value seen first)
    verifier@N   the value of the highest-scored sample among those that ran (the paper's verify@1 of N)
    weighted@N   the value whose samples have the largest summed verifier score (a vote weighted by the
                 verifier; not in the paper, reported as an extra)
    pass@N       whether ANY sample is correct: the ceiling every selector is under
    pass@1       the mean correctness of one sample (the expected accuracy of picking at random)
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from slm.recipes.tinygsm.formats import answers_match


@dataclass
class Sample:
    value: float | int | None  # what the program returned; None when it did not run
    correct: bool
    score: float = 0.0  # the verifier's P(correct)


def _key(value) -> float:
    """Values that agree within rounding vote together (12 and 12.0 and 12.000001 are one answer)."""
    return round(float(value), 4)


def majority_vote(samples: list[Sample]):
    """The most common value among samples that ran (ties go to the value that appeared first), or None."""
    values = [s.value for s in samples if s.value is not None]
    if not values:
        return None
    counts = Counter(_key(v) for v in values)
    best = max(counts.values())
    return next(v for v in values if counts[_key(v)] == best)


def verifier_pick(samples: list[Sample]) -> Sample | None:
    """The highest-scored sample among those that ran (the first of equal scores), or None."""
    ran = [s for s in samples if s.value is not None]
    return max(ran, key=lambda s: s.score) if ran else None


def weighted_vote(samples: list[Sample]):
    """The value with the largest total verifier score over the samples that returned it, or None."""
    totals: dict[float, float] = {}
    first: dict[float, object] = {}
    for s in samples:
        if s.value is not None:
            totals[_key(s.value)] = totals.get(_key(s.value), 0.0) + s.score
            first.setdefault(_key(s.value), s.value)
    if not totals:
        return None
    return first[max(totals, key=lambda k: totals[k])]


def selection_metrics(samples_per_question: list[list[Sample]], golds: list, greedy_correct: list[bool]) -> dict:
    """Accuracies (fractions of questions) of greedy, pass@1, majority@N, verifier@N, weighted@N and pass@N."""
    n = len(samples_per_question)
    if n == 0 or len(golds) != n or len(greedy_correct) != n:
        raise ValueError("need one gold and one greedy result per question")
    majority = verifier = weighted = passed = 0
    pass1 = 0.0
    for samples, gold in zip(samples_per_question, golds):
        majority += answers_match(majority_vote(samples), gold)
        pick = verifier_pick(samples)
        verifier += bool(pick is not None and pick.correct)
        weighted += answers_match(weighted_vote(samples), gold)
        passed += any(s.correct for s in samples)
        pass1 += sum(s.correct for s in samples) / max(len(samples), 1)
    return {"greedy": sum(map(bool, greedy_correct)) / n, "pass@1": pass1 / n, "majority@N": majority / n,
            "verifier@N": verifier / n, "weighted@N": weighted / n, "pass@N": passed / n}
