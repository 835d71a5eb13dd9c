import importlib
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def run_smoke(tmp_path, capsys):
    """run_smoke(name) -> results.json of `slm recipe NAME --config recipes/NAME-smoke.yaml`, after checking the
    verb succeeded and printed the recipe's own table of those results."""
    def run(name: str) -> dict:
        from slm.cli import main
        from slm.recipes import get_recipe

        assert main(["recipe", name, "--config", str(ROOT / get_recipe(name).smoke_yaml),
                     "--out", str(tmp_path / "run")]) == 0
        summary = json.loads((tmp_path / "run" / "results.json").read_text())
        module = importlib.import_module(get_recipe(name).module)
        assert module.format_table(summary) in capsys.readouterr().out
        return summary
    return run
