"""Tiny models and tokenizers for the inference tests (all random weights; nothing downloads)."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import slm
from slm.infer.quant import QuantLinear
from slm.models import Decoder, ModelConfig


def tiny_config(vocab_size: int = 320, **overrides) -> ModelConfig:
    base = dict(arch="llama", vocab_size=vocab_size, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=64,
                max_seq_len=96, tie_embeddings=False)
    return ModelConfig(**{**base, **overrides})


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread, and the test machine's cores are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def make_config():
    return tiny_config


def dequantized(model: Decoder) -> Decoder:
    """A float copy of an int8 model: each QuantLinear as an nn.Linear holding its int8 rows times their scales,
    the reference for decoding steps that multiply int8 weights in fp32."""
    out = copy.deepcopy(model)
    for module in list(out.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, QuantLinear):
                linear = nn.Linear(child.in_features, child.out_features, bias=child.bias is not None)
                linear.weight.data = child.dequantized_weight()
                if child.bias is not None:
                    linear.bias.data = child.bias.detach().clone()
                setattr(module, name, linear)
    return out


@pytest.fixture(scope="session")
def dequantize():
    return dequantized


@pytest.fixture(scope="session")
def tokenizer():
    texts = ["def main():\n    return 0\n", "import os\nimport sys\n", "class A:\n    pass\n"] * 20
    return slm.train_tokenizer(texts, vocab_size=300, kind="byte-bpe")


@pytest.fixture(scope="session")
def tiny_model(tokenizer):
    torch.manual_seed(0)
    model = Decoder(tiny_config(len(tokenizer))).init_weights(seed=0)
    # A larger init spreads the logits, so greedy choices are far from ties (parity tests compare argmaxes).
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(4.0)
    return model.eval()


@pytest.fixture(scope="session")
def hf_llama_dir(tmp_path_factory):
    """A random transformers LlamaForCausalLM with grouped-query attention, saved as an HF directory."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(1)
    cfg = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      bos_token_id=None, eos_token_id=None, pad_token_id=0, tie_word_embeddings=False,
                      initializer_range=0.2)
    model = LlamaForCausalLM(cfg).eval()
    path = tmp_path_factory.mktemp("hf") / "llama"
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def server(tiny_model, tokenizer):
    """A live `slm serve` app on a loopback port over the tiny model, one per test module: (url, app)."""
    from server_util import live_server

    from slm.infer import Engine
    from slm.infer.server import create_app

    app = create_app(Engine(tiny_model, tokenizer), model_name="tiny", max_batch_size=8, max_tokens_cap=40)
    with live_server(app) as url:
        yield url, app


@pytest.fixture
def client(server):
    """The official openai client pointed at `server`, without its own retries."""
    import openai

    return openai.OpenAI(base_url=server[0] + "/v1", api_key="unused", max_retries=0)
