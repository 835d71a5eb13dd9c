"""GGUF import: a llama.cpp file back into slm's Decoder and a transformers tokenizer, then an HF directory.

    model, tokenizer = read_gguf("SmolLM2-135M-Instruct.Q4_1.gguf")
    convert_gguf("model.gguf", "out_dir")        # config.json, model.safetensors, tokenizer files

The inverse of slm.export.gguf, for the "llama" architecture:
- weights: every tensor is dequantized to float32 by the gguf package (F32, F16, BF16, Q8_0, Q4_0, Q4_1,
  Q5_0, Q5_1 and the K-quants), renamed, and the q/k rows are permuted back from llama.cpp's interleaved
  rotary pairs to 'rotate half' (unpermute_rotary);
- config: from the llama.* metadata; tied embeddings where the file has no output.weight;
- tokenizer: from tokenizer.ggml.*, "gpt2" (byte-level BPE with merges, split as tokenizer.ggml.pre names)
  or "llama" (SentencePiece-style: '▁' for spaces, <0xNN> byte fallback, merge order from the scores),
  with control tokens as special tokens, add-BOS behaviour and the chat template.
Anything slm cannot rebuild exactly (another architecture, rope scaling, a pre-tokenizer it does not know,
a tensor type the gguf package cannot dequantize) is refused with one line naming it.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from slm.errors import CheckpointError
from slm.export.gguf import TENSOR_NAMES, unpermute_rotary
from slm.models.decoder import Decoder, ModelConfig

ARCHITECTURES = ("llama",)
GGUF_MAGIC = b"GGUF"
# llama.cpp token types (gguf.TokenType): what becomes an added token on the transformers side.
CONTROL, USER_DEFINED = 3, 4


def is_gguf(path) -> bool:
    return str(path).lower().endswith(".gguf")


def open_gguf(path):
    """A gguf.GGUFReader over `path`, or one line that says why the file is not a usable GGUF file."""
    import gguf

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"GGUF file not found: {path}")
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise CheckpointError(f"{path}: not a GGUF file (magic {magic!r}, expected {GGUF_MAGIC!r})")
    try:
        reader = gguf.GGUFReader(path)
    except (ValueError, KeyError, IndexError, OverflowError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: the GGUF file is truncated or corrupt ({e})") from None
    size = path.stat().st_size
    for t in reader.tensors:
        if t.data_offset + t.n_bytes > size or t.data.nbytes != t.n_bytes:
            raise CheckpointError(f"{path}: the GGUF file is truncated (tensor {t.name} ends past the file's "
                                  f"{size} bytes)")
    return reader


def metadata(reader) -> dict:
    return {name: field.contents() for name, field in reader.fields.items() if not name.startswith("GGUF.")}


def config_from_gguf(meta: dict, tensor_names: set[str], where: str = "GGUF file") -> ModelConfig:
    arch = meta.get("general.architecture")
    if arch not in ARCHITECTURES:
        raise CheckpointError(f"{where}: architecture {arch!r} is not supported; slm imports {', '.join(ARCHITECTURES)} "
                              "GGUF files")

    def get(key, default=None, required=True):
        value = meta.get(f"{arch}.{key}", default)
        if value is None and required:
            raise CheckpointError(f"{where}: metadata {arch}.{key} is missing")
        if isinstance(value, list):
            raise CheckpointError(f"{where}: {arch}.{key} varies by layer, which slm's {arch} does not support")
        return value

    scaling = meta.get(f"{arch}.rope.scaling.type", "none")
    if scaling not in ("none", None) or "rope_freqs.weight" in tensor_names:
        raise CheckpointError(f"{where}: rope scaling ({scaling if scaling != 'none' else 'rope_freqs'}) is not supported")
    dim, n_heads = int(get("embedding_length")), int(get("attention.head_count"))
    head_dim = int(get("attention.key_length", dim // n_heads))
    if int(get("attention.value_length", head_dim)) != head_dim:
        raise CheckpointError(f"{where}: key and value head sizes differ, which slm's {arch} does not support")
    if int(get("rope.dimension_count", head_dim)) != head_dim:
        raise CheckpointError(f"{where}: rotary on {get('rope.dimension_count')} of {head_dim} channels per head "
                              f"is not supported for {arch}")
    tokens = meta.get("tokenizer.ggml.tokens") or []
    special = {k: meta.get(f"tokenizer.ggml.{k}_token_id") for k in ("bos", "eos", "padding")}
    return ModelConfig(
        arch="llama", vocab_size=int(get("vocab_size", len(tokens) or None)), dim=dim,
        n_layers=int(get("block_count")), n_heads=n_heads, n_kv_heads=int(get("attention.head_count_kv", n_heads)),
        head_dim=head_dim, ffn_dim=int(get("feed_forward_length")), max_seq_len=int(get("context_length", 2048)),
        rope_theta=float(get("rope.freq_base", 10000.0)),
        norm_eps=float(get("attention.layer_norm_rms_epsilon", 1e-5)),
        tie_embeddings="output.weight" not in tensor_names,
        bos_token_id=special["bos"], eos_token_id=special["eos"], pad_token_id=special["padding"])


def _slm_name(gguf_name: str) -> str | None:
    for ours, theirs in TENSOR_NAMES:
        pattern = "^" + re.escape(theirs).replace(r"\{i\}", r"(?P<i>\d+)")
        m = re.match(pattern, gguf_name)
        if m:
            return ours.replace("{i}", m.groupdict().get("i") or "") + gguf_name[m.end():]
    return None


def weights_from_gguf(reader, cfg: ModelConfig, where: str = "GGUF file") -> dict[str, torch.Tensor]:
    """slm parameter name -> float32 tensor, dequantized and with q/k rows back in 'rotate half' order."""
    import gguf

    state = {}
    for t in reader.tensors:
        name = _slm_name(t.name)
        if name is None:
            raise CheckpointError(f"{where}: unexpected tensor {t.name} for a llama model")
        try:
            array = gguf.quants.dequantize(t.data, t.tensor_type)
        except NotImplementedError:
            raise CheckpointError(f"{where}: tensor {t.name} has type {t.tensor_type.name}, which the gguf "
                                  "package cannot dequantize") from None
        array = np.array(array, dtype=np.float32).reshape(tuple(reversed(t.shape.tolist())))  # a copy: the file is mapped read-only
        if ".attn.q_proj." in name:
            array = unpermute_rotary(array, cfg.n_heads)
        elif ".attn.k_proj." in name:
            array = unpermute_rotary(array, cfg.n_kv_heads)
        state[name] = torch.from_numpy(np.ascontiguousarray(array))
    return state


def model_from_gguf(reader, cfg: ModelConfig, where: str = "GGUF file") -> Decoder:
    state = weights_from_gguf(reader, cfg, where)
    with torch.device("meta"):
        model = Decoder(cfg)
    expected = model.state_dict()
    if cfg.tie_embeddings:
        expected.pop("lm_head.weight")
    missing = sorted(set(expected) - set(state))
    if missing:
        raise CheckpointError(f"{where}: the file lacks {len(missing)} tensor(s), e.g. {missing[:3]}")
    for name, t in state.items():
        if tuple(t.shape) != tuple(expected[name].shape):
            raise CheckpointError(f"{where}: tensor {name} has shape {tuple(t.shape)}, the metadata implies "
                                  f"{tuple(expected[name].shape)}")
    model.load_state_dict(state, strict=False, assign=True)
    if cfg.tie_embeddings:
        model.lm_head.weight = model.embed.weight
    model.reset_rope()
    return model.eval()


# ---- tokenizer ----

def _byte_level_split(digits_alone: bool):
    from tokenizers import pre_tokenizers

    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if not digits_alone:
        return byte_level
    return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])


# tokenizer.ggml.pre -> how the text is split before the byte-level merges (llama.cpp's llama-vocab.cpp).
GPT2_SPLITS = {
    "gpt-2": lambda: _byte_level_split(digits_alone=False),  # GPT-2's own regex (what slm export writes)
    "smollm": lambda: _byte_level_split(digits_alone=True),  # every digit apart, then GPT-2's regex
}


def tokenizer_from_gguf(meta: dict, where: str = "GGUF file"):
    """A transformers PreTrainedTokenizerFast equal to the vocabulary the file describes."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, processors
    from transformers import PreTrainedTokenizerFast

    kind = meta.get("tokenizer.ggml.model")
    tokens = list(meta.get("tokenizer.ggml.tokens") or [])
    if not tokens:
        raise CheckpointError(f"{where}: the file carries no vocabulary (tokenizer.ggml.tokens)")
    types = list(meta.get("tokenizer.ggml.token_type") or [1] * len(tokens))
    vocab = {token: i for i, token in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise CheckpointError(f"{where}: the vocabulary lists a token twice")
    ids = {k: meta.get(f"tokenizer.ggml.{key}_token_id")
           for k, key in (("bos", "bos"), ("eos", "eos"), ("unk", "unknown"), ("pad", "padding"))}
    if kind == "gpt2":
        pre = meta.get("tokenizer.ggml.pre", "gpt-2")
        if pre not in GPT2_SPLITS:
            raise CheckpointError(f"{where}: tokenizer.ggml.pre {pre!r} is a text split slm cannot rebuild "
                                  f"(it knows {', '.join(GPT2_SPLITS)})")
        merges = [tuple(m.split(" ", 1)) for m in meta.get("tokenizer.ggml.merges") or []]
        tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
        tok.pre_tokenizer = GPT2_SPLITS[pre]()
        tok.decoder = decoders.ByteLevel()
        add_bos = bool(meta.get("tokenizer.ggml.add_bos_token", False))
        plain = processors.ByteLevel(trim_offsets=False)
    elif kind == "llama":
        scores = list(meta.get("tokenizer.ggml.scores") or [])
        if len(scores) != len(tokens):
            raise CheckpointError(f"{where}: a llama vocabulary needs one score per token")
        unk = tokens[ids["unk"]] if ids["unk"] is not None else None
        tok = Tokenizer(models.BPE(vocab=vocab, merges=merges_from_scores(tokens, scores, types), unk_token=unk,
                                   byte_fallback=True, fuse_unk=True))
        space_prefix = bool(meta.get("tokenizer.ggml.add_space_prefix", True))
        steps = [normalizers.Prepend("\u2581")] if space_prefix else []
        tok.normalizer = normalizers.Sequence(steps + [normalizers.Replace(" ", "\u2581")])
        tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()]
                                        + ([decoders.Strip(" ", 1, 0)] if space_prefix else []))
        add_bos = bool(meta.get("tokenizer.ggml.add_bos_token", True))  # llama.cpp's default for SPM files
        plain = None
    else:
        raise CheckpointError(f"{where}: tokenizer kind {kind!r} is not one slm can rebuild (gpt2 or llama)")
    if add_bos and ids["bos"] is not None:
        bos = tokens[ids["bos"]]
        tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                           special_tokens=[(bos, ids["bos"])])
    elif plain is not None:
        tok.post_processor = plain
    tok.add_tokens([AddedToken(t, special=False, normalized=False)
                    for t, ty in zip(tokens, types) if ty == USER_DEFINED])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, ty in zip(tokens, types) if ty == CONTROL])
    names = {f"{k}_token": tokens[i] for k, i in ids.items() if i is not None and 0 <= i < len(tokens)}
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **names)
    template = meta.get("tokenizer.chat_template")
    if template:
        fast.chat_template = template
    return fast


def merges_from_scores(tokens: list[str], scores: list[float], types: list[int]) -> list[tuple[str, str]]:
    """BPE merges whose order follows llama.cpp's SentencePiece rule: join the pair whose token scores highest.

    Every normal token that splits into two tokens of the vocabulary gives a merge; merges are ranked by
    the joined token's score (highest first), then by the left part's id, as the vocabulary lists them.
    """
    vocab = {t: i for i, t in enumerate(tokens)}
    candidates = []
    for token, score, kind in zip(tokens, scores, types):
        if kind != 1 or len(token) < 2:
            continue
        for cut in range(1, len(token)):
            left, right = token[:cut], token[cut:]
            if left in vocab and right in vocab:
                candidates.append((-score, vocab[left], vocab[right], left, right))
    candidates.sort()
    return [(left, right) for *_, left, right in candidates]


def read_gguf(path) -> tuple[Decoder, object]:
    """(model, tokenizer) from a GGUF file, in float32."""
    where = str(path)
    reader = open_gguf(path)
    meta = metadata(reader)
    cfg = config_from_gguf(meta, {t.name for t in reader.tensors}, where)
    tokenizer = tokenizer_from_gguf(meta, where)  # before the weights: a refused tokenizer costs no dequantizing
    return model_from_gguf(reader, cfg, where), tokenizer


def convert_gguf(path, out_dir, dtype: torch.dtype | None = None) -> Path:
    """Write the HF directory for a GGUF file, atomically (nothing appears at out_dir unless it all worked)."""
    from slm.models.hf import save

    model, tokenizer = read_gguf(path)
    return save(model, tokenizer, out_dir, dtype=dtype)
