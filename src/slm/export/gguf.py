"""GGUF export: one file with the weights, the tokenizer and the chat template, for llama.cpp.

    export_gguf(model, tokenizer, "model.gguf", dtype="q8_0")

Llama family only (llama.cpp's "llama" architecture). Three things differ from the HF layout:
- names: llama.cpp's tensor names (token_embd, blk.N.attn_q, ...);
- rotary layout: llama.cpp's Llama rotates interleaved channel pairs (x0, x1), (x2, x3), ... while slm and
  HF rotate halves (x_i, x_{i + d/2}). Permuting the output rows of q_proj and k_proj within each head
  turns one into the other, exactly as llama.cpp's convert_hf_to_gguf.py does;
- tokenizer: written as llama.cpp vocabulary metadata, "llama" (SentencePiece-like: '▁', <0xNN> bytes,
  merge priority given as token scores) or "gpt2" (byte-level BPE with its merges).
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import torch

from slm.errors import SlmError

DTYPES = ("f32", "f16", "q8_0")
Q8_BLOCK = 32  # q8_0 quantizes rows in blocks of 32 values, each with one f16 scale

# slm parameter name -> llama.cpp tensor name; {i} is the layer index.
TENSOR_NAMES = [
    ("embed.weight", "token_embd.weight"),
    ("layers.{i}.attn_norm.weight", "blk.{i}.attn_norm.weight"),
    ("layers.{i}.attn.q_proj.", "blk.{i}.attn_q."),
    ("layers.{i}.attn.k_proj.", "blk.{i}.attn_k."),
    ("layers.{i}.attn.v_proj.", "blk.{i}.attn_v."),
    ("layers.{i}.attn.o_proj.", "blk.{i}.attn_output."),
    ("layers.{i}.mlp_norm.weight", "blk.{i}.ffn_norm.weight"),
    ("layers.{i}.mlp.gate_proj.", "blk.{i}.ffn_gate."),
    ("layers.{i}.mlp.up_proj.", "blk.{i}.ffn_up."),
    ("layers.{i}.mlp.down_proj.", "blk.{i}.ffn_down."),
    ("norm.weight", "output_norm.weight"),
    ("lm_head.weight", "output.weight"),
]


def gguf_tensor_name(name: str) -> str:
    """llama.cpp's name for an slm parameter name (layers.3.attn.q_proj.weight -> blk.3.attn_q.weight)."""
    for ours, theirs in TENSOR_NAMES:
        pattern = "^" + re.escape(ours).replace(r"\{i\}", r"(?P<i>\d+)")
        m = re.match(pattern, name)
        if m:
            return theirs.replace("{i}", m.groupdict().get("i") or "") + name[m.end():]
    raise SlmError(f"no GGUF name for tensor {name!r}")


def permute_rotary(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Reorder q/k output rows from 'rotate half' to interleaved pairs, head by head.

    Within a head of d rows, HF pairs row j with row j + d/2; llama.cpp pairs rows 2j and 2j+1. Row j of the
    half-layout goes to row 2j, row j + d/2 to row 2j + 1. Works for weights [rows, in] and biases [rows].
    """
    head_dim = w.shape[0] // n_heads
    return w.reshape(n_heads, 2, head_dim // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute_rotary(w: np.ndarray, n_heads: int) -> np.ndarray:
    """The inverse of permute_rotary (GGUF import): interleaved pairs back to 'rotate half'."""
    head_dim = w.shape[0] // n_heads
    return w.reshape(n_heads, head_dim // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def check_exportable(cfg) -> None:
    if cfg.arch != "llama":
        raise SlmError(f"GGUF export supports the Llama family only; this is a {cfg.arch} model")
    if cfg.rotary_dim != cfg.head_dim:
        raise SlmError(f"llama.cpp's Llama rotates every channel of a head; this model rotates {cfg.rotary_dim} "
                       f"of {cfg.head_dim}")


def export_gguf(model, tokenizer, path: str | os.PathLike, dtype: str = "f32", name: str | None = None) -> Path:
    """Write `model` (a Llama-family slm Decoder) and `tokenizer` to one GGUF file, atomically.

    dtype: "f32", "f16" or "q8_0" for the 2-D weights (norms stay f32; a matrix whose rows are not a
    multiple of 32 falls back from q8_0 to f16, as in llama.cpp's converter). Returns the path.
    """
    import gguf

    from slm.models.hf import unwrap
    from slm.tokenizer import check_compatible

    if dtype not in DTYPES:
        raise SlmError(f"unknown GGUF dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    model = unwrap(model)
    cfg = model.config
    check_exportable(cfg)
    if tokenizer is None:
        raise SlmError("a GGUF file carries its tokenizer, and this model has none: pass one (--tokenizer DIR)")
    check_compatible(cfg, tokenizer, "GGUF export")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        writer = gguf.GGUFWriter(tmp, "llama")
        _write_hparams(writer, cfg, dtype, name or path.stem)
        write_tokenizer(writer, tokenizer, cfg)
        for tensor_name, array in llama_tensors(model):
            data, qtype = encode_tensor(array, dtype)
            writer.add_tensor(tensor_name, data, raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _write_hparams(writer, cfg, dtype: str, name: str) -> None:
    import gguf

    file_type = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                 "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[dtype]
    writer.add_name(name)
    writer.add_context_length(cfg.max_seq_len)
    writer.add_embedding_length(cfg.dim)
    writer.add_block_count(cfg.n_layers)
    writer.add_feed_forward_length(cfg.ffn_dim)
    writer.add_head_count(cfg.n_heads)
    writer.add_head_count_kv(cfg.n_kv_heads)
    writer.add_key_length(cfg.head_dim)
    writer.add_value_length(cfg.head_dim)
    writer.add_rope_dimension_count(cfg.head_dim)
    writer.add_rope_freq_base(cfg.rope_theta)
    writer.add_layer_norm_rms_eps(cfg.norm_eps)
    writer.add_vocab_size(cfg.vocab_size)
    writer.add_file_type(file_type)
    if dtype == "q8_0":
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def llama_tensors(model):
    """(llama.cpp name, float32 array) for every tensor, q/k rows permuted; the tied output is left out."""
    cfg = model.config
    for name, t in model.state_dict().items():
        if cfg.tie_embeddings and name == "lm_head.weight":
            continue  # llama.cpp reuses token_embd when output is absent
        array = t.detach().to(torch.float32).cpu().numpy()
        if ".attn.q_proj." in name:
            array = permute_rotary(array, cfg.n_heads)
        elif ".attn.k_proj." in name:
            array = permute_rotary(array, cfg.n_kv_heads)
        yield gguf_tensor_name(name), np.ascontiguousarray(array)


def encode_tensor(array: np.ndarray, dtype: str):
    """(data, raw_dtype) for GGUFWriter.add_tensor: 1-D stays f32; matrices become f32, f16 or q8_0."""
    import gguf

    Q = gguf.GGMLQuantizationType
    if array.ndim < 2 or dtype == "f32":
        return array.astype(np.float32), Q.F32
    if dtype == "q8_0" and array.shape[-1] % Q8_BLOCK == 0:
        return gguf.quants.quantize(array, Q.Q8_0), Q.Q8_0
    return array.astype(np.float16), Q.F16


# ---- tokenizer ----

def tokenizer_kind(tokenizer) -> str:
    """"llama" (Metaspace '▁' + <0xNN> byte fallback) or "gpt2" (byte-level BPE), from the tokenizer.json."""
    spec = _backend_json(tokenizer)
    model = spec.get("model") or {}
    if model.get("type") != "BPE":
        raise SlmError(f"GGUF export handles BPE tokenizers; this one is {model.get('type')!r}")
    pre_types = _component_types(spec.get("pre_tokenizer"))
    if "ByteLevel" in pre_types:
        byte_level_split(spec)  # refuses a split llama.cpp has no name for
        return "gpt2"
    if model.get("byte_fallback") and ("Metaspace" in pre_types or "Replace" in _component_types(spec.get("normalizer"))):
        return "llama"
    raise SlmError("unsupported tokenizer for GGUF: expected slm's byte-bpe (GPT-2 style) or llama-bpe "
                   "(SentencePiece style with byte fallback)")


def byte_level_split(spec: dict) -> str:
    """llama.cpp's name (tokenizer.ggml.pre) for how a byte-level tokenizer splits text before its merges.

    "gpt-2": GPT-2's regex alone; "smollm": every digit apart first (SmolLM's, and slm's split_digits).
    slm.models.gguf_import rebuilds the same two.
    """
    pre = spec.get("pre_tokenizer")
    types = _component_types(pre)
    if _find(pre, "ByteLevel").get("use_regex", True):
        if types == ["ByteLevel"]:
            return "gpt-2"
        if types == ["Digits", "ByteLevel"] and _find(pre, "Digits").get("individual_digits"):
            return "smollm"
    raise SlmError("this byte-level tokenizer splits text in a way llama.cpp has no name for (slm exports "
                   "GPT-2's own split and SmolLM's digits-apart split)")


def write_tokenizer(writer, tokenizer, cfg) -> None:
    spec = _backend_json(tokenizer)
    kind = tokenizer_kind(tokenizer)
    tokens, types = vocabulary(tokenizer, cfg.vocab_size, kind)
    writer.add_tokenizer_model(kind)
    if kind == "gpt2":
        writer.add_tokenizer_pre(byte_level_split(spec))
        writer.add_token_list(tokens)
        writer.add_token_types(types)
        writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]])
    else:
        writer.add_tokenizer_pre("default")
        writer.add_token_list(tokens)
        writer.add_token_scores(merge_scores(tokens, spec["model"]["merges"]))
        writer.add_token_types(types)
        writer.add_add_space_prefix(_adds_space_prefix(spec))
    ids = {"bos": tokenizer.bos_token_id, "eos": tokenizer.eos_token_id, "unk": tokenizer.unk_token_id,
           "pad": tokenizer.pad_token_id}
    ids["bos"] = cfg.bos_token_id if ids["bos"] is None else ids["bos"]
    ids["eos"] = cfg.eos_token_id if ids["eos"] is None else ids["eos"]
    for key, add in (("bos", writer.add_bos_token_id), ("eos", writer.add_eos_token_id),
                     ("unk", writer.add_unk_token_id), ("pad", writer.add_pad_token_id)):
        if ids[key] is not None:
            add(int(ids[key]))
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>") if "<|im_end|>" in tokenizer.get_vocab() else None
    if end_of_turn is not None:
        writer.add_eot_token_id(end_of_turn)
    add_bos, add_eos = _added_specials(tokenizer)
    writer.add_add_bos_token(add_bos)
    writer.add_add_eos_token(add_eos)
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, str) and template:
        writer.add_chat_template(plain_chat_template(template))


def vocabulary(tokenizer, vocab_size: int, kind: str) -> tuple[list[str], list[int]]:
    """Token strings and llama.cpp token types by id, padded to the embedding's rows with unused tokens."""
    from gguf import TokenType

    spec = _backend_json(tokenizer)
    added = {t["id"]: t for t in spec.get("added_tokens", [])}
    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    unk = tokenizer.unk_token_id
    tokens, types = [], []
    for i in range(vocab_size):
        token = by_id.get(i)
        if token is None:
            tokens.append(f"[PAD{i}]")
            types.append(TokenType.UNUSED)
            continue
        tokens.append(token)
        if i == unk and kind == "llama":
            types.append(TokenType.UNKNOWN)
        elif i in added:
            types.append(TokenType.CONTROL if added[i].get("special") else TokenType.USER_DEFINED)
        elif kind == "llama" and re.fullmatch(r"<0x[0-9A-F]{2}>", token):
            types.append(TokenType.BYTE)
        else:
            types.append(TokenType.NORMAL)
    return tokens, [int(t) for t in types]


def merge_scores(tokens: list[str], merges) -> list[float]:
    """SentencePiece-style scores that make llama.cpp's merge order follow the BPE merge ranks.

    llama.cpp's "llama" tokenizer repeatedly merges the adjacent pair whose joined token has the highest
    score; BPE applies the merge of lowest rank. A token made by merge r gets score -r; tokens no merge
    makes (bytes, characters, specials) get a score below all of them.
    """
    rank: dict[str, int] = {}
    for r, m in enumerate(merges):
        left, right = m.split(" ", 1) if isinstance(m, str) else m
        rank.setdefault(left + right, r)
    floor = -float(len(merges) + 1)
    return [-float(rank[t]) if t in rank else floor for t in tokens]


def plain_chat_template(template: str) -> str:
    """The chat template without transformers' {% generation %} markers, which plain Jinja rejects.

    The markers only tell transformers which tokens the assistant wrote; rendering is unchanged.
    """
    return re.sub(r"\{%-?\s*(end)?generation\s*-?%\}", "", template)


def _added_specials(tokenizer) -> tuple[bool, bool]:
    """Whether encoding adds BOS at the start / EOS at the end (the post-processor's doing)."""
    with_specials = tokenizer.encode("a", add_special_tokens=True)
    extra = len(with_specials) - len(tokenizer.encode("a", add_special_tokens=False))
    add_bos = extra > 0 and with_specials[0] == tokenizer.bos_token_id
    add_eos = extra > int(add_bos) and with_specials[-1] == tokenizer.eos_token_id
    return add_bos, add_eos


def _adds_space_prefix(spec: dict) -> bool:
    """SentencePiece's dummy prefix: a Prepend('▁') normalizer or a Metaspace that prepends."""
    normalizer = _find(spec.get("normalizer"), "Prepend")
    if normalizer and normalizer.get("prepend") == "\u2581":
        return True
    meta = _find(spec.get("pre_tokenizer"), "Metaspace")
    return bool(meta) and meta.get("prepend_scheme", "always") in ("always", "first")


def _backend_json(tokenizer) -> dict:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise SlmError("GGUF export needs a fast tokenizer (tokenizer.json); convert it with `slm convert` first")
    return json.loads(backend.to_str())


def _components(node):
    if not node:
        return []
    inner = node.get("pretokenizers") or node.get("normalizers")
    return [c for n in inner for c in _components(n)] if inner is not None else [node]


def _component_types(node) -> list[str]:
    return [c.get("type") for c in _components(node)]


def _find(node, type_name: str) -> dict:
    return next((c for c in _components(node) if c.get("type") == type_name), {})
