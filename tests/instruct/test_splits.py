"""Held-out-cluster splits never leak a cluster, FLAN's special rules included, and task subsets are nested."""
import pytest

from slm.errors import ConfigError
from slm.instruct.splits import held_out_split, task_subset
from slm.instruct.tasks import Collection, Task, Template

CLUSTERS = {"nli": ["rte", "anli"], "paraphrase": ["mrpc", "qqp"], "read_comp": ["squad", "boolq"],
            "commonsense": ["piqa", "hellaswag"], "read_comp_and_common_sense": ["cosmos_qa"],
            "summarization": ["xsum", "cnn"], "sentiment": ["sst2", "imdb"]}


def _collection():
    c = Collection()
    for cluster, names in CLUSTERS.items():
        for name in names:
            overlaps = ("squad",) if name == "cnn" else ()  # a training task sharing data with a held-out one
            c.add(Task(name, cluster, "exact_match", [{"answer": "x"}], [Template("q")], overlaps=overlaps))
    return c


@pytest.mark.parametrize("cluster", list(CLUSTERS))
def test_the_held_out_cluster_never_reaches_training(cluster):
    c = _collection()
    train, evaluate = held_out_split(c, cluster)
    assert sorted(evaluate) == sorted(CLUSTERS[cluster])
    assert not {c.tasks[t].cluster for t in train} & {cluster}
    assert not set(train) & set(evaluate)


def test_flans_special_rules():
    c = _collection()
    for held in ("read_comp", "commonsense"):
        train, _ = held_out_split(c, held)
        assert "cosmos_qa" not in train  # the mixed cluster goes with either
    train, _ = held_out_split(c, "nli")
    assert not {"mrpc", "qqp"} & set(train)  # paraphrase excluded with NLI...
    train, _ = held_out_split(c, "paraphrase")
    assert not {"rte", "anli"} & set(train)  # ...and NLI with paraphrase
    train, _ = held_out_split(c, "read_comp")
    assert "cnn" not in train and "xsum" in train  # the overlapping task is removed, its cluster kept
    train, _ = held_out_split(c, "sentiment")
    assert {"cosmos_qa", "mrpc", "rte", "cnn"} <= set(train)  # no rule applies: everything else trains
    with pytest.raises(ConfigError, match="no cluster"):
        held_out_split(c, "translation")


def test_task_subsets_are_nested_and_sized():
    names = [f"t{i}" for i in range(12)]
    third, two_thirds, everything = (task_subset(names, f) for f in (1 / 3, 2 / 3, 1.0))
    assert len(third) == 4 and len(two_thirds) == 8 and sorted(everything) == sorted(names)
    assert set(third) < set(two_thirds) < set(everything)
    with pytest.raises(ConfigError):
        task_subset(names, 0)
