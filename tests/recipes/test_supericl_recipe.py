"""slm recipe supericl: the smoke recipe trains the plug-in and runs every variant through the (scripted) LLM."""
import pytest

pytestmark = pytest.mark.slow


def test_supericl_smoke_recipe_runs_every_variant(run_smoke):
    summary = run_smoke("supericl")
    assert set(summary["table"]) == {"docstring-package", "docstring-signature"}
    for task, runs in summary["table"].items():
        row = runs[0]
        assert row["n"] == 8
        for variant in ("plugin", "icl", "supericl", "no-test-prediction", "no-confidence", "no-context"):
            assert 0.0 <= row[variant] <= 1.0
        # The scripted LLM copies the plug-in line when there is one: SuperICL then equals the plug-in.
        assert row["supericl"] == row["plugin"] and row["override_rate"] == 0.0
        assert sum(b["n"] for b in row["bins"]) == row["n"]
