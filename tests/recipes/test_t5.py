"""slm recipe t5: the smoke recipe runs every stage; the instruction set holds out its test words; the
fine-tuned checkpoint is a T5 directory that transformers loads with the same logits."""
import json
from pathlib import Path

import pytest
import torch

from slm.cli import main
from slm.recipes.t5 import TASKS, format_table

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_t5_smoke_recipe_runs_every_stage(tmp_path, capsys):
    assert main(["recipe", "t5", "--config", str(ROOT / "recipes" / "t5-smoke.yaml"),
                 "--out", str(tmp_path / "run")]) == 0
    summary = json.loads((tmp_path / "run" / "results.json").read_text())
    assert list(summary["table"]) == ["span-corruption", "none"]
    pretrained = summary["table"]["span-corruption"]
    assert pretrained["val_loss"][0] > 0 and all(0 <= v <= 1 for v in pretrained["exact_match"] + pretrained["rougeL"])
    assert format_table(summary) in capsys.readouterr().out

    def words(split):
        pairs = [json.loads(line) for line in (tmp_path / "run" / f"pairs-{split}.jsonl").read_text().splitlines()]
        assert {p["task"] for p in pairs} == set(TASKS)
        assert all(p["target"] == TASKS[p["task"]](p["input"].split(": ", 1)[1].split()) for p in pairs)
        return {w for p in pairs for w in p["input"].split(": ", 1)[1].split()}
    assert not words("train") & words("test")

    from transformers import AutoModelForSeq2SeqLM

    import slm

    [sft] = (tmp_path / "run" / "seed-0" / "sft-span-corruption" / "checkpoints").iterdir()
    ours, tok = slm.load(sft)
    theirs = AutoModelForSeq2SeqLM.from_pretrained(sft).eval()
    ids = torch.tensor([tok.encode("reverse: alpha beta")])
    dec = torch.tensor([[0, 5, 6]])
    with torch.no_grad():
        assert (ours(ids, decoder_input_ids=dec) - theirs(input_ids=ids, decoder_input_ids=dec).logits).abs().max() < 1e-4
