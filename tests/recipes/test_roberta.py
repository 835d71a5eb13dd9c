"""slm recipe roberta: the smoke recipe runs every stage and writes the table's numbers."""
import json
from pathlib import Path

import pytest

from slm.cli import main
from slm.recipes.roberta import VARIANTS, format_table

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_roberta_smoke_recipe_runs_every_variant(tmp_path, capsys):
    assert main(["recipe", "roberta", "--config", str(ROOT / "recipes" / "roberta-smoke.yaml"),
                 "--out", str(tmp_path / "run")]) == 0
    summary = json.loads((tmp_path / "run" / "results.json").read_text())
    assert list(summary["table"]) == list(VARIANTS)
    for variant, row in summary["table"].items():
        assert len(row["ppl"]) == 1 and row["ppl"][0] > 1
        assert all(0 <= acc <= 1 for task in summary["config"]["tasks"] for acc in row[task])
    out = capsys.readouterr().out
    assert format_table(summary) in out
    assert (tmp_path / "run" / "seed-0" / "static-full" / "docstring-package").is_dir()
