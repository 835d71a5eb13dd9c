"""Tiny random models for the composition tests (nothing downloads)."""
from __future__ import annotations

import pytest
import torch

from slm.models import Decoder, ModelConfig


def tiny(seed: int, vocab: int = 8, n_layers: int = 1, dim: int = 16, scale: float = 6.0, max_seq_len: int = 64):
    """A random decoder with spread-out logits (a larger init), so distributions are peaked and differ."""
    cfg = ModelConfig(vocab_size=vocab, dim=dim, n_layers=n_layers, n_heads=2, n_kv_heads=1, ffn_dim=2 * dim,
                      max_seq_len=max_seq_len)
    m = Decoder(cfg).init_weights(seed)
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() == 2:
                p.mul_(scale)
    return m.eval()


@pytest.fixture(scope="session")
def make_tiny():
    return tiny
