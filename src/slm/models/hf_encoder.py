"""The encoder family's HF mapping: config.json and tensor names of Roberta*/Bert* checkpoints <-> EncoderConfig.

The head is read from `architectures` (RobertaForMaskedLM -> mlm, ...ForSequenceClassification -> sequence,
...ForTokenClassification -> token, RobertaModel/BertModel -> none) and written back the same way, so
transformers' Auto class for that head loads what slm saves. Tensors are the same numbers in the same layout.
"""
from __future__ import annotations

import re

import torch

from slm.errors import CheckpointError
from slm.models.encoder import EncoderConfig

_PREFIX = {"roberta": "Roberta", "bert": "Bert"}
_SUFFIX = {"none": "Model", "mlm": "ForMaskedLM", "sequence": "ForSequenceClassification",
           "token": "ForTokenClassification"}
_HEAD_OF = {suffix: head for head, suffix in _SUFFIX.items()}
_MLM_PREFIX = {"roberta": "lm_head.", "bert": "cls.predictions."}


def architecture(cfg: EncoderConfig) -> str:
    return _PREFIX[cfg.arch] + _SUFFIX[cfg.head]


def _head_from_architectures(d: dict, arch: str) -> str:
    names = d.get("architectures") or []
    if not names:
        return "none"
    name = names[0]
    prefix = _PREFIX[arch]
    if not name.startswith(prefix) or name[len(prefix):] not in _HEAD_OF:
        known = ", ".join(prefix + s for s in _SUFFIX.values())
        raise CheckpointError(f"architecture {name!r} is not supported for model_type {arch!r}; slm loads {known}")
    return _HEAD_OF[name[len(prefix):]]


def _body_names(arch: str, head: str) -> list[tuple[str, str]]:
    p = "" if head == "none" else f"{arch}."  # heads wrap the body as .roberta / .bert
    layer = p + "encoder.layer.{i}."
    return [
        ("embed.", p + "embeddings.word_embeddings."),
        ("pos_embed.", p + "embeddings.position_embeddings."),
        ("type_embed.", p + "embeddings.token_type_embeddings."),
        ("embed_norm.", p + "embeddings.LayerNorm."),
        ("layers.{i}.attn.query.", layer + "attention.self.query."),
        ("layers.{i}.attn.key.", layer + "attention.self.key."),
        ("layers.{i}.attn.value.", layer + "attention.self.value."),
        ("layers.{i}.attn.dense.", layer + "attention.output.dense."),
        ("layers.{i}.attn_norm.", layer + "attention.output.LayerNorm."),
        ("layers.{i}.mlp.fc1.", layer + "intermediate.dense."),
        ("layers.{i}.mlp.fc2.", layer + "output.dense."),
        ("layers.{i}.mlp_norm.", layer + "output.LayerNorm."),
        ("pooler.", p + "pooler.dense."),
    ]


_HEAD_NAMES = {
    ("roberta", "mlm"): [("head.dense.", "lm_head.dense."), ("head.norm.", "lm_head.layer_norm."),
                         ("head.decoder.", "lm_head.decoder."), ("head.bias", "lm_head.bias")],
    ("bert", "mlm"): [("head.dense.", "cls.predictions.transform.dense."),
                      ("head.norm.", "cls.predictions.transform.LayerNorm."),
                      ("head.decoder.", "cls.predictions.decoder."), ("head.bias", "cls.predictions.bias")],
    ("roberta", "sequence"): [("head.dense.", "classifier.dense."), ("head.out_proj.", "classifier.out_proj.")],
    ("bert", "sequence"): [("head.classifier.", "classifier.")],
    ("roberta", "token"): [("head.classifier.", "classifier.")],
    ("bert", "token"): [("head.classifier.", "classifier.")],
}


def _table(cfg: EncoderConfig) -> list[tuple[str, str]]:
    return _body_names(cfg.arch, cfg.head) + _HEAD_NAMES.get((cfg.arch, cfg.head), [])


def _rename(name: str, table: list[tuple[str, str]], to_hf: bool) -> str | None:
    for ours, theirs in table:
        src, dst = (ours, theirs) if to_hf else (theirs, ours)
        pattern = "^" + re.escape(src).replace(r"\{i\}", r"(?P<i>\d+)")
        m = re.match(pattern, name)
        if m:
            return dst.replace("{i}", m.groupdict().get("i") or "") + name[m.end():]
    return None


def name_to_hf(name: str, cfg: EncoderConfig) -> str | None:
    """The HF name of a slm tensor, or None for one stored elsewhere (the tied decoder is the embedding)."""
    if name == "head.decoder.weight" and cfg.tie_embeddings:
        return None
    if name == "head.bias" and not cfg.tie_embeddings:
        return _MLM_PREFIX[cfg.arch] + "decoder.bias"  # untied, transformers adds the decoder's own bias
    hf = _rename(name, _table(cfg), to_hf=True)
    if hf is None:
        raise CheckpointError(f"unexpected tensor {name!r} for a {architecture(cfg)} model")
    return hf


def name_from_hf(hf_name: str, cfg: EncoderConfig) -> str | None:
    """The slm name of an HF tensor, or None for one slm derives (buffers, the decoder's bias alias)."""
    if hf_name.endswith(("embeddings.position_ids", "embeddings.token_type_ids")):
        return None  # constant buffers that older transformers saved
    if cfg.head == "mlm":
        prefix = _MLM_PREFIX[cfg.arch]
        if hf_name == prefix + "decoder.bias":
            # Tied, it is the head's bias under a second name; untied, it is the bias transformers adds.
            return None if cfg.tie_embeddings else "head.bias"
        if hf_name == prefix + "bias" and not cfg.tie_embeddings:
            return None  # untied, transformers leaves this one unused
        if hf_name == prefix + "decoder.weight" and cfg.tie_embeddings:
            return None  # a copy of the word embedding
    name = _rename(hf_name, _table(cfg), to_hf=False)
    if name is None:
        raise CheckpointError(f"unexpected tensor {hf_name} for a {architecture(cfg)} checkpoint")
    return name


def alias_from_hf(tensors: dict[str, torch.Tensor], cfg: EncoderConfig) -> dict[str, torch.Tensor]:
    """Checkpoints that kept only `...decoder.bias` (the tied alias) give it as the head's bias."""
    prefix = _MLM_PREFIX[cfg.arch]
    if cfg.head == "mlm" and cfg.tie_embeddings and prefix + "bias" not in tensors and prefix + "decoder.bias" in tensors:
        tensors = dict(tensors)
        tensors[prefix + "bias"] = tensors.pop(prefix + "decoder.bias")
    return tensors


def config_to_hf(cfg: EncoderConfig, dtype: torch.dtype = torch.float32) -> dict:
    d = dict(
        architectures=[architecture(cfg)], model_type=cfg.arch, vocab_size=cfg.vocab_size, hidden_size=cfg.dim,
        num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads, intermediate_size=cfg.ffn_dim,
        hidden_act="gelu", hidden_dropout_prob=cfg.dropout, attention_probs_dropout_prob=cfg.attn_dropout,
        max_position_embeddings=cfg.max_positions, type_vocab_size=cfg.type_vocab_size, initializer_range=0.02,
        layer_norm_eps=cfg.norm_eps, pad_token_id=cfg.pad_token_id, bos_token_id=cfg.bos_token_id,
        eos_token_id=cfg.eos_token_id, classifier_dropout=cfg.classifier_dropout,
        tie_word_embeddings=cfg.tie_embeddings, dtype=str(dtype).removeprefix("torch."),
    )
    if cfg.head in ("sequence", "token"):
        names = cfg.labels or [f"LABEL_{i}" for i in range(cfg.num_labels)]
        d["id2label"] = {str(i): n for i, n in enumerate(names)}
        d["label2id"] = {n: i for i, n in enumerate(names)}
    return d


def config_from_hf(d: dict, tensor_names: set[str] | None = None) -> EncoderConfig:
    arch = d.get("model_type")
    head = _head_from_architectures(d, arch)
    act = d.get("hidden_act", "gelu")
    if act != "gelu":
        raise CheckpointError(f"{arch} with hidden_act {act!r} is not supported (slm's encoder uses exact 'gelu')")
    if d.get("is_decoder") or d.get("add_cross_attention"):
        raise CheckpointError(f"{arch} as a decoder (is_decoder / add_cross_attention) is not supported")
    if d.get("position_embedding_type", "absolute") != "absolute":
        raise CheckpointError(f"position_embedding_type {d['position_embedding_type']!r} is not supported")
    labels = None
    if head in ("sequence", "token"):
        id2label = d.get("id2label") or {}
        n = d.get("num_labels") or len(id2label) or 2
        labels = [id2label.get(str(i), id2label.get(i, f"LABEL_{i}")) for i in range(n)] if id2label else None
    pooler = None
    if head == "none" and tensor_names is not None:  # RobertaModel(add_pooling_layer=False) saves no pooler
        pooler = any(n.startswith("pooler.") for n in tensor_names)
    defaults = {"roberta": dict(pad=1, bos=0, eos=2, types=2, eps=1e-12, positions=512),
                "bert": dict(pad=0, bos=None, eos=None, types=2, eps=1e-12, positions=512)}[arch]
    eos = d.get("eos_token_id", defaults["eos"])
    return EncoderConfig(
        arch=arch, vocab_size=d["vocab_size"], dim=d["hidden_size"], n_layers=d["num_hidden_layers"],
        n_heads=d["num_attention_heads"], ffn_dim=d["intermediate_size"],
        max_positions=d.get("max_position_embeddings", defaults["positions"]),
        type_vocab_size=d.get("type_vocab_size", defaults["types"]), norm_eps=d.get("layer_norm_eps", defaults["eps"]),
        dropout=float(d.get("hidden_dropout_prob", 0.1)), attn_dropout=float(d.get("attention_probs_dropout_prob", 0.1)),
        classifier_dropout=d.get("classifier_dropout"), head=head, num_labels=len(labels) if labels else 2,
        labels=labels, pooler=pooler, tie_embeddings=bool(d.get("tie_word_embeddings", True)),
        pad_token_id=d.get("pad_token_id", defaults["pad"]), bos_token_id=d.get("bos_token_id", defaults["bos"]),
        eos_token_id=eos[0] if isinstance(eos, list) and eos else eos,
    )
