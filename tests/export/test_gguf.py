"""GGUF export, read back with the gguf package's own reader (no llama.cpp needed)."""
from __future__ import annotations

import math

import gguf
import jinja2
import numpy as np
import pytest
import torch

import slm
from slm.cli import main
from slm.errors import SlmError
from slm.export import export_gguf
from slm.export.gguf import permute_rotary, unpermute_rotary
from slm.models import Decoder, ModelConfig
from slm.models.layers import apply_rope, rope_tables

Q = gguf.GGMLQuantizationType


def read(path):
    reader = gguf.GGUFReader(path)
    fields = {name: f.contents() for name, f in reader.fields.items() if not name.startswith("GGUF.")}
    return fields, {t.name: t for t in reader.tensors}


def values(t) -> np.ndarray:
    """A tensor's values as float32 in numpy (row-major) shape; GGUF lists dimensions innermost first."""
    return gguf.quants.dequantize(t.data, t.tensor_type).reshape(tuple(reversed(t.shape.tolist())))


def expected_tensors(model: Decoder) -> dict[str, np.ndarray]:
    cfg, sd = model.config, model.state_dict()
    out = {"token_embd.weight": sd["embed.weight"], "output_norm.weight": sd["norm.weight"]}
    if not cfg.tie_embeddings:
        out["output.weight"] = sd["lm_head.weight"]
    ours = {"attn_norm": "attn_norm", "attn.q_proj": "attn_q", "attn.k_proj": "attn_k", "attn.v_proj": "attn_v",
            "attn.o_proj": "attn_output", "mlp_norm": "ffn_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
            "mlp.down_proj": "ffn_down"}
    for i in range(cfg.n_layers):
        for src, dst in ours.items():
            out[f"blk.{i}.{dst}.weight"] = sd[f"layers.{i}.{src}.weight"]
    return {k: v.float().numpy() for k, v in out.items()}


@pytest.mark.parametrize("dtype", ["f32", "f16", "q8_0"])
@pytest.mark.parametrize("tied", [False, True])
def test_weights_round_trip(tmp_path, tokenizers, make_model, dtype, tied):
    tok = tokenizers["byte-bpe"]
    model = make_model(320, tie_embeddings=tied)
    cfg = model.config
    path = export_gguf(model, tok, tmp_path / "m.gguf", dtype=dtype)
    fields, tensors = read(path)

    assert fields["general.architecture"] == "llama"
    assert fields["general.file_type"] == {"f32": 0, "f16": 1, "q8_0": 7}[dtype]
    hparams = {"context_length": 128, "embedding_length": 64, "block_count": 2, "feed_forward_length": 80,
               "attention.head_count": 4, "attention.head_count_kv": 2, "attention.key_length": 16,
               "rope.dimension_count": 16}
    for key, want in hparams.items():
        assert fields[f"llama.{key}"] == want, key
    assert math.isclose(fields["llama.rope.freq_base"], 5000.0)
    assert math.isclose(fields["llama.attention.layer_norm_rms_epsilon"], 1e-6, rel_tol=1e-6)

    want = expected_tensors(model)
    assert set(tensors) == set(want)  # the tied output is left out: llama.cpp reuses token_embd
    for name, w in want.items():
        t = tensors[name]
        got = values(t)
        assert got.shape == w.shape, name
        if name.endswith(("attn_q.weight", "attn_k.weight")):
            got = unpermute_rotary(got, cfg.n_heads if "attn_q" in name else cfg.n_kv_heads)
        if w.ndim == 1 or dtype == "f32":
            assert t.tensor_type == Q.F32, name
            np.testing.assert_array_equal(got, w, err_msg=name)
        elif dtype == "f16" or w.shape[-1] % 32:  # q8_0 falls back to f16 for rows that are not whole blocks
            assert t.tensor_type == Q.F16, name
            np.testing.assert_allclose(got, w, rtol=2**-11, atol=1e-7, err_msg=name)
        else:
            assert t.tensor_type == Q.Q8_0, name
            # Each block of 32 shares one scale d = max|x|/127, stored as f16: the error is at most half a
            # step from rounding to an integer plus 127 times the f16 rounding of d (relative 2^-11).
            blocks, err = w.reshape(-1, 32), np.abs(got - w).reshape(-1, 32)
            step = np.abs(blocks).max(axis=1, keepdims=True) / 127
            assert (err <= step * (0.5 + 127 * 2**-11) + 1e-8).all(), name
            assert err.max() > 0  # really quantized


def test_q8_0_falls_back_only_where_rows_do_not_fit(tmp_path, tokenizers, make_model):
    _, tensors = read(export_gguf(make_model(320), tokenizers["byte-bpe"], tmp_path / "m.gguf", dtype="q8_0"))
    assert tensors["blk.0.ffn_down.weight"].tensor_type == Q.F16  # rows of 80
    assert tensors["blk.0.ffn_up.weight"].tensor_type == Q.Q8_0  # rows of 64


def interleaved_rope(x: torch.Tensor, theta: float) -> torch.Tensor:
    """llama.cpp's (and Meta's original) rotary: channel pairs (2j, 2j+1) as complex numbers. x: [T, H, D]."""
    T, _, D = x.shape
    freqs = 1.0 / theta ** (torch.arange(0, D, 2, dtype=torch.float64) / D)
    angles = torch.polar(torch.ones(T, D // 2, dtype=torch.float64), torch.outer(torch.arange(T).double(), freqs))
    pairs = torch.view_as_complex(x.double().reshape(T, -1, D // 2, 2).contiguous())
    return torch.view_as_real(pairs * angles[:, None]).reshape(x.shape)


def test_permutation_turns_rotate_half_into_interleaved_rope():
    """Attention scores from permuted q/k under llama.cpp's rotary equal slm's under 'rotate half'."""
    torch.manual_seed(0)
    T, dim, H, KV, D, theta = 7, 48, 4, 2, 12, 10000.0
    x = torch.randn(T, dim, dtype=torch.float64)
    wq, wk = torch.randn(H * D, dim, dtype=torch.float64), torch.randn(KV * D, dim, dtype=torch.float64)
    cos, sin = rope_tables(D, T, theta)
    cos, sin = cos[None].double(), sin[None].double()
    q = apply_rope((x @ wq.T).view(1, T, H, D).transpose(1, 2), cos, sin)[0].transpose(0, 1)  # [T, H, D]
    k = apply_rope((x @ wk.T).view(1, T, KV, D).transpose(1, 2), cos, sin)[0].transpose(0, 1)
    pq = torch.from_numpy(permute_rotary(wq.numpy(), H))
    pk = torch.from_numpy(permute_rotary(wk.numpy(), KV))
    q2 = interleaved_rope((x @ pq.T).view(T, H, D), theta)
    k2 = interleaved_rope((x @ pk.T).view(T, KV, D), theta)
    rep = H // KV
    scores = torch.einsum("thd,shd->hts", q, k.repeat_interleave(rep, dim=1))
    scores2 = torch.einsum("thd,shd->hts", q2, k2.repeat_interleave(rep, dim=1))
    torch.testing.assert_close(scores2, scores, rtol=1e-4, atol=1e-4)  # slm's tables are float32
    assert not torch.allclose(q2, q)  # the layouts do differ; only the scores agree


@pytest.mark.parametrize("kind", ["byte-bpe", "llama-bpe"])
def test_tokenizer_round_trip(tmp_path, tokenizers, make_model, kind):
    tok = tokenizers[kind]
    n = len(tok)
    fields, _ = read(export_gguf(make_model(n + 7), tok, tmp_path / "m.gguf"))
    tokens, types = fields["tokenizer.ggml.tokens"], fields["tokenizer.ggml.token_type"]
    assert len(tokens) == len(types) == n + 7  # padded to the embedding's rows
    assert tokens[:n] == tok.convert_ids_to_tokens(list(range(n)))
    assert tokens[n:] == [f"[PAD{i}]" for i in range(n, n + 7)] and set(types[n:]) == {gguf.TokenType.UNUSED}
    control = {tok.convert_tokens_to_ids(t) for t in ("<|im_start|>", "<|im_end|>", tok.eos_token, tok.pad_token)}
    assert all(types[i] == gguf.TokenType.CONTROL for i in control)
    assert fields["tokenizer.ggml.eos_token_id"] == tok.eos_token_id
    assert fields["tokenizer.ggml.bos_token_id"] == tok.bos_token_id
    assert fields["tokenizer.ggml.padding_token_id"] == tok.pad_token_id
    assert fields["tokenizer.ggml.eot_token_id"] == tok.convert_tokens_to_ids("<|im_end|>")
    merges = [" ".join(m) if isinstance(m, list) else m
              for m in __import__("json").loads(tok.backend_tokenizer.to_str())["model"]["merges"]]
    if kind == "byte-bpe":
        assert fields["tokenizer.ggml.model"] == "gpt2" and fields["tokenizer.ggml.pre"] == "gpt-2"
        assert fields["tokenizer.ggml.merges"] == merges
        assert fields["tokenizer.ggml.add_bos_token"] is False
        assert gguf.TokenType.BYTE not in types
    else:
        assert fields["tokenizer.ggml.model"] == "llama"
        assert fields["tokenizer.ggml.add_bos_token"] is True and fields["tokenizer.ggml.add_space_prefix"] is False
        assert fields["tokenizer.ggml.unknown_token_id"] == tok.unk_token_id
        assert types[tok.unk_token_id] == gguf.TokenType.UNKNOWN
        byte_ids = tok.convert_tokens_to_ids([f"<0x{b:02X}>" for b in range(256)])
        assert all(types[i] == gguf.TokenType.BYTE for i in byte_ids)
        # Merge priority becomes score order: the token of an earlier merge scores higher.
        scores = fields["tokenizer.ggml.scores"]
        made = [tok.convert_tokens_to_ids(m.replace(" ", "")) for m in merges[:20]]
        assert [scores[i] for i in made] == sorted((scores[i] for i in made), reverse=True)
        assert scores[made[0]] > scores[byte_ids[0]]


def test_chat_template_renders_like_transformers(tmp_path, tokenizers, make_model):
    tok = tokenizers["llama-bpe"]
    fields, _ = read(export_gguf(make_model(len(tok)), tok, tmp_path / "m.gguf"))
    template = fields["tokenizer.chat_template"]
    assert "{% generation %}" not in template  # transformers-only markers; plain Jinja (llama.cpp, others) rejects them
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Bye"}]
    rendered = jinja2.Environment().from_string(template).render(messages=messages, add_generation_prompt=True)
    assert rendered == tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def test_refuses_what_llama_cpp_cannot_run(tmp_path, tokenizers, make_model):
    tok = tokenizers["byte-bpe"]
    phi = Decoder(ModelConfig(arch="phi", vocab_size=320, dim=64, n_layers=1, n_heads=4, ffn_dim=128))
    with pytest.raises(SlmError, match="Llama family only"):
        export_gguf(phi, tok, tmp_path / "phi.gguf")
    with pytest.raises(SlmError, match="rotates"):
        export_gguf(make_model(320, rotary_fraction=0.5), tok, tmp_path / "partial.gguf")
    with pytest.raises(SlmError, match="has none"):
        export_gguf(make_model(320), None, tmp_path / "notok.gguf")
    with pytest.raises(SlmError, match="tokenizer has"):
        export_gguf(make_model(100), tok, tmp_path / "small.gguf")
    with pytest.raises(SlmError, match="dtype"):
        export_gguf(make_model(320), tok, tmp_path / "q4.gguf", dtype="q4_0")
    assert not list(tmp_path.iterdir())


def test_failed_export_keeps_the_old_file(tmp_path, tokenizers, make_model, monkeypatch):
    tok, path = tokenizers["byte-bpe"], tmp_path / "m.gguf"
    export_gguf(make_model(320), tok, path)
    before = path.read_bytes()

    def broken(array, dtype):
        raise RuntimeError("disk full")

    monkeypatch.setattr("slm.export.gguf.encode_tensor", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        export_gguf(make_model(320, seed=1), tok, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.gguf"]  # no temporary file left behind


def test_cli(tmp_path, tokenizers, make_model, capsys):
    tok = tokenizers["llama-bpe"]
    slm.save(make_model(len(tok)), tok, tmp_path / "ckpt")
    assert main(["export", "gguf", str(tmp_path / "ckpt"), str(tmp_path / "out.gguf"), "--dtype", "q8_0"]) == 0
    assert "wrote" in capsys.readouterr().out
    fields, tensors = read(tmp_path / "out.gguf")
    assert fields["general.file_type"] == 7 and fields["tokenizer.ggml.model"] == "llama"
    phi = Decoder(ModelConfig(arch="phi", vocab_size=len(tok), dim=64, n_layers=1, n_heads=4, ffn_dim=128))
    slm.save(phi, tok, tmp_path / "phi")
    assert main(["export", "gguf", str(tmp_path / "phi"), str(tmp_path / "phi.gguf")]) == 2
    assert "Llama family only" in capsys.readouterr().err


def test_sentencepiece_dummy_prefix_is_declared(tmp_path, tokenizers, make_model):
    """A Llama tokenizer whose Metaspace prepends '▁' (SentencePiece's dummy prefix) tells llama.cpp so."""
    from tokenizers import pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = tokenizers["llama-bpe"]
    backend = type(tok.backend_tokenizer).from_str(tok.backend_tokenizer.to_str())
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=True)
    prefixed = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                       pad_token="<pad>")
    assert prefixed.convert_ids_to_tokens(prefixed.encode("hi", add_special_tokens=False))[0].startswith("\u2581")
    fields, _ = read(export_gguf(make_model(len(tok)), prefixed, tmp_path / "m.gguf"))
    assert fields["tokenizer.ggml.add_space_prefix"] is True
