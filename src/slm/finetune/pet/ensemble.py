"""Merging PET models' raw label scores and the distillation loss of the final classifier (PET code:
modeling.py `merge_logits`, utils.py `distillation_loss`).

    s(l|x) = sum_p w(p) s_p(l|x) / sum_p w(p)     mean: w(p) = 1;  wmean: w(p) = the pattern's accuracy on the
                                                  labelled set BEFORE training (its zero-shot accuracy there)
    soft labels = softmax(s / T), T = 2
    loss = KL(softmax(t/T) || softmax(s/T)) * T^2 / batch   (F.kl_div(log_softmax(s/T), softmax(t/T), 'sum'))
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from slm.errors import ConfigError

REDUCTIONS = ("mean", "wmean")


def merge_logits(logits: list, weights: list[float] | None = None, reduction: str = "mean") -> np.ndarray:
    """[models][N, labels] raw scores -> [N, labels] their (weighted) mean."""
    if reduction not in REDUCTIONS:
        raise ConfigError(f"reduction must be mean or wmean, got {reduction!r}")
    if not logits:
        raise ConfigError("nothing to merge: no model produced logits")
    stacked = np.stack([np.asarray(x, dtype=np.float64) for x in logits])
    if reduction == "mean":
        return stacked.mean(0)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (len(logits),):
        raise ConfigError(f"wmean needs one weight per model ({len(logits)}), got {w.shape}")
    if w.sum() <= 0:  # every pattern at 0% before training: fall back to equal weights, as a mean
        w = np.ones_like(w)
    return np.tensordot(w, stacked, axes=1) / w.sum()


def soft_labels(logits, temperature: float = 2.0) -> np.ndarray:
    return torch.softmax(torch.as_tensor(np.asarray(logits), dtype=torch.float64) / temperature, -1).numpy()


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 2.0) -> torch.Tensor:
    """PET's distillation loss: KL(softmax(teacher/T) || softmax(student/T)) summed, times T^2, over the batch."""
    log_p = F.log_softmax(student / temperature, dim=1)
    q = F.softmax(teacher / temperature, dim=1)
    return F.kl_div(log_p, q, reduction="sum") * temperature ** 2 / student.shape[0]


def accuracy(logits, gold) -> float:
    gold = np.asarray(gold)
    return float((np.asarray(logits).argmax(-1) == gold).mean()) if len(gold) else float("nan")
