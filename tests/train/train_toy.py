"""Shared by the trainer tests: a tiny model and a deterministic, stateful in-memory batch source."""
from __future__ import annotations

import torch

from slm.models import Decoder, ModelConfig

VOCAB, SEQ = 64, 16


def tiny_model(seed: int = 0, **overrides) -> Decoder:
    cfg = dict(arch="llama", vocab_size=VOCAB, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=64,
               max_seq_len=64, tie_embeddings=True)
    return Decoder(ModelConfig(**{**cfg, **overrides})).init_weights(seed)


class ToyBatches:
    """Global batch i is a seeded function of i (learnable: each row counts up by a random stride);
    rank r takes rows r::world. `state_dict()` is the index of the next global batch."""

    def __init__(self, rows: int = 4, seq_len: int = SEQ, seed: int = 0, rank: int = 0, world: int = 1,
                 limit: int | None = None):
        self.rows, self.seq_len, self.seed, self.rank, self.world, self.limit = rows, seq_len, seed, rank, world, limit
        self.position = 0

    def global_batch(self, i: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        start = torch.randint(0, VOCAB, (self.rows, 1), generator=g)
        stride = torch.randint(1, 4, (self.rows, 1), generator=g)
        return (start + stride * torch.arange(self.seq_len + 1)) % VOCAB

    def __iter__(self):
        while self.limit is None or self.position < self.limit:
            ids = self.global_batch(self.position)[self.rank::self.world]
            self.position += 1
            yield {"input_ids": ids[:, :-1].contiguous(), "labels": ids[:, 1:].contiguous()}

    def state_dict(self) -> dict:
        return {"position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.position = state["position"]
