"""The decoder itself: config validation, KV-cache decoding, masks, parallel block, parameter counts."""
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, PhiConfig, PhiForCausalLM

import slm
from slm.errors import ConfigError
from slm.models import Decoder, ModelConfig, flops_per_token, make_attention_mask, param_count, preset

TINY = dict(vocab_size=97, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=160, max_seq_len=64)


@pytest.mark.parametrize("arch", ["llama", "phi"])
def test_cached_incremental_decoding_matches_full_forward(arch):
    extra = {"rotary_fraction": 0.5} if arch == "phi" else {}
    model = Decoder(ModelConfig(arch=arch, **TINY, **extra)).init_weights(seed=0).eval()
    x = torch.randint(0, 97, (3, 20))
    with torch.no_grad():
        full = model(x)
        cache = model.new_cache(3, 32)
        chunks = [model(x[:, :7], cache=cache), model(x[:, 7:12], cache=cache)]
        chunks += [model(x[:, t:t + 1], cache=cache) for t in range(12, 20)]
    assert cache.length == 20
    assert torch.allclose(torch.cat(chunks, 1), full, atol=1e-5)


def test_cache_truncate_rolls_back():
    model = Decoder(ModelConfig(**TINY)).init_weights(seed=0).eval()
    x = torch.randint(0, 97, (1, 10))
    with torch.no_grad():
        cache = model.new_cache(1, 16)
        model(x[:, :6], cache=cache)
        model(torch.randint(0, 97, (1, 3)), cache=cache)  # tokens that get rejected
        cache.truncate(6)
        step = model(x[:, 6:10], cache=cache)
        assert torch.allclose(step, model(x)[:, 6:10], atol=1e-5)


def test_left_padded_batch_matches_unpadded_rows():
    model = Decoder(ModelConfig(**TINY)).init_weights(seed=0).eval()
    a, b = torch.randint(0, 97, (1, 9)), torch.randint(0, 97, (1, 5))
    ids = torch.cat([a, torch.cat([torch.zeros(1, 4, dtype=torch.long), b], 1)])
    pad = torch.tensor([[1] * 9, [0] * 4 + [1] * 5])
    pos = (pad.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        out = model(ids, position_ids=pos, attention_mask=pad)
        assert torch.allclose(out[0], model(a)[0], atol=1e-5)
        assert torch.allclose(out[1, 4:], model(b)[0], atol=1e-5)
        assert not torch.isnan(out).any()


def test_document_mask_isolates_packed_examples():
    model = Decoder(ModelConfig(**TINY)).init_weights(seed=0).eval()
    a, b = torch.randint(0, 97, (1, 6)), torch.randint(0, 97, (1, 4))
    packed = torch.cat([a, b], 1)
    docs = torch.tensor([[0] * 6 + [1] * 4])
    pos = torch.tensor([list(range(6)) + list(range(4))])
    with torch.no_grad():
        out = model(packed, position_ids=pos, attention_mask=make_attention_mask(10, 0, document_ids=docs))
        assert torch.allclose(out[0, :6], model(a)[0], atol=1e-5)
        assert torch.allclose(out[0, 6:], model(b)[0], atol=1e-5)


def test_phi_block_is_the_parallel_sum():
    model = Decoder(ModelConfig(arch="phi", **{**TINY, "n_kv_heads": 4}, rotary_fraction=0.5)).init_weights(seed=0)
    block = model.layers[0]
    x = torch.randn(1, 5, 64)
    cos, sin = model.rope_cos[:5][None], model.rope_sin[:5][None]
    h = block.attn_norm(x)
    expected = x + block.attn(h, cos, sin) + block.mlp(h)
    assert torch.allclose(block(x, cos, sin), expected)


def test_phi_unrotated_channels_ignore_position():
    # phi-1.5 rotates only the first rotary_dim channels of each head: the rest must not depend on position.
    from slm.models.layers import apply_rope, rope_tables

    cos, sin = rope_tables(8, 16, 10000.0)
    x = torch.randn(1, 2, 1, 16).expand(1, 2, 16, 16)
    y = apply_rope(x, cos[None], sin[None])
    assert torch.equal(y[..., 8:], x[..., 8:])
    assert not torch.allclose(y[..., :8], x[..., :8])


@pytest.mark.parametrize("bad, message", [
    (dict(n_heads=5), "must divide dim"),
    (dict(n_kv_heads=3), "must divide n_heads"),
    (dict(arch="gpt"), "arch must be"),
    (dict(dim=0), "positive integer"),
    (dict(rotary_fraction=0.2), "even number"),
])
def test_contradictory_configs_are_refused(bad, message):
    with pytest.raises(ConfigError, match=message):
        ModelConfig(**{**TINY, **bad})


def test_sequence_longer_than_context_is_refused():
    model = Decoder(ModelConfig(**TINY))
    with pytest.raises(ValueError, match="exceeds max_seq_len"):
        model(torch.zeros(1, 65, dtype=torch.long))


@pytest.mark.parametrize("name, hf_cls, expected", [
    ("tinyllama-1.1b", "llama", 1_100_048_384),
    ("litellama-460m", "llama", 461_685_760),
    ("phi-1.5", "phi", 1_418_270_720),
])
def test_big_presets_match_transformers_parameter_count(name, hf_cls, expected):
    from slm.models.hf import config_to_hf

    cfg = preset(name)
    hf_config = (LlamaConfig if hf_cls == "llama" else PhiConfig)(**config_to_hf(cfg))
    with torch.device("meta"):
        hf_model = (LlamaForCausalLM if hf_cls == "llama" else PhiForCausalLM)(hf_config)
    hf_count = sum(p.numel() for p in hf_model.parameters())
    assert param_count(cfg) == hf_count == expected


def test_small_presets_are_cpu_sized():
    assert 4e6 < param_count(preset("nano")) < 7e6
    assert 20e6 < param_count(preset("micro")) < 35e6


def test_flops_per_token_follows_6n_plus_attention():
    cfg = preset("tinyllama-1.1b")
    n = param_count(cfg, exclude_embeddings=True) + cfg.dim * cfg.vocab_size
    assert flops_per_token(cfg, 2048) == 6 * n + 12 * 22 * 32 * 64 * 2048
    assert flops_per_token(cfg, 2048, training=False) == pytest.approx(flops_per_token(cfg, 2048) / 3)


def test_unknown_preset():
    with pytest.raises(slm.ConfigError, match="unknown preset"):
        preset("gpt-5")


def test_init_is_seeded_and_follows_tinyllama_std():
    a = Decoder(preset("nano")).init_weights(seed=7)
    b = Decoder(preset("nano")).init_weights(seed=7)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    std = a.layers[0].attn.q_proj.weight.std().item()
    assert abs(std - (2 / (5 * 256)) ** 0.5) < 0.003
    assert a.layers[0].attn.o_proj.weight.std().item() < std / 2
