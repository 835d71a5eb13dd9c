"""slm recipe t5: the smoke recipe runs every stage; the instruction set holds out its test words; the
fine-tuned checkpoint is a T5 directory that transformers loads with the same logits."""
import json

import pytest
import torch

from slm.recipes.t5 import TASKS

pytestmark = pytest.mark.slow


def test_t5_smoke_recipe_runs_every_stage(tmp_path, run_smoke):
    summary = run_smoke("t5")
    assert list(summary["table"]) == ["span-corruption", "none"]
    pretrained = summary["table"]["span-corruption"]
    assert pretrained["val_loss"][0] > 0 and all(0 <= v <= 1 for v in pretrained["exact_match"] + pretrained["rougeL"])

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
