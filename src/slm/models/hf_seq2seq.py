"""The encoder-decoder family's HF mapping: config.json and tensor names of T5ForConditionalGeneration /
T5EncoderModel checkpoints <-> Seq2SeqConfig.

T5 has always used `tie_word_embeddings` for two things: true (v1.0) means the output projection is the embedding
and the decoder's output is scaled by dim**-0.5; false (v1.1, Flan-T5) means a separate `lm_head.weight` and no
scaling. transformers 5 writes the scaling as `scale_decoder_outputs` (with tie_word_embeddings always true) and
unties when both tensors are stored. So slm reads the scaling from either key and the tying from the tensors, and
writes the classic key, which both old and new transformers read the same way.
"""
from __future__ import annotations

import re

import torch

from slm.errors import CheckpointError
from slm.models.seq2seq import Seq2SeqConfig

ARCHITECTURES = {False: "T5ForConditionalGeneration", True: "T5EncoderModel"}

# (slm name, HF name); {s} is the stack (encoder / decoder), {i} the layer.
_NAMES = [
    ("embed.", "shared."),
    ("{s}.relative_bias.", "{s}.block.0.layer.0.SelfAttention.relative_attention_bias."),
    ("{s}.layers.{i}.attn_norm.", "{s}.block.{i}.layer.0.layer_norm."),
    ("{s}.layers.{i}.attn.", "{s}.block.{i}.layer.0.SelfAttention."),
    ("decoder.layers.{i}.cross_norm.", "decoder.block.{i}.layer.1.layer_norm."),
    ("decoder.layers.{i}.cross_attn.", "decoder.block.{i}.layer.1.EncDecAttention."),
    ("encoder.layers.{i}.mlp_norm.", "encoder.block.{i}.layer.1.layer_norm."),
    ("encoder.layers.{i}.mlp.", "encoder.block.{i}.layer.1.DenseReluDense."),
    ("decoder.layers.{i}.mlp_norm.", "decoder.block.{i}.layer.2.layer_norm."),
    ("decoder.layers.{i}.mlp.", "decoder.block.{i}.layer.2.DenseReluDense."),
    ("{s}.norm.", "{s}.final_layer_norm."),
    ("lm_head.", "lm_head."),
]


def _pattern(template: str) -> re.Pattern:
    escaped = re.escape(template).replace(r"\{s\}", r"(?P<s>encoder|decoder)").replace(r"\{i\}", r"(?P<i>\d+)")
    return re.compile("^" + escaped)


_COMPILED = [(_pattern(ours), ours, _pattern(theirs), theirs) for ours, theirs in _NAMES]


def _rename(name: str, to_hf: bool) -> str:
    for ours_re, ours, theirs_re, theirs in _COMPILED:
        m = (ours_re if to_hf else theirs_re).match(name)
        if m:
            target = theirs if to_hf else ours
            for key, value in m.groupdict().items():
                target = target.replace("{" + key + "}", value)
            return target + name[m.end():]
    raise CheckpointError(f"unexpected tensor {name!r} for a t5 model")


def _stores_lm_head(cfg: Seq2SeqConfig) -> bool:
    # A tied head without the scaling has no classic config: it is stored as its own tensor.
    return not (cfg.tie_embeddings and cfg.scale_output)


def name_to_hf(name: str, cfg: Seq2SeqConfig) -> str | None:
    if name == "lm_head.weight" and not _stores_lm_head(cfg):
        return None  # stored once, as shared.weight
    return _rename(name, to_hf=True)


def name_from_hf(hf_name: str, cfg: Seq2SeqConfig) -> str | None:
    # The stacks' own copies of the shared embedding, and the cross-attention bias table old checkpoints carry
    # (T5 never reads it), are not separate tensors in slm.
    if hf_name in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight") or \
            hf_name.endswith("EncDecAttention.relative_attention_bias.weight"):
        return None
    if hf_name == "lm_head.weight" and cfg.tie_embeddings:
        return None
    return _rename(hf_name, to_hf=False)


def config_to_hf(cfg: Seq2SeqConfig, dtype: torch.dtype = torch.float32) -> dict:
    return dict(
        architectures=[ARCHITECTURES[cfg.encoder_only]], model_type="t5", vocab_size=cfg.vocab_size,
        d_model=cfg.dim, d_kv=cfg.head_dim, d_ff=cfg.ffn_dim, num_layers=cfg.n_layers,
        num_decoder_layers=cfg.n_decoder_layers, num_heads=cfg.n_heads,
        relative_attention_num_buckets=cfg.relative_buckets, relative_attention_max_distance=cfg.relative_max_distance,
        dropout_rate=cfg.dropout, layer_norm_epsilon=cfg.norm_eps, feed_forward_proj=cfg.ffn,
        tie_word_embeddings=not _stores_lm_head(cfg), is_encoder_decoder=not cfg.encoder_only,
        n_positions=cfg.max_seq_len, pad_token_id=cfg.pad_token_id, eos_token_id=cfg.eos_token_id,
        decoder_start_token_id=cfg.decoder_start_token_id, dtype=str(dtype).removeprefix("torch."),
    )


def config_from_hf(d: dict, tensor_names: set[str] | None = None) -> Seq2SeqConfig:
    archs = d.get("architectures") or ["T5ForConditionalGeneration"]
    if archs[0] not in ARCHITECTURES.values():
        raise CheckpointError(f"{archs[0]} is not supported; slm loads {sorted(ARCHITECTURES.values())}")
    eos = d.get("eos_token_id", 1)
    scale = bool(d.get("scale_decoder_outputs", d.get("tie_word_embeddings", True)))
    tied = scale if tensor_names is None else "lm_head.weight" not in tensor_names
    return Seq2SeqConfig(
        vocab_size=d["vocab_size"], dim=d["d_model"], n_layers=d["num_layers"],
        n_decoder_layers=d.get("num_decoder_layers"), n_heads=d["num_heads"], head_dim=d["d_kv"], ffn_dim=d["d_ff"],
        ffn=d.get("feed_forward_proj", "relu"), relative_buckets=d.get("relative_attention_num_buckets", 32),
        relative_max_distance=d.get("relative_attention_max_distance", 128),
        dropout=float(d.get("dropout_rate", 0.1)), norm_eps=float(d.get("layer_norm_epsilon", 1e-6)),
        tie_embeddings=tied, scale_output=scale, encoder_only=archs[0] == "T5EncoderModel",
        max_seq_len=int(d.get("n_positions") or 512), pad_token_id=d.get("pad_token_id", 0),
        eos_token_id=eos[0] if isinstance(eos, list) and eos else eos,
        decoder_start_token_id=d.get("decoder_start_token_id", d.get("pad_token_id", 0)) or 0,
    )
