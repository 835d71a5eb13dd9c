"""FLAN's mixing: examples-proportional rates with a per-task cap, Flan 2022's format variants, and the training
set drawn from them deterministically.

    rates = mixing_rates(collection, cap=3000)               # task -> min(n, cap) / sum over tasks
    examples = draw(collection, 5000, MixOptions(seed=0))    # list of Rendered (input, target, ...)

Each drawn example picks its task by the rates, then an example, a template (every template, or only the first
with single_template: the one-template ablation), and a variant: zero- or few-shot, with or without options,
equally weighted as in Flan 2022's sub-mixtures; a CoT task always shows its reasoning. The i-th draw depends on
(seed, i) only, so the set is the same whatever else changes.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from slm.errors import ConfigError
from slm.instruct.tasks import Collection, Rendered, with_exemplars


def mixing_rates(collection: Collection, cap: int = 3000) -> dict[str, float]:
    if cap < 1:
        raise ConfigError(f"the mixing cap must be at least 1, got {cap}")
    sizes = {name: min(len(t.examples), cap) for name, t in collection.tasks.items() if t.examples}
    if not sizes:
        raise ConfigError("no task with examples to mix")
    total = sum(sizes.values())
    return {name: n / total for name, n in sizes.items()}


@dataclass(frozen=True)
class MixOptions:
    seed: int = 0
    cap: int = 3000  # FLAN's maximum mixing rate (examples counted per task)
    single_template: bool = False  # the ablation: each task phrased by its first template only
    fewshot_share: float = 0.5  # Flan 2022: zero- and few-shot weighted equally
    options_share: float = 0.5  # ...and with and without OPTIONS
    shots: int = 1  # exemplars in a few-shot example (kept small: CPU models have short contexts)


def draw(collection: Collection, n: int, options: MixOptions = MixOptions()) -> list[Rendered]:
    rates = mixing_rates(collection, options.cap)
    names = list(rates)
    weights = [rates[k] for k in names]
    out = []
    for i in range(n):
        rng = random.Random(f"flan-mix:{options.seed}:{i}")
        task = collection.tasks[rng.choices(names, weights)[0]]
        index = rng.randrange(len(task.examples))
        template = 0 if options.single_template else rng.randrange(len(task.templates))
        shots = options.shots if rng.random() < options.fewshot_share else 0
        with_options = rng.random() < options.options_share
        out.append(with_exemplars(task, index, template, shots, options.seed, with_options=with_options))
    return out
