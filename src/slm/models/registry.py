"""Model families, registered in one place so that load, save, the trainer and the CLI never ask which one it is.

    family = family_for_model_type("roberta")            # from config.json's model_type
    model = family.module_class(family.config_class(**family.presets["roberta-tiny"]))
    family_of(model).name                                 # "encoder"

A family is its config dataclass, its nn.Module (built from the config alone, also on the meta device), its
block class (the FSDP and activation-checkpointing unit), its named presets, and its HF mapping keyed by HF
`model_type`: config.json <-> config, and each tensor's slm name <-> HF name (None where a tensor is not stored:
a tied weight, a buffer slm recomputes). `finish_load` re-ties shared weights and rebuilds buffers after the
tensors were assigned. `generates` says whether the inference engine can decode with the family's models;
`heads` says which heads its models can carry (an encoder's MLM or classifier, a decoder's LM head).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn

from slm.errors import CheckpointError, ConfigError


@dataclass(frozen=True)
class Family:
    name: str
    model_types: tuple[str, ...]
    config_class: type
    module_class: type
    block_class: type
    config_from_hf: Callable[[dict, set[str] | None], Any]  # config.json dict (+ tensor names) -> config
    config_to_hf: Callable[..., dict]  # (config, dtype) -> config.json dict
    name_to_hf: Callable[[str, Any], str | None]
    name_from_hf: Callable[[str, Any], str | None]
    finish_load: Callable[[nn.Module], None]
    presets: dict[str, dict] = field(default_factory=dict)
    prepare_tensors: Callable[[dict, Any], dict] = lambda tensors, cfg: tensors
    generates: bool = False  # the engine decodes with it (forward + KV cache)
    embeds: bool = False  # it serves /v1/embeddings
    # The engine's view of a model (slm.infer.engine) when the model itself is not it: encoder-decoders encode the
    # prompt at prefill, then decode.
    engine_adapter: Callable[[nn.Module], Any] | None = None
    seq2seq: bool = False  # the prompt is the encoder's input; training pairs inputs with targets


_FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    for other in _FAMILIES.values():
        clash = set(other.model_types) & set(family.model_types)
        if clash and other.name != family.name:
            raise ConfigError(f"model_type(s) {sorted(clash)} already belong to the {other.name} family")
    _FAMILIES[family.name] = family
    return family


def families() -> list[Family]:
    _builtin()
    return list(_FAMILIES.values())


def family_for_model_type(model_type: str | None) -> Family:
    for family in families():
        if model_type in family.model_types:
            return family
    supported = sorted(t for f in families() for t in f.model_types)
    raise CheckpointError(f"model_type {model_type!r} is not supported; slm loads {supported} checkpoints")


def family_of(obj) -> Family | None:
    """The family of a model or a config (None for anything else, e.g. a peft wrapper's inner parts)."""
    for family in families():
        if isinstance(obj, (family.module_class, family.config_class)):
            return family
    return None


def block_classes() -> tuple[type, ...]:
    return tuple(f.block_class for f in families())


def build_model(cfg) -> nn.Module:
    family = family_of(cfg)
    if family is None:
        raise ConfigError(f"{type(cfg).__name__} is not a registered model config")
    return family.module_class(cfg)


def preset_config(name: str, **overrides):
    for family in families():
        if name in family.presets:
            return family.config_class(**{**family.presets[name], **overrides})
    names = [n for f in families() for n in f.presets]
    raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(names)}")


def _builtin() -> None:
    """The families slm ships, registered on first use (their modules import this one's callers)."""
    if "decoder" in _FAMILIES:
        return
    from slm.models import decoder, encoder, hf, hf_encoder, hf_seq2seq, presets, seq2seq

    register(Family(
        name="decoder", model_types=tuple(hf.SUPPORTED), config_class=decoder.ModelConfig,
        module_class=decoder.Decoder, block_class=decoder.Block, presets=presets.PRESETS,
        config_from_hf=lambda d, names=None: hf.config_from_hf(d), config_to_hf=hf.config_to_hf,
        name_to_hf=hf.decoder_name_to_hf, name_from_hf=hf.decoder_name_from_hf, finish_load=hf.finish_decoder,
        generates=True))
    register(Family(
        name="encoder", model_types=("roberta", "bert"), config_class=encoder.EncoderConfig,
        module_class=encoder.Encoder, block_class=encoder.Block, presets=presets.ENCODER_PRESETS,
        config_from_hf=hf_encoder.config_from_hf, config_to_hf=hf_encoder.config_to_hf,
        name_to_hf=hf_encoder.name_to_hf, name_from_hf=hf_encoder.name_from_hf,
        prepare_tensors=hf_encoder.alias_from_hf, finish_load=lambda m: m.tie_weights(), embeds=True))
    register(Family(
        name="seq2seq", model_types=("t5",), config_class=seq2seq.Seq2SeqConfig, module_class=seq2seq.Seq2Seq,
        block_class=seq2seq.Block, presets=presets.SEQ2SEQ_PRESETS, config_from_hf=hf_seq2seq.config_from_hf,
        config_to_hf=hf_seq2seq.config_to_hf, name_to_hf=hf_seq2seq.name_to_hf, name_from_hf=hf_seq2seq.name_from_hf,
        finish_load=lambda m: m.tie_weights(), generates=True, engine_adapter=seq2seq.Seq2SeqRunner, seq2seq=True))
