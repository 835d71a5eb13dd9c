"""FLAN's held-out-cluster splits: train on every cluster but one, evaluate zero-shot on the one left out.

FLAN's rules (generate_inter_cluster_splits): holding out reading comprehension or commonsense also removes the
cluster that mixes the two; paraphrase and NLI (entailment) exclude each other; and a training task that overlaps
a held-out task (shares its data) is removed. `task_subset` gives the task-scaling ablation's nested subsets.
"""
from __future__ import annotations

import math
import random

from slm.errors import ConfigError
from slm.instruct.tasks import Collection

MIXED_CLUSTER = "read_comp_and_common_sense"
TOGETHER = {"read_comp": MIXED_CLUSTER, "commonsense": MIXED_CLUSTER}
EXCLUSIVE = {"paraphrase": "nli", "nli": "paraphrase"}


def removed_clusters(cluster: str) -> set[str]:
    """The clusters training may not see when `cluster` is held out."""
    out = {cluster}
    if cluster in TOGETHER:
        out.add(TOGETHER[cluster])
    if cluster in EXCLUSIVE:
        out.add(EXCLUSIVE[cluster])
    return out


def held_out_split(collection: Collection, cluster: str) -> tuple[list[str], list[str]]:
    """(training task names, evaluation task names) for holding out `cluster`."""
    clusters = collection.clusters
    if cluster not in clusters:
        raise ConfigError(f"no cluster {cluster!r}; clusters: {', '.join(sorted(clusters))}")
    held = set(clusters[cluster])
    gone = removed_clusters(cluster)
    train = []
    for name, task in collection.tasks.items():
        if task.cluster in gone:
            continue
        overlapping = set(task.overlaps) & held or any(name in collection.tasks[h].overlaps for h in held)
        if not overlapping:
            train.append(name)
    return train, sorted(held)


def task_subset(names: list[str], fraction: float, seed: int = 0) -> list[str]:
    """The first ceil(fraction x n) tasks of one seeded order: the subsets for 1/3 <= 2/3 <= all are nested."""
    if not 0 < fraction <= 1:
        raise ConfigError(f"a task fraction must be in (0, 1], got {fraction}")
    order = sorted(names)
    random.Random(f"flan-tasks:{seed}").shuffle(order)
    return order[:max(1, math.ceil(fraction * len(order)))]
