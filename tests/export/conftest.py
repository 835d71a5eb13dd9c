"""Tiny Llama models and both tokenizer kinds for the GGUF tests (random weights; nothing downloads)."""
from __future__ import annotations

import pytest
import torch

import slm
from slm.models import Decoder, ModelConfig

TEXTS = ["def main():\n    return 0\n", "import os\nimport sys\n", "class Point:\n    x = 1.5\n",
         "for i in range(10):\n    print(i, 'é')\n"] * 25


def tiny_config(vocab_size: int, **overrides) -> ModelConfig:
    # ffn_dim 80 is not a multiple of 32: ffn_down's rows cannot be q8_0 blocks (the f16 fallback is exercised).
    base = dict(arch="llama", vocab_size=vocab_size, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=80,
                max_seq_len=128, rope_theta=5000.0, norm_eps=1e-6, tie_embeddings=False)
    return ModelConfig(**{**base, **overrides})


def randomised(model: Decoder) -> Decoder:
    # Norm weights start at one: perturb them so that a swapped or transposed norm would be noticed.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


@pytest.fixture(scope="session")
def tokenizers():
    return {kind: slm.train_tokenizer(TEXTS, vocab_size=vocab, kind=kind)
            for kind, vocab in (("byte-bpe", 300), ("llama-bpe", 340))}


@pytest.fixture(scope="session")
def make_model():
    def make(vocab_size: int, seed: int = 0, **overrides) -> Decoder:
        torch.manual_seed(seed)
        return randomised(Decoder(tiny_config(vocab_size, **overrides)).init_weights(seed))
    return make
