"""slm recipe roberta: the smoke recipe runs every stage and writes the table's numbers."""

import pytest

from slm.recipes.roberta import VARIANTS

pytestmark = pytest.mark.slow


def test_roberta_smoke_recipe_runs_every_variant(tmp_path, run_smoke):
    summary = run_smoke("roberta")
    assert list(summary["table"]) == list(VARIANTS)
    for variant, row in summary["table"].items():
        assert len(row["ppl"]) == 1 and row["ppl"][0] > 1
        assert all(0 <= acc <= 1 for task in summary["config"]["tasks"] for acc in row[task])
    assert (tmp_path / "run" / "seed-0" / "static-full" / "docstring-package").is_dir()
