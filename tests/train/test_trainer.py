import json

import pytest
import torch

import slm
from slm.config import build
from slm.errors import CheckpointError, ConfigError
from slm.train import TrainConfig, Trainer, causal_lm_loss
from slm.train import checkpoint as ckpt
from train_toy import ToyBatches, tiny_model


def config(**kw):
    # The loop's arithmetic (accumulation, resume) is checked in fp32, where it is exact to float rounding;
    # bf16 has tests of its own (test_precision.py).
    base = dict(max_steps=6, lr=3e-3, min_lr=3e-4, warmup_steps=2, log_every=1, progress=False, precision="fp32")
    return TrainConfig(**{**base, **kw})


def losses(trainer):
    return [r["loss"] for r in trainer.history if "loss" in r]


class Halves:
    """Each global batch of ToyBatches as two micro-batches of half the rows (same state protocol)."""

    def __init__(self, source):
        self.source = source

    def __iter__(self):
        for batch in self.source:
            half = batch["input_ids"].shape[0] // 2
            yield {k: v[:half] for k, v in batch.items()}
            yield {k: v[half:] for k, v in batch.items()}


def mask_some_labels(batch):
    """Uneven target counts between micro-batches: only sum-then-divide makes accumulation exact."""
    labels = batch["labels"].clone()
    for row in range(labels.shape[0]):  # row-local, so splitting the batch does not change which targets count
        labels[row, : 3 + int(batch["input_ids"][row, 0]) % 9] = -100
    return dict(batch, labels=labels)


def test_accumulation_equals_one_big_batch(tmp_path):
    big = Trainer(tiny_model(), config(), ToyBatches(rows=4), out_dir=tmp_path / "a",
                  batch_transform=mask_some_labels)
    big.fit()
    small = Trainer(tiny_model(), config(grad_accum=2), Halves(ToyBatches(rows=4)), out_dir=tmp_path / "b",
                    batch_transform=mask_some_labels)
    small.fit()
    assert losses(big) == pytest.approx(losses(small), abs=1e-5)
    for p, q in zip(big.model.parameters(), small.model.parameters()):
        torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-5)
    assert big.accumulation == 1 and small.accumulation == 2


def test_batch_tokens_sets_accumulation(tmp_path):
    trainer = Trainer(tiny_model(), config(max_steps=2, batch_tokens=4 * 16 * 3), ToyBatches(rows=4),
                      out_dir=tmp_path)
    trainer.fit()
    assert trainer.accumulation == 3
    assert trainer.tokens == 2 * 3 * 4 * 16
    with pytest.raises(ConfigError, match="multiple"):
        Trainer(tiny_model(), config(batch_tokens=100), ToyBatches(rows=4), out_dir=tmp_path / "x").fit()


def test_max_tokens_decides_the_steps(tmp_path):
    trainer = Trainer(tiny_model(), config(max_tokens=64 * 5), ToyBatches(rows=4), out_dir=tmp_path)
    result = trainer.fit()
    assert result["step"] == 5 and result["tokens"] == 320


def test_loss_goes_down_and_checkpoint_is_an_hf_directory(tmp_path):
    trainer = Trainer(tiny_model(), config(max_steps=40, warmup_steps=4, lr=1e-2, log_every=5),
                      ToyBatches(rows=8), ToyBatches(rows=8, seed=7, limit=2), out_dir=tmp_path)
    result = trainer.fit()
    history = losses(trainer)
    assert history[-1] < 0.7 * history[0]
    assert result["val_loss"] < 0.7 * history[0]
    model, _ = slm.load(result["checkpoint"])
    ids = torch.randint(0, 64, (2, 10))
    torch.testing.assert_close(model(ids), trainer.model.eval()(ids))
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert {"loss", "lr", "tokens_per_s", "grad_norm"} <= set(records[0])
    assert any("val_ppl" in r for r in records)


def test_hooks_transform_loss_and_evaluators(tmp_path):
    seen = {"transform": 0, "loss": 0, "evaluator": 0}

    def transform(batch):
        seen["transform"] += 1
        return dict(batch, labels=torch.full_like(batch["labels"], -100).index_fill_(1, torch.tensor([0]), 5))

    def loss_fn(model, batch):
        seen["loss"] += 1
        loss, n = causal_lm_loss(model, batch)
        assert int(n) == batch["input_ids"].shape[0]  # the transform's labels reached the loss
        return loss, n

    def evaluator(model):
        seen["evaluator"] += 1
        assert not model.training
        return {"custom_score": 0.5}

    trainer = Trainer(tiny_model(), config(max_steps=4, eval_every=2), ToyBatches(rows=2),
                      ToyBatches(rows=2, seed=3, limit=1), out_dir=tmp_path, loss_fn=loss_fn,
                      batch_transform=transform, evaluators=[evaluator])
    trainer.fit()
    assert seen["evaluator"] == 2
    assert seen["transform"] == 4 + 2  # 4 training batches, 1 validation batch at each of 2 evaluations
    assert seen["loss"] == 4 + 2
    evals = [r for r in trainer.history if "custom_score" in r]
    assert [r["step"] for r in evals] == [2, 4] and all("val_loss" in r for r in evals)


def test_keep_last_and_partial_writes_are_cleaned(tmp_path):
    Trainer(tiny_model(), config(max_steps=8, save_every=2, keep_last=2), ToyBatches(), out_dir=tmp_path).fit()
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [6, 8]
    stale = tmp_path / "checkpoints" / ".step-000010.abc.tmp"
    stale.mkdir()
    Trainer(tiny_model(), config(max_steps=10, save_every=2, keep_last=2), ToyBatches(), out_dir=tmp_path).fit(
        resume="auto")
    assert not stale.exists()
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [8, 10]


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_corrupt_checkpoint_falls_back_to_previous(tmp_path, capsys, damage):
    reference = Trainer(tiny_model(), config(max_steps=8), ToyBatches(), out_dir=tmp_path / "ref")
    reference.fit()
    run = tmp_path / "run"
    Trainer(tiny_model(), config(max_steps=6, save_every=3, keep_last=0), ToyBatches(), out_dir=run).fit()
    victim = ckpt.step_dir(run, 6) / ("model.safetensors" if damage != "delete" else "trainer_state.pt")
    data = victim.read_bytes()
    if damage == "truncate":
        victim.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        victim.write_bytes(data[:-10] + bytes(b ^ 0xFF for b in data[-10:]))
    else:
        victim.unlink()
    capsys.readouterr()
    with pytest.raises(CheckpointError, match="step-000006"):
        ckpt.verify(ckpt.step_dir(run, 6))
    with pytest.raises(CheckpointError):
        Trainer(tiny_model(), config(max_steps=8), ToyBatches(), out_dir=run).fit(resume=str(ckpt.step_dir(run, 6)))
    resumed = Trainer(tiny_model(), config(max_steps=8), ToyBatches(), out_dir=run)
    resumed.fit(resume="auto")
    out = capsys.readouterr().out
    assert "skipping checkpoint step-000006" in out and "resumed from" in out and "step-000003" in out
    assert losses(resumed) == losses(reference)[3:]
    assert [json.loads(l)["loss"] for l in (run / "metrics.jsonl").read_text().splitlines()
            if "loss" in json.loads(l)] == losses(reference)


def test_bad_config_is_reported():
    with pytest.raises(ConfigError):
        TrainConfig(min_lr=1.0, lr=0.1)
    with pytest.raises(ConfigError):
        build(TrainConfig, {"max_step": 3})


@pytest.mark.slow
def test_compiled_training_matches_eager(tmp_path):
    """compile=True (the model and, in one process, the loss with it) trains the same numbers as eager,
    validation loss included."""
    runs = {}
    for compiled in (False, True):
        trainer = Trainer(tiny_model(), config(max_steps=4, compile=compiled, eval_every=2, eval_batches=1),
                          ToyBatches(rows=4), val_data=ToyBatches(rows=4, seed=9), out_dir=tmp_path / str(compiled))
        trainer.fit()
        runs[compiled] = [r.get("loss", r.get("val_loss")) for r in trainer.history
                          if "loss" in r or "val_loss" in r]
    assert len(runs[True]) >= 6
    assert runs[True] == pytest.approx(runs[False], abs=1e-4)
