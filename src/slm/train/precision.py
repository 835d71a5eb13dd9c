"""Which precision a run trains in: `precision: auto` is bf16 autocast where the hardware multiplies bf16
natively (CUDA; a CPU with AVX512-BF16 or AMX), fp32 elsewhere.

On a CPU without native bf16, autocast emulates it and runs slower than fp32, so the CPU's flags decide.
Under autocast the weights, gradients and optimizer state stay fp32 (the master copy); matmuls and attention
run in bf16, while norms and losses compute in fp32, as on CUDA (slm's RMSNorm and LayerNorm upcast
themselves; autocast runs cross entropy in fp32).
"""
from __future__ import annotations

import functools
import platform
from pathlib import Path
from typing import NamedTuple

import torch

# The CPU features that matter to training speed: native bf16 dot products (AVX512-BF16) and tile matmuls (AMX).
BF16_FLAGS = ("amx_bf16", "avx512_bf16")
REPORTED_FLAGS = ("avx512f", "avx512_bf16", "amx_tile", "amx_bf16")


class CpuFacts(NamedTuple):
    model: str
    flags: frozenset[str]

    @property
    def native_bf16(self) -> str | None:
        """The best native bf16 feature this CPU has ('AMX-BF16', 'AVX512-BF16'), or None."""
        for flag in BF16_FLAGS:
            if flag in self.flags:
                return flag.upper().replace("_", "-")
        return None

    def describe(self) -> str:
        shown = [f for f in REPORTED_FLAGS if f in self.flags]
        return f"{self.model} ({', '.join(shown) or 'no AVX-512'})"


@functools.lru_cache(maxsize=1)
def cpu_facts() -> CpuFacts:
    """The CPU's model name and feature flags, read once from /proc/cpuinfo (Linux); elsewhere the platform's
    processor name and no flags (macOS and Windows CPUs with native bf16 are not detected: `auto` stays fp32)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return CpuFacts(platform.processor() or "unknown CPU", frozenset())
    model, flags = "unknown CPU", frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model == "unknown CPU":
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = frozenset(value.split())
    return CpuFacts(model, flags)


class Precision(NamedTuple):
    bf16: bool
    reason: str  # one phrase for the run's first line: why this precision

    @property
    def name(self) -> str:
        return "bf16" if self.bf16 else "fp32"


def resolve_precision(setting: str, device: torch.device) -> Precision:
    """The precision `train.precision` means on `device`, and why."""
    if setting == "bf16":
        if device.type == "cpu" and cpu_facts().native_bf16 is None:
            return Precision(True, "as set (this CPU has no native bf16: autocast emulates it, slower than fp32)")
        return Precision(True, "as set")
    if setting == "fp32":
        return Precision(False, "as set")
    if device.type == "cuda":
        return Precision(True, "auto: CUDA")
    if device.type == "cpu":
        feature = cpu_facts().native_bf16
        if feature:
            return Precision(True, f"auto: the CPU has {feature}")
        return Precision(False, "auto: the CPU has no native bf16 (AVX512-BF16 or AMX)")
    return Precision(False, f"auto: fp32 on {device.type}")
