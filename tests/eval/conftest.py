"""A tiny random Llama with a small byte-level BPE, saved as an HF directory (nothing downloads)."""
from __future__ import annotations

import pytest
import torch

import slm
from slm.models import Decoder, ModelConfig

from tiny_corpus import WORDS  # tests/eval is on sys.path, as for any test module here


@pytest.fixture(scope="session")
def tokenizer():
    texts = [WORDS, WORDS.upper(), "Q: what is 2 + 3 ? A: 5\n", "def f(x):\n    return x + 1\n"] * 30
    return slm.train_tokenizer(texts, vocab_size=320, kind="byte-bpe")


@pytest.fixture(scope="session")
def model(tokenizer):
    cfg = ModelConfig(arch="llama", vocab_size=len(tokenizer), dim=32, n_layers=2, n_heads=4, n_kv_heads=2,
                      ffn_dim=64, max_seq_len=64, tie_embeddings=False,
                      bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    model = Decoder(cfg).init_weights(seed=0)
    with torch.no_grad():  # spread the logits so that greedy choices and accuracies are not near ties
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(3.0)
    return model.eval()


@pytest.fixture(scope="session")
def model_dir(model, tokenizer, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    slm.save(model, tokenizer, path)
    return path
