"""Metric functions: pure, small, and defined as lm-eval / the HumanEval paper define them."""
from __future__ import annotations

import math
import re
from typing import Sequence

NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al., 2021): 1 - C(n-c, k) / C(n, k), computed as a stable product."""
    if not 0 <= c <= n or k < 1:
        raise ValueError(f"need 0 <= c <= n and k >= 1, got n={n} c={c} k={k}")
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per problem, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def accuracy(predictions: Sequence, golds: Sequence) -> float:
    return sum(p == g for p, g in zip(predictions, golds)) / len(golds) if golds else float("nan")


def f1_macro(predictions: Sequence, golds: Sequence, labels: Sequence | None = None) -> float:
    """Unweighted mean over labels of per-label F1 (a label never predicted nor gold is skipped)."""
    labels = list(labels) if labels is not None else sorted(set(golds) | set(predictions), key=str)
    scores = []
    for label in labels:
        tp = sum(p == label and g == label for p, g in zip(predictions, golds))
        fp = sum(p == label and g != label for p, g in zip(predictions, golds))
        fn = sum(p != label and g == label for p, g in zip(predictions, golds))
        if tp + fp + fn:
            scores.append(2 * tp / (2 * tp + fp + fn))
    return sum(scores) / len(scores) if scores else float("nan")


def last_number(text: str) -> str | None:
    """The last number in `text`, normalised (thousands separators dropped, 5.0 -> 5), or None."""
    found = NUMBER.findall(text)
    if not found:
        return None
    value = found[-1].replace(",", "")
    try:
        number = float(value)
    except ValueError:
        return None
    return str(int(number)) if number.is_integer() and abs(number) < 1e15 else repr(number)


def regex_extract(text: str, pattern: str, group: int | None = None) -> str | None:
    """The first match of `pattern` (its first group, if it has one) or None."""
    match = re.search(pattern, text)
    if not match:
        return None
    if group is None:
        group = 1 if match.groups() else 0
    return match.group(group)


def choose(scores: Sequence[float]) -> int:
    """argmax with the first maximum winning (numpy's rule, which lm-eval uses)."""
    best = 0
    for i, s in enumerate(scores):
        if s > scores[best]:
            best = i
    return best


def perplexity_metrics(loglikelihood: float, tokens: int, words: int, n_bytes: int) -> dict[str, float]:
    """lm-eval's word_perplexity, byte_perplexity, bits_per_byte (corpus-level: sums first, then ratios)."""
    nll = -loglikelihood
    return {
        "word_perplexity": math.exp(nll / words) if words else float("nan"),
        "byte_perplexity": math.exp(nll / n_bytes) if n_bytes else float("nan"),
        "bits_per_byte": nll / n_bytes / math.log(2) if n_bytes else float("nan"),
        "token_perplexity": math.exp(nll / tokens) if tokens else float("nan"),
    }


def count_words(text: str) -> int:
    """lm-eval's word count for word_perplexity: pieces between runs of whitespace."""
    return len(re.split(r"\s+", text))


def rouge_l(prediction: str, reference: str) -> float:
    """Rouge-L F-measure (rouge-score, with its stemmer off and its default tokenizer), as FLAN and
    Super-NaturalInstructions report it."""
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"]).score(reference, prediction)["rougeL"].fmeasure


def sequence_similarity(x: Sequence, y: Sequence) -> float:
    """1 - the Levenshtein distance of two sequences (tokens, characters) / the longer length; 1.0 for two
    empty ones. The edit similarity SLaDe reports over C tokens and FLAME's retrieval target over formula tokens."""
    if not x and not y:
        return 1.0
    previous = list(range(len(y) + 1))
    for i, u in enumerate(x, 1):
        current = [i]
        for j, v in enumerate(y, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (u != v)))
        previous = current
    return 1.0 - previous[-1] / max(len(x), len(y))
