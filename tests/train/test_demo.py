"""The demo's pipeline at toy size: tokenizer, shards, pretraining, baseline, plot, checkpoint, sample."""
import math
from pathlib import Path

import pytest

import slm
from slm.train.demo import DemoOptions, run_demo

pytestmark = pytest.mark.slow


def test_toy_demo_end_to_end(tmp_path, capsys):
    opts = DemoOptions(out=str(tmp_path / "demo"), corpus_files=40, tokenizer_files=40, vocab_size=400,
                       model={"dim": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "ffn_dim": 128},
                       seq_len=64, batch_size=8, token_budget=64 * 8 * 60, lr=1e-2, min_lr=1e-3, warmup_steps=5,
                       eval_every=30, eval_batches=4, val_fraction=0.1, sample_tokens=12, workers=1, compile=False,
                       progress=False)
    summary = run_demo(opts)
    out = capsys.readouterr().out
    assert summary["steps"] == 60 and summary["tokens"] == 64 * 8 * 60
    # even a toy model beats unigram frequencies on Python source, and the numbers printed are these
    assert summary["val_loss"] < summary["unigram_loss"] < math.log(400)
    assert f"{summary['val_loss']:.3f}" in out and f"{summary['unigram_loss']:.3f}" in out
    png = Path(summary["plot"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    model, tokenizer = slm.load(summary["checkpoint"])
    assert tokenizer is not None and model.config.vocab_size == len(tokenizer)
    assert summary["sample"] and summary["sample"] in out
