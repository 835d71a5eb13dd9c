"""slm recipe orca2: the smoke recipe runs every teacher/student/system combination, and the erased students'
stage files hold no strategy instruction while the kept students' do."""
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_orca2_smoke_recipe_runs_every_student(run_smoke, tmp_path):
    from slm.recipes.orca2.prompts import load_prompts

    summary = run_smoke("orca2")
    rows = summary["table"]["scripted"]
    assert list(rows) == [f"{v} / {s}" for v in ("erased", "kept", "single") for s in ("generic", "cautious")]
    for runs in rows.values():
        assert set(runs[0]) == set(summary["strategies"]) and all(f["n"] == 2 for f in runs[0].values())
    assert all(c["correct"] == c["answers"] == 6 for c in summary["teachers"]["scripted"].values())
    prompts = load_prompts()
    instructions = [f.instruction for f in prompts.families.values()]
    run = Path(tmp_path / "run" / "scripted" / "seed-0")
    for variant, keeps in (("erased", False), ("single", False), ("kept", True)):
        text = "".join(p.read_text() for p in (run / variant).glob("stage-*/train.jsonl"))
        assert any(json.dumps(i)[1:-1] in text for i in instructions) == keeps, variant
