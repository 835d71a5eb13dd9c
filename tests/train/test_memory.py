"""The memory estimate against measured peaks, and the pre-flight check that stops a run that cannot fit."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from slm.errors import SlmError
from slm.models import build_model, preset
from slm.train import memory

PROBE = '''
import json, sys, torch
torch.set_num_threads(1)
from slm.models import build_model, preset
from slm.train.memory import estimate
dim, layers, vocab, rows, seq, checkpointing = map(int, sys.argv[1:7])
ids = torch.randint(0, vocab, (rows, seq)); labels = ids.roll(-1, 1)
def status(field):  # VmHWM is this process's own peak (ru_maxrss would carry the forking parent's over exec)
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
before = status("VmRSS")
model = build_model(preset("nano", vocab_size=vocab, dim=dim, n_layers=layers, n_heads=dim // 64,
                           n_kv_heads=dim // 64, ffn_dim=dim * 8 // 3 // 64 * 64, max_seq_len=seq)).init_weights(0)
model.gradient_checkpointing = bool(checkpointing)
model.train()
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
loss, n = model(ids, labels=labels)
(loss / n).backward()
optimizer.step()
peak = status("VmHWM")
print(json.dumps({"measured": peak - before,
                  "estimate": estimate(model, {"input_ids": ids, "labels": labels}, bool(checkpointing)).total}))
'''


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs /proc to read resident memory")
@pytest.mark.parametrize("shape", ["256 4 8000 8 512 0", "256 8 8000 8 1024 1"], ids=["plain", "checkpointing"])
def test_the_estimate_is_within_a_factor_of_two_of_the_measured_peak(shape):
    out = subprocess.run([sys.executable, "-c", PROBE, *shape.split()], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["measured"] > 200 * 2**20  # large enough that activations, not the runtime, dominate
    assert 0.5 <= result["estimate"] / result["measured"] <= 2.0, result


def _tiny():
    return build_model(preset("nano", vocab_size=64, dim=32, n_layers=2, n_heads=2, n_kv_heads=2, ffn_dim=64,
                              max_seq_len=32)).init_weights(0)


def test_checkpointing_and_lora_shrink_the_estimate():
    model = _tiny()
    batch = {"input_ids": torch.zeros(8, 32, dtype=torch.long), "labels": torch.zeros(8, 32, dtype=torch.long)}
    full = memory.estimate(model, batch)
    assert memory.estimate(model, batch, checkpointing=True).activations < full.activations
    for p in model.parameters():
        p.requires_grad_(False)
    frozen = memory.estimate(model, batch)
    assert frozen.optimizer == frozen.gradients == 0 and frozen.weights == full.weights
    from slm.finetune.lora import apply_lora

    adapted = memory.estimate(apply_lora(_tiny()), batch)  # adapters' backward transients on top of frozen
    assert adapted.activations > frozen.activations and adapted.optimizer < full.optimizer
    packed = dict(batch, document_ids=torch.zeros(8, 32, dtype=torch.long))
    assert memory.estimate(model, packed).activations > full.activations  # the mask is kept for backward


def test_packed_attention_takes_the_fused_kernel_not_the_math_one():
    """A packing mask must not push SDPA onto its math kernel, which keeps [rows, heads, seq, seq] probabilities
    for the backward pass (what the estimate leaves out)."""
    from slm.models.layers import make_attention_mask

    model = _tiny()
    ids = torch.randint(0, 64, (2, 32))
    documents = (torch.arange(32) // 10).expand(2, 32)
    mask = make_attention_mask(32, 0, document_ids=documents)
    seen = set()
    loss, _ = model(ids, labels=ids.roll(-1, 1), attention_mask=mask)
    stack = [loss.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is not None and fn not in seen:
            seen.add(fn)
            stack += [f for f, _ in fn.next_functions]
    names = {type(f).__name__ for f in seen}
    assert any("FlashAttention" in n for n in names), sorted(names)
    assert not any(n.startswith("Softmax") for n in names)
    assert mask.dtype == torch.bool


def test_a_run_that_cannot_fit_stops_before_its_first_step(tmp_path, monkeypatch):
    from slm.train.trainer import TrainConfig, Trainer

    ids = torch.randint(0, 64, (4, 32))
    batches = [{"input_ids": ids, "labels": ids.roll(-1, 1)}] * 3
    monkeypatch.setattr(memory, "available_bytes", lambda: 2**16)  # 64 KB free: not even the weights fit
    trainer = Trainer(_tiny(), TrainConfig(max_steps=2, warmup_steps=0, progress=False, device="cpu"), batches,
                      out_dir=tmp_path / "run")
    with pytest.raises(SlmError, match=r"needs at least .* GB a step but 0.0 GB is free.*--seq-len"):
        trainer.fit()
    assert trainer.step == 0 and not (tmp_path / "run" / "checkpoints").exists()
    ok = Trainer(_tiny(), TrainConfig(max_steps=2, warmup_steps=0, progress=False, device="cpu", memory_check=False),
                 batches, out_dir=tmp_path / "run2")
    assert ok.fit()["step"] == 2


def _batches(rows=8, seq=32, n=3):
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        ids = torch.randint(0, 64, (rows, seq), generator=g)
        out.append({"input_ids": ids, "labels": ids.roll(-1, 1)})
    return out


def test_the_plan_splits_rows_then_turns_on_checkpointing():
    model, batch = _tiny(), _batches()[0]
    asked = memory.estimate(model, batch)
    assert memory.plan(model, batch, None).row_splits == 1  # nothing known: as asked
    fits = memory.plan(model, batch, int(asked.total / 0.9) + 1)
    assert (fits.checkpointing, fits.row_splits) == (False, 1)
    tight = memory.plan(model, batch, int(asked.total / 0.9) - 1)
    assert not tight.checkpointing and tight.row_splits >= 2 and tight.estimate.total < asked.total
    one_row = memory.estimate(model, memory.split_rows(batch, 8)[0])
    tighter = memory.plan(model, batch, int(one_row.total / 0.9) - 1)
    assert tighter.checkpointing and tighter.estimate.total < one_row.total
    chunks = memory.split_rows(dict(batch, note="kept"), 3)
    assert [c["input_ids"].shape[0] for c in chunks] == [3, 3, 2] and chunks[2]["note"] == "kept"
    assert torch.equal(torch.cat([c["labels"] for c in chunks]), batch["labels"])


def test_a_split_plan_trains_the_same_weights_as_the_unsplit_run(tmp_path, monkeypatch, capsys):
    from slm.train.trainer import TrainConfig, Trainer

    cfg = dict(max_steps=2, warmup_steps=0, progress=False, device="cpu", precision="fp32")
    plain = Trainer(_tiny(), TrainConfig(**cfg, memory_check=False), _batches(), out_dir=tmp_path / "a")
    plain.fit()
    one_row = memory.estimate(_tiny(), memory.split_rows(_batches()[0], 8)[0]).total
    monkeypatch.setattr(memory, "available_bytes", lambda: int(one_row / 0.9) - 1)  # needs checkpointing too
    monkeypatch.setattr(memory.MemoryWatchdog, "__init__", lambda self, *a, **k: _real_watchdog_init(self, floor=0))
    split = Trainer(_tiny(), TrainConfig(**cfg), _batches(), out_dir=tmp_path / "b")
    result = split.fit()
    out = capsys.readouterr().out
    assert "activation checkpointing turned on" in out and "each micro-batch of 8 rows runs as" in out
    assert split.row_splits >= 2 and "peak resident" in out and result["peak_resident_bytes"] > 0
    for a, b in zip(plain.model.parameters(), split.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_the_watchdog_stops_cleanly_with_a_checkpoint(tmp_path, monkeypatch):
    from slm.train.trainer import TrainConfig, Trainer

    readings = iter([8 * 2**30] * 2 + [2**20] * 10_000)  # plenty for the plan, then memory runs out
    monkeypatch.setattr(memory, "available_bytes", lambda: next(readings))
    monkeypatch.setattr(memory.MemoryWatchdog, "__init__", _fast_watchdog_init)
    trainer = Trainer(_tiny(), TrainConfig(max_steps=50, warmup_steps=0, progress=False, device="cpu"),
                      _batches(n=100), out_dir=tmp_path / "run")
    with pytest.raises(SlmError, match=r"stopped after step \d+: the machine's free memory fell to 0.00 GB.*"
                                       r"resume with --resume auto"):
        trainer.fit()
    assert 0 < trainer.step < 50
    from slm.train.checkpoint import step_dir

    assert step_dir(tmp_path / "run", trainer.step).is_dir()


_real_watchdog_init = memory.MemoryWatchdog.__init__


def _fast_watchdog_init(self, floor=None, interval=0.5, read=None):
    _real_watchdog_init(self, floor=256 * 2**20, interval=0.001, read=read)
