import os
import subprocess
import sys

import pytest

from slm.train import TrainConfig, Trainer
from train_toy import ToyBatches, tiny_model

glibc = pytest.mark.skipif(not sys.platform.startswith("linux") or not hasattr(os, "confstr")
                           or "glibc" not in (os.confstr("CS_GNU_LIBC_VERSION") or ""),
                           reason="mallopt is glibc's")

# Resident memory after freeing a touched 256 MiB tensor, relative to before allocating it, in MiB.
PROBE = """
import sys, torch
from slm.train.allocator import retain_freed_memory
if sys.argv[1] == "retain":
    assert retain_freed_memory()
def rss_mib():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
before = rss_mib()
x = torch.ones(64 * 2**20)  # 256 MiB, every page touched
del x
print(round(rss_mib() - before))
"""


def kept_mib(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


@glibc
def test_freed_memory_is_kept_only_when_asked():
    # By default glibc unmaps a large block on free; retained, the pages stay for the next step to reuse.
    assert kept_mib("default") < 64
    assert kept_mib("retain") > 192


def test_trainer_applies_the_setting_on_cpu_unless_disabled(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr("slm.train.trainer.retain_freed_memory", lambda: calls.append(1) or True)
    base = dict(max_steps=1, warmup_steps=0, progress=False, device="cpu")
    Trainer(tiny_model(), TrainConfig(**base), ToyBatches(rows=2), out_dir=tmp_path / "a").fit()
    assert calls == [1]
    Trainer(tiny_model(), TrainConfig(**base, retain_cpu_memory=False), ToyBatches(rows=2), out_dir=tmp_path / "b").fit()
    assert calls == [1]
