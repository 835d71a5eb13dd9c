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
    packed = dict(batch, document_ids=torch.zeros(8, 32, dtype=torch.long))
    assert memory.estimate(model, packed).activations > full.activations  # the math kernel keeps probabilities


def test_a_run_that_cannot_fit_stops_before_its_first_step(tmp_path, monkeypatch):
    from slm.train.trainer import TrainConfig, Trainer

    ids = torch.randint(0, 64, (4, 32))
    batches = [{"input_ids": ids, "labels": ids.roll(-1, 1)}] * 3
    monkeypatch.setattr(memory, "available_bytes", lambda: 2**20)  # 1 MB free
    trainer = Trainer(_tiny(), TrainConfig(max_steps=2, warmup_steps=0, progress=False, device="cpu"), batches,
                      out_dir=tmp_path / "run")
    with pytest.raises(SlmError, match=r"needs about .* GB a step but 0.0 GB is free.*--seq-len"):
        trainer.fit()
    assert trainer.step == 0 and not (tmp_path / "run" / "checkpoints").exists()
    ok = Trainer(_tiny(), TrainConfig(max_steps=2, warmup_steps=0, progress=False, device="cpu", memory_check=False),
                 batches, out_dir=tmp_path / "run2")
    assert ok.fit()["step"] == 2
