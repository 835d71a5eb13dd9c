"""slm recipe flame: the smoke recipe runs every variant and baseline; --eval-repair / --eval-completion score a
trained checkpoint on a user's file; the baselines and the retrieval similarity do what they say."""
import json

import pytest

from slm.recipes.flame.pipeline import split_workbooks, token_similarity, FlameRecipeConfig
from slm.recipes.flame.tasks import balance

pytestmark = pytest.mark.slow


def test_flame_smoke_recipe_runs_every_variant_then_scores_files(run_smoke, tmp_path, capsys):
    from slm.cli import main

    summary = run_smoke("flame")
    table = summary["table"]
    assert list(table) == ["identity", "rule-based", "flame", "msp", "global-dedup", "decoder"]
    for name in ("flame", "msp", "global-dedup", "decoder"):
        scores = table[name][0]["scores"]
        assert set(scores) == {"repair", "completion-50", "completion-75", "completion-90"}
        assert all(0 <= v["top1"] <= v["top5"] <= 1 for v in scores.values())
    # Global dedup keeps fewer training formulas than per-workbook dedup.
    assert table["global-dedup"][0]["train_formulas"] < table["flame"][0]["train_formulas"]

    model = table["flame"][0]["checkpoint"]
    repair = tmp_path / "repair.json"
    repair.write_text(json.dumps([{"Buggy": "=SUM(A1:A5", "GroundTruth": "=SUM(A1:A5)"},
                                  {"Buggy": '=IF(A1="x,1,0)', "GroundTruth": '=IF(A1="x",1,0)'}]))
    completion = tmp_path / "completion.json"
    completion.write_text(json.dumps([{"Masked": "=SUM(A1:<mask>", "Completion": "A5)"}]))
    capsys.readouterr()
    assert main(["recipe", "flame", "--eval-repair", str(repair), "--model", model, "--beams", "2"]) == 0
    assert "repair (2 item(s)): top-1 exact" in capsys.readouterr().out
    assert main(["recipe", "flame", "--eval-completion", str(completion), "--model", model, "--beams", "2"]) == 0
    assert "completion (1 item(s)): top-1 exact" in capsys.readouterr().out
    assert main(["recipe", "flame", "--eval-repair", str(repair)]) != 0
    assert "--eval-repair needs --model DIR" in capsys.readouterr().err
    assert main(["recipe", "flame", "--eval-repair", str(completion), "--model", model]) != 0
    assert "item 0 needs string fields 'Buggy' and 'GroundTruth'" in capsys.readouterr().err


def test_rule_based_balancer_closes_brackets_and_quotes():
    assert balance("=SUM(A1:A5") == "=SUM(A1:A5)"
    assert balance("=SUM(A1:A5))") == "=SUM(A1:A5)"
    assert balance('=IF(A1="x') == '=IF(A1="x")'
    assert balance("SUM(A1)") == "=SUM(A1)"


def test_token_similarity_and_workbook_split():
    assert token_similarity("=SUM(A1:A5)", "=SUM(A1:A5)") == 1
    assert token_similarity("=SUM(A1:A5)", "= sum(a1:a5)") == 1
    assert 0 < token_similarity("=SUM(A1:A5)", "=SUM(A1:A6)") < 1
    train, test = split_workbooks(FlameRecipeConfig(workbooks=20), seed=0)
    assert len(test) == 4 and not {b.name for b in train} & {b.name for b in test}
