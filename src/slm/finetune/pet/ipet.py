"""iPET's training sets for the next generation (PET code: modeling.py `generate_ipet_train_sets`,
`generate_ipet_train_set`, `_draw_examples_by_label_probability`).

For model i of generation j (each model = one pattern and one seed):
  - pick round(lambda * (n - 1)) (at least 1) of the OTHER models of generation j - 1 (never i itself);
  - merge their logits on the unlabelled set (mean or wmean), softmax, label each example by the argmax;
  - per label l, draw c_j(l) - c_0(l) examples without replacement with probability proportional to the
    confidence max softmax (a label with too few examples is repeated first, as the code does), where
    c_j(l) = c_0(l) * d^j keeps the labelled set's label ratio;
  - T_i^j = T plus the drawn examples (their labels the others' argmax).
When the others give no example a label at all (a degenerate model; the code loops forever there), that label's
examples are drawn from the examples most likely to be it, weighted by its probability.
Zero-shot iPET (no T): generation 1 gets 10 examples (split evenly over the labels), each label's drawn from the
n_most_likely (100) examples most likely to be that label, scored by that label's probability.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np

from slm.errors import ConfigError
from slm.finetune.pet.ensemble import merge_logits, soft_labels


@dataclass
class Drawn:
    """The examples drawn for one model: indices into the unlabelled set and their labels; `sources` are the
    models whose logits labelled them."""
    index: list[int]
    labels: list[int]
    sources: list[int]


def examples_per_label(train_labels: list[int], num_labels: int, num_new: int) -> list[int]:
    """c_j(l) - c_0(l) per label: the labelled set's label counts scaled by num_new / |T| (the code's int());
    without labelled data (zero-shot) num_new split evenly (the code's eq_div)."""
    if train_labels:
        counts = np.bincount(np.asarray(train_labels), minlength=num_labels)
        multiplier = num_new / len(train_labels)
        return [int(c * multiplier) for c in counts]
    base, extra = divmod(num_new, num_labels)
    return [base + (1 if i < extra else 0) for i in range(num_labels)]


def num_new_examples(num_train: int, generation: int, scale: float = 5.0) -> int:
    """How many examples generation `generation` adds to T: |T| d^j - |T| (zero-shot: |T| read as 10 / d)."""
    size = num_train if num_train else 10 / scale
    return int(size * scale ** generation - num_train)


def generations_for(num_train: int, scale: float = 5.0, target: int = 1000) -> int:
    """The paper's number of generations k = ceil(log_d(target / |T|))."""
    return max(1, math.ceil(math.log(target / max(num_train, 1), scale) - 1e-9))  # 8 * 5^3 is 1000


def draw_by_confidence(candidates: list[int], probs: np.ndarray, count: int, rng: np.random.RandomState) -> list[int]:
    """`count` of `candidates` without replacement, p proportional to probs (the list repeated when too short)."""
    if count <= 0:
        return []
    if not candidates:
        raise ConfigError("iPET: no unlabelled example was given this label by the other models; "
                          "use more unlabelled data or fewer generations")
    pool = list(candidates)
    while len(pool) < count:
        pool.extend(candidates)
    p = np.asarray([probs[i] for i in pool], dtype=np.float64)
    p = p / p.sum()
    return [int(x) for x in rng.choice(pool, size=count, replace=False, p=p)]


def next_generation_sets(model_logits: list[np.ndarray], weights: list[float], train_labels: list[int],
                         num_labels: int, generation: int, scale: float = 5.0, fraction: float = 0.25,
                         reduction: str = "mean", n_most_likely: int = -1, seed: int = 42) -> list[Drawn]:
    """One Drawn per model of the previous generation: the examples its successor adds to T in `generation`.
    model_logits[i]: model i's raw scores on the unlabelled set; weights[i]: its pre-training train accuracy."""
    n = len(model_logits)
    if n < 2:
        raise ConfigError("iPET needs at least two models per generation (patterns x seeds), so that each model's "
                          "data is labelled by the others")
    rng, rng_np = random.Random(seed), np.random.RandomState(seed)
    per_label = examples_per_label(train_labels, num_labels, num_new_examples(len(train_labels), generation, scale))
    out = []
    for i in range(n):
        others = [m for m in range(n) if m != i]
        sources = sorted(rng.sample(others, k=max(round(len(others) * fraction), 1)))
        merged = merge_logits([model_logits[m] for m in sources], [weights[m] for m in sources], reduction)
        probs = soft_labels(merged, temperature=1.0)
        argmax = probs.argmax(-1)
        index, labels = [], []
        for label, count in enumerate(per_label):
            if n_most_likely > 0:
                candidates = [int(x) for x in np.argsort(-probs[:, label], kind="stable")[:n_most_likely]]
                confidence = probs[:, label]
            else:
                candidates = [int(x) for x in np.flatnonzero(argmax == label)]
                confidence = probs.max(-1)
                if not candidates and count:  # no example is argmax l (the code would loop forever here):
                    candidates = [int(x) for x in np.argsort(-probs[:, label], kind="stable")[:count]]
                    confidence = probs[:, label]  # the examples most likely to be l, by l's probability
            picked = draw_by_confidence(candidates, confidence, count, rng_np)
            index += picked
            labels += [label] * len(picked)
        out.append(Drawn(index, labels, sources))
    return out
