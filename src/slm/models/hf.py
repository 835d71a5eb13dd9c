"""Hugging Face model directories, both ways: config.json and safetensors <-> a slm model of any family.

load_model / write_model_files / save / load dispatch on config.json's `model_type` through the family registry
(slm.models.registry); this module also holds the decoder family's mapping (Llama, Phi). Only names and config
keys are translated; the tensors are the same numbers in the same layout (HF Llama and Phi use the same
'rotate half' rotary convention as slm), which is why logits match.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from slm.errors import CheckpointError, ConfigError
from slm.io import atomic_directory
from slm.models.decoder import Decoder, ModelConfig
from slm.models.sources import resolve_model_path

SUPPORTED = {"llama": "LlamaForCausalLM", "phi": "PhiForCausalLM"}
DEFAULT_SHARD_BYTES = 2 * 1024**3

# (slm name, HF name) per family; {i} is the layer index.
_NAMES = {
    "llama": [
        ("embed.", "model.embed_tokens."),
        ("layers.{i}.attn_norm.", "model.layers.{i}.input_layernorm."),
        ("layers.{i}.attn.", "model.layers.{i}.self_attn."),
        ("layers.{i}.mlp_norm.", "model.layers.{i}.post_attention_layernorm."),
        ("layers.{i}.mlp.", "model.layers.{i}.mlp."),
        ("norm.", "model.norm."),
        ("lm_head.", "lm_head."),
    ],
    "phi": [
        ("embed.", "model.embed_tokens."),
        ("layers.{i}.attn_norm.", "model.layers.{i}.input_layernorm."),
        ("layers.{i}.attn.o_proj.", "model.layers.{i}.self_attn.dense."),
        ("layers.{i}.attn.", "model.layers.{i}.self_attn."),
        ("layers.{i}.mlp.", "model.layers.{i}.mlp."),
        ("norm.", "model.final_layernorm."),
        ("lm_head.", "lm_head."),
    ],
}


def _rename(name: str, arch: str, to_hf: bool) -> str:
    for ours, theirs in _NAMES[arch]:
        src, dst = (ours, theirs) if to_hf else (theirs, ours)
        pattern = "^" + re.escape(src).replace(r"\{i\}", r"(?P<i>\d+)")
        m = re.match(pattern, name)
        if m:
            return dst.replace("{i}", m.groupdict().get("i") or "") + name[m.end():]
    raise CheckpointError(f"unexpected tensor {name!r} for a {arch} model")


def config_to_hf(cfg: ModelConfig, dtype: torch.dtype = torch.float32) -> dict:
    rope = {"rope_type": "default", "rope_theta": cfg.rope_theta}
    common = dict(
        architectures=[SUPPORTED[cfg.arch]], model_type=cfg.arch, vocab_size=cfg.vocab_size,
        hidden_size=cfg.dim, intermediate_size=cfg.ffn_dim, num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.n_kv_heads,
        max_position_embeddings=cfg.max_seq_len, tie_word_embeddings=cfg.tie_embeddings,
        bos_token_id=cfg.bos_token_id, eos_token_id=cfg.eos_token_id, pad_token_id=cfg.pad_token_id,
        rope_theta=cfg.rope_theta, dtype=str(dtype).removeprefix("torch."),
    )
    if cfg.arch == "llama":
        return dict(common, head_dim=cfg.head_dim, hidden_act="silu", rms_norm_eps=cfg.norm_eps,
                    attention_bias=cfg.bias, mlp_bias=cfg.bias, rope_parameters=rope)
    if cfg.head_dim * cfg.n_heads != cfg.dim:
        raise ConfigError("phi checkpoints need head_dim * n_heads == dim")
    return dict(common, hidden_act="gelu_new", layer_norm_eps=cfg.norm_eps, qk_layernorm=False,
                partial_rotary_factor=cfg.rotary_fraction,
                rope_parameters=dict(rope, partial_rotary_factor=cfg.rotary_fraction))


def config_from_hf(d: dict) -> ModelConfig:
    arch = d.get("model_type")
    if arch not in SUPPORTED:
        raise CheckpointError(f"model_type {arch!r} is not supported; slm loads {sorted(SUPPORTED)} checkpoints")
    rope = d.get("rope_parameters") or d.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        raise CheckpointError(f"rope scaling {rope.get('rope_type') or rope.get('type')!r} is not supported")
    theta = rope.get("rope_theta", d.get("rope_theta", 10000.0))
    act = d.get("hidden_act", "silu" if arch == "llama" else "gelu_new")
    want_act = {"llama": "silu", "phi": "gelu_new"}[arch]
    if act != want_act:
        raise CheckpointError(f"{arch} with hidden_act {act!r} is not supported (expected {want_act!r})")
    fields = dict(
        arch=arch, vocab_size=d["vocab_size"], dim=d["hidden_size"], n_layers=d["num_hidden_layers"],
        n_heads=d["num_attention_heads"], n_kv_heads=d.get("num_key_value_heads") or d["num_attention_heads"],
        ffn_dim=d["intermediate_size"], max_seq_len=d.get("max_position_embeddings", 2048), rope_theta=float(theta),
        tie_embeddings=bool(d.get("tie_word_embeddings", False)),
        bos_token_id=_single_id(d.get("bos_token_id")), eos_token_id=_single_id(d.get("eos_token_id")),
        pad_token_id=_single_id(d.get("pad_token_id")),
    )
    if arch == "llama":
        if bool(d.get("attention_bias", False)) != bool(d.get("mlp_bias", False)):
            raise CheckpointError("llama checkpoints with attention_bias != mlp_bias are not supported")
        return ModelConfig(**fields, head_dim=d.get("head_dim"), norm_eps=d.get("rms_norm_eps", 1e-6),
                           bias=bool(d.get("attention_bias", False)))
    if d.get("qk_layernorm"):
        raise CheckpointError("phi checkpoints with qk_layernorm are not supported")
    fraction = rope.get("partial_rotary_factor", d.get("partial_rotary_factor", 0.5))
    return ModelConfig(**fields, norm_eps=d.get("layer_norm_eps", 1e-5), rotary_fraction=float(fraction), bias=True)


def _single_id(x):
    return x[0] if isinstance(x, list) and x else x


def decoder_name_to_hf(name: str, cfg: ModelConfig) -> str | None:
    if cfg.tie_embeddings and name == "lm_head.weight":
        return None  # stored once, as the embedding
    return _rename(name, cfg.arch, to_hf=True)


def decoder_name_from_hf(hf_name: str, cfg: ModelConfig) -> str | None:
    if hf_name.endswith("rotary_emb.inv_freq"):
        return None  # old HF checkpoints saved this buffer; slm recomputes it
    return _rename(hf_name, cfg.arch, to_hf=False)


def finish_decoder(model: Decoder) -> None:
    if model.config.tie_embeddings:
        model.lm_head.weight = model.embed.weight
    model.reset_rope()


def _family(obj):
    from slm.models.registry import family_of

    family = family_of(obj)
    if family is None:
        raise CheckpointError(f"{type(obj).__name__} is not a model of a registered slm family")
    return family


def state_dict_to_hf(model) -> dict[str, torch.Tensor]:
    cfg = model.config
    family = _family(model)
    out = {}
    for name, t in model.state_dict().items():
        hf_name = family.name_to_hf(name, cfg)
        if hf_name is not None:
            out[hf_name] = t.detach().contiguous()
    return out


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    index = path / "model.safetensors.index.json"
    try:
        if index.is_file():
            weight_map = json.loads(index.read_text())["weight_map"]
            tensors = {}
            for shard in sorted(set(weight_map.values())):
                if not (path / shard).is_file():
                    raise CheckpointError(f"{path}: shard {shard} named in the index is missing")
                tensors.update(load_file(path / shard))
            return tensors
        single = path / "model.safetensors"
        if single.is_file():
            return load_file(single)
    except (SafetensorError, OSError, ValueError, KeyError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: cannot read the weights ({e}); the checkpoint is truncated or corrupt") from None
    if list(path.glob("*.bin")) or list(path.glob("*.pt")):
        raise CheckpointError(f"{path} has only pickled weights (*.bin/*.pt); slm reads safetensors only, because "
                              "unpickling runs arbitrary code. Re-save with transformers' save_pretrained().")
    raise CheckpointError(f"{path}: no model.safetensors or model.safetensors.index.json")


def read_config(path: Path, tensor_names: set[str] | None = None):
    """The slm config of a model directory, of whichever family its model_type names."""
    from slm.models.registry import family_for_model_type

    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise CheckpointError(f"{path}: not a model directory (no config.json)")
    try:
        d = json.loads(cfg_file.read_text())
        if not isinstance(d, dict):
            raise CheckpointError(f"{cfg_file}: not a JSON object")
        return family_for_model_type(d.get("model_type")).config_from_hf(d, tensor_names)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{cfg_file}: not valid JSON ({e})") from None
    except KeyError as e:
        raise CheckpointError(f"{cfg_file}: missing key {e}") from None
    except ConfigError as e:
        raise CheckpointError(f"{cfg_file}: {e}") from None


def load_model(path: str | Path, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
    path = resolve_model_path(path)
    if not path.is_dir():
        raise CheckpointError(f"model directory not found: {path}")
    read_config(path)  # an unsupported or broken config.json is the first thing to report
    tensors = read_safetensors(path)
    cfg = read_config(path, set(tensors))  # (a bare encoder's pooler is there or not)
    family = _family(cfg)
    tensors = family.prepare_tensors(tensors, cfg)
    with torch.device("meta"):
        model = family.module_class(cfg)
    expected = model.state_dict()
    state = {}
    for hf_name, t in tensors.items():
        name = family.name_from_hf(hf_name, cfg)
        if name is None:
            continue
        if name not in expected:
            raise CheckpointError(f"{path}: unexpected tensor {hf_name}")
        if tuple(t.shape) != tuple(expected[name].shape):
            raise CheckpointError(f"{path}: tensor {hf_name} has shape {tuple(t.shape)}, "
                                  f"config.json implies {tuple(expected[name].shape)}")
        state[name] = t.to(device=device, dtype=dtype)
    stored = {n: family.name_to_hf(n, cfg) for n in expected}
    missing = sorted(n for n, hf_name in stored.items() if hf_name is not None and n not in state)
    if missing:
        hf_missing = [stored[n] for n in missing[:5]]
        raise CheckpointError(f"{path}: checkpoint lacks {len(missing)} tensor(s), e.g. {hf_missing}")
    model.load_state_dict(state, strict=False, assign=True)
    family.finish_load(model)
    return model.eval()


def write_model_files(model, path: Path, dtype: torch.dtype | None = None,
                      max_shard_bytes: int = DEFAULT_SHARD_BYTES) -> None:
    """Write config.json, the safetensors weights and (models that generate) generation_config.json into an
    existing directory."""
    cfg = model.config
    family = _family(model)
    tensors = {k: (v.to(dtype) if dtype is not None else v).cpu() for k, v in state_dict_to_hf(model).items()}
    out_dtype = next(iter(tensors.values())).dtype
    (path / "config.json").write_text(json.dumps(family.config_to_hf(cfg, out_dtype), indent=2) + "\n")
    if family.generates:
        gen = {k: getattr(cfg, k) for k in ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")
               if getattr(cfg, k, None) is not None}
        (path / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
    shards, current, size = [], {}, 0
    for name, t in tensors.items():
        nbytes = t.numel() * t.element_size()
        if current and size + nbytes > max_shard_bytes:
            shards.append(current)
            current, size = {}, 0
        current[name] = t
        size += nbytes
    shards.append(current)
    if len(shards) == 1:
        save_file(shards[0], path / "model.safetensors", metadata={"format": "pt"})
        return
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        fname = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, path / fname, metadata={"format": "pt"})
        weight_map.update({name: fname for name in shard})
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (path / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


def unwrap(model):
    """The slm model inside torch.compile / DDP wrappers."""
    model = getattr(model, "_orig_mod", model)
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def save(model, tokenizer, path: str | Path, dtype: torch.dtype | None = None,
         max_shard_bytes: int = DEFAULT_SHARD_BYTES) -> Path:
    """Write an HF model directory atomically: the old one (if any) stays until the new one is complete."""
    from slm.tokenizer import check_compatible

    model = unwrap(model)
    if tokenizer is not None:
        check_compatible(model.config, tokenizer)
        for attr in ("bos_token_id", "eos_token_id", "pad_token_id"):
            if getattr(model.config, attr) is None and getattr(tokenizer, attr, None) is not None:
                setattr(model.config, attr, getattr(tokenizer, attr))
    path = Path(path)
    with atomic_directory(path) as tmp:
        write_model_files(model, tmp, dtype, max_shard_bytes)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
    return path


def load(path: str | Path, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
    """(model, tokenizer) from a local HF directory, a GGUF file or a real model's name (see slm.models.sources);
    tokenizer is None when the directory has none."""
    from slm.tokenizer import check_compatible, load_tokenizer

    path = resolve_model_path(path)
    model = load_model(path, dtype, device)
    tokenizer = load_tokenizer(path, required=False)
    if tokenizer is not None:
        check_compatible(model.config, tokenizer, where=str(path))
    return model, tokenizer
