"""Every example task suite in recipes/eval-*.yaml loads, and runs end to end on a tiny model."""
from pathlib import Path

import pytest

from slm.eval import evaluate, load_tasks

SUITES = sorted((Path(__file__).parents[2] / "recipes").glob("eval-*.yaml"))


def test_there_is_an_example_suite():
    assert SUITES


@pytest.mark.slow
@pytest.mark.parametrize("path", SUITES, ids=lambda p: p.name)
def test_suite_runs_every_kind(path, model, tokenizer):
    tasks = load_tasks(path, limit=1)
    results = evaluate(model, tokenizer, tasks, batch_size=4)
    assert set(results) == {t.name for t in tasks}
    for task in tasks:
        res = results[task.name]
        assert res["n"] == 1 and res["kind"] == task.kind
        metric = {"perplexity": "bits_per_byte", "multiple_choice": "acc", "generate": "exact_match",
                  "classification": "f1", "code": "pass@1"}[task.kind]
        assert 0 <= res[metric] < float("inf")
