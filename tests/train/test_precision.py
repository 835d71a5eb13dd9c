import pytest
import torch

from slm.train import TrainConfig, Trainer
from slm.train import precision as P
from train_toy import ToyBatches, tiny_model


def facts(*flags):
    return P.CpuFacts("Test CPU", frozenset(flags))


@pytest.mark.parametrize("flags, bf16, reason", [
    (("avx512f", "avx512_bf16"), True, "AVX512-BF16"),
    (("avx512f", "avx512_bf16", "amx_tile", "amx_bf16"), True, "AMX-BF16"),
    (("avx512f",), False, "no native bf16"),
    ((), False, "no native bf16"),
])
def test_auto_follows_the_cpu_flags(monkeypatch, flags, bf16, reason):
    monkeypatch.setattr(P, "cpu_facts", lambda: facts(*flags))
    chosen = P.resolve_precision("auto", torch.device("cpu"))
    assert chosen.bf16 is bf16 and reason in chosen.reason
    # an explicit setting always wins, and says so
    assert P.resolve_precision("fp32", torch.device("cpu")) == P.Precision(False, "as set")
    assert P.resolve_precision("bf16", torch.device("cpu")).bf16
    assert P.resolve_precision("auto", torch.device("cuda")).bf16


def test_emulated_bf16_is_flagged(monkeypatch):
    monkeypatch.setattr(P, "cpu_facts", lambda: facts("avx2"))
    assert "slower than fp32" in P.resolve_precision("bf16", torch.device("cpu")).reason


def test_cpu_facts_reads_this_machine():
    found = P.cpu_facts()
    assert found.model and isinstance(found.flags, frozenset)
    assert found.describe().startswith(found.model)


def run(tmp_path, precision, steps=240):
    config = TrainConfig(max_steps=steps, lr=3e-3, min_lr=3e-4, warmup_steps=20, log_every=20, eval_batches=4,
                         precision=precision, progress=False)
    trainer = Trainer(tiny_model(dim=64, ffn_dim=128), config, ToyBatches(rows=8),
                      ToyBatches(rows=8, seed=99, limit=4), out_dir=tmp_path / precision)
    return trainer, trainer.fit()


def test_bf16_trains_like_fp32(tmp_path, capsys):
    """Quality at small scale: the same seed and data in bf16 autocast and in fp32 end at validation losses
    within 0.03 nats (the issue's bound for the 1.5M-token demo run), and bf16 keeps fp32 master weights."""
    bf16, bf16_result = run(tmp_path, "bf16")
    fp32, fp32_result = run(tmp_path, "fp32")
    assert "in bf16 (" in capsys.readouterr().out
    assert {r["precision"] for r in bf16.history if "loss" in r} == {"bf16"}
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())
    first = bf16.history[0]["loss"]
    assert fp32_result["val_loss"] < 0.5 * first  # the run learned something, so the comparison means something
    assert abs(bf16_result["val_loss"] - fp32_result["val_loss"]) < 0.03
