"""slm recipe pet: the smoke recipe runs every stage (embedded synthetic task, and the user's JSONL with a
patterns YAML) and writes the table's numbers."""
import json
from pathlib import Path

import pytest

from slm.cli import main
from slm.recipes.pet.pipeline import acceptance, format_table

ROOT = Path(__file__).resolve().parents[2]
SMOKE = str(ROOT / "recipes" / "pet-smoke.yaml")
pytestmark = pytest.mark.slow


def test_pet_smoke_recipe_runs_every_row(tmp_path, capsys):
    assert main(["recipe", "pet", "--config", SMOKE, "--out", str(tmp_path / "run")]) == 0
    summary = json.loads((tmp_path / "run" / "results.json").read_text())
    rows = ["CLS head", "zero-shot pattern", "PET single pattern", "PET ensemble", "PET distilled", "iPET gen 0",
            "iPET gen 1", "iPET gen 2", "iPET distilled", "zero-shot iPET gen 1", "zero-shot iPET gen 2",
            "zero-shot iPET distilled"]
    assert list(summary["table"]) == rows
    for row in rows:
        assert len(summary["table"][row]["4"]) == 1 and 0 <= summary["table"][row]["4"][0] <= 1
    assert set(summary["checks"]["4"]) == {"PET beats CLS head", "distilled >= single pattern", "iPET gen 2 >= gen 0"}
    assert format_table(summary) in capsys.readouterr().out
    assert (tmp_path / "run" / "mlm" / "final" / "config.json").is_file()
    assert not (tmp_path / "run" / "n4" / "seed-0" / "models").exists()  # keep_models: false


def test_pet_recipe_on_user_jsonl_with_a_patterns_yaml(tmp_path, capsys):
    from slm.recipes.pet.data import sentiment_examples

    for split, n in (("train", 30), ("test", 10)):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sentiment_examples(split, n)))
    (tmp_path / "unlabeled.jsonl").write_text("".join(json.dumps({"text": r["text"]}) + "\n"
                                                      for r in sentiment_examples("corpus", 20)))
    (tmp_path / "pvp.yaml").write_text("patterns:\n  - '{text} . It was {mask} .'\n  - '{text} . All in all {mask} .'\n"
                                       "verbalizer: {positive: tasty, negative: rude}\n")
    args = ["recipe", "pet", "--config", SMOKE, "--out", str(tmp_path / "run"), "--set", "task=jsonl",
            "--set", f"data.train={tmp_path / 'train.jsonl'}", "--set", f"data.test={tmp_path / 'test.jsonl'}",
            "--set", f"data.unlabeled={tmp_path / 'unlabeled.jsonl'}", "--set", f"patterns={tmp_path / 'pvp.yaml'}",
            "--set", "ipet.zero_shot=false", "--set", "ipet.generations=2", "--set", "mlm.vocab_size=800"]
    assert main(args) == 0
    summary = json.loads((tmp_path / "run" / "results.json").read_text())
    assert "iPET gen 1" in summary["table"] and "iPET gen 2" not in summary["table"]
    assert "zero-shot iPET gen 1" not in summary["table"]


def test_bad_recipe_input_is_one_error_line(tmp_path, capsys):
    assert main(["recipe", "pet", "--config", SMOKE, "--out", str(tmp_path), "--set", "task=jsonl"]) == 2
    assert "task jsonl needs data.train" in capsys.readouterr().err
    (tmp_path / "pvp.yaml").write_text("patterns: ['{text} It was .']\nverbalizer: {positive: good}\n")
    assert main(["recipe", "pet", "--config", SMOKE, "--out", str(tmp_path), "--set",
                 f"patterns={tmp_path / 'pvp.yaml'}"]) == 2
    assert "exactly one {mask}" in capsys.readouterr().err


def test_acceptance_reads_the_seed_means():
    table = {"CLS head": {"8": [0.5, 0.6]}, "PET single pattern": {"8": [0.7, 0.7]}, "PET distilled": {"8": [0.6]},
             "iPET gen 0": {"8": [0.7]}, "iPET gen 2": {"8": [0.8]}}
    assert acceptance(table) == {"8": {"PET beats CLS head": True, "distilled >= single pattern": False,
                                       "iPET gen 2 >= gen 0": True}}


def test_pet_recipe_on_an_embedded_stdlib_task_with_multi_token_verbalizers(tmp_path):
    from slm.finetune.pet.pvp import load_pvps, pvp_tokens
    from slm.recipes.pet.data import BUILTIN_PVPS
    from slm.tokenizer import load_tokenizer

    args = ["recipe", "pet", "--config", SMOKE, "--out", str(tmp_path), "--set", "task=docstring-package",
            "--set", "mlm.documents=20", "--set", "mlm.vocab_size=600", "--set", "ipet.zero_shot=false",
            "--set", "labels=[8]", "--set", "repetitions=2"]
    assert main(args) == 0
    summary = json.loads((tmp_path / "results.json").read_text())
    assert all(0 <= v[0] <= 1 for row in summary["table"].values() for v in row.values())
    tokens = pvp_tokens(load_pvps(BUILTIN_PVPS["docstring-package"])[0], load_tokenizer(tmp_path / "tokenizer"))
    assert tokens.num_masks > 1  # package names span several tokens: max-first scoring and the hinge loss ran


def test_ipet_with_a_single_model_per_generation_is_refused_before_any_work(tmp_path, capsys):
    args = ["recipe", "pet", "--config", SMOKE, "--out", str(tmp_path), "--set", "task=docstring-package"]
    assert main(args) == 2
    assert "iPET needs at least two models" in capsys.readouterr().err
    assert not (tmp_path / "mlm").exists()


def test_a_bad_unlabelled_file_is_one_error_line(tmp_path, capsys):
    from slm.recipes.pet.data import sentiment_examples

    for split in ("train", "test"):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sentiment_examples(split, 10)))
    (tmp_path / "unlabeled.jsonl").write_text('{"text": "fine"}\nnot json\n')
    (tmp_path / "pvp.yaml").write_text("patterns: ['{text} . It was {mask} .']\nverbalizer: {positive: a, negative: b}\n")
    args = ["recipe", "pet", "--config", SMOKE, "--out", str(tmp_path / "run"), "--set", "task=jsonl",
            "--set", f"data.train={tmp_path / 'train.jsonl'}", "--set", f"data.test={tmp_path / 'test.jsonl'}",
            "--set", f"data.unlabeled={tmp_path / 'unlabeled.jsonl'}", "--set", f"patterns={tmp_path / 'pvp.yaml'}"]
    assert main(args) == 2
    assert "unlabeled.jsonl:2: invalid JSON" in capsys.readouterr().err
