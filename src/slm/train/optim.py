"""The optimiser and the learning-rate schedule every recipe trains with (TinyLlama's defaults).

AdamW with weight decay on matrices only: norms, biases and embeddings are not decayed (decaying a
norm's gain or a lookup table pulls it toward zero for no benefit). The schedule is lit-gpt's
`get_lr` from TinyLlama's pretrain script: linear warm-up from 0 to the peak, then cosine down to
the minimum at `decay_steps`, and the minimum after that.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def lr_at(step: int, peak: float, minimum: float, warmup_steps: int, decay_steps: int) -> float:
    """Learning rate for optimizer step `step` (0-based): 0 at step 0, `peak` at `warmup_steps`, `minimum` at `decay_steps`."""
    if step < warmup_steps:
        return peak * step / warmup_steps
    if step >= decay_steps:
        return minimum
    progress = (step - warmup_steps) / max(1, decay_steps - warmup_steps)
    return minimum + 0.5 * (1.0 + math.cos(math.pi * progress)) * (peak - minimum)


def no_decay(name: str, param: torch.Tensor, embedding_ids: set[int]) -> bool:
    """True for norms, biases and embeddings: every 1-D parameter, plus the embedding tables."""
    return param.dim() < 2 or id(param) in embedding_ids or name.endswith("bias")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: decayed matrices and undecayed norms/biases/embeddings (a tied LM head counts as embedding)."""
    embedding_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay, keep, seen = [], [], set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (keep if no_decay(name, p, embedding_ids) else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": keep, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float], eps: float,
                    device: torch.device) -> torch.optim.AdamW:
    # The fused kernel updates all parameters in one pass: one launch on CUDA, and on CPU it is much faster than
    # the foreach path for small models (the optimizer is a large share of their step). FSDP2's sharded
    # parameters (DTensors) take the foreach path.
    groups = param_groups(model, weight_decay)
    sharded = any(type(p).__name__ == "DTensor" for g in groups for p in g["params"])
    fused = device.type in ("cuda", "cpu") and not sharded
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), eps=eps, fused=fused or None)
