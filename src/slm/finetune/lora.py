"""LoRA on slm's decoders through the `peft` library, and merge-and-save to a plain HF directory.

slm's module names are HF's (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, fc1, fc2), so
peft's `target_modules` mean the same thing here as on a transformers model. A merged model is an ordinary
`Decoder`, saved with `slm.save`; the adapter alone is also written with HF tensor names, so peft can apply
it to the transformers model of the same base checkpoint (`PeftModel.from_pretrained(hf_model, dir)`).
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

from slm.errors import SlmError

# Every linear layer of a block (the projections LoRA papers adapt); embeddings and the LM head stay frozen.
DEFAULT_TARGETS = {
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "phi": ["q_proj", "k_proj", "v_proj", "o_proj", "fc1", "fc2"],
}
ADAPTER_DIR = "adapter"
# Where HF calls a module differently (phi's attention output is `dense`).
HF_MODULE_NAMES = {"phi": {"o_proj": "dense"}}


@dataclass
class LoraSettings:
    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: list[str] | None = None  # None: every linear layer of the blocks (DEFAULT_TARGETS)


def apply_lora(model, settings: LoraSettings | None = None, seed: int = 0):
    """Wrap a Decoder in a peft LoRA model: base weights frozen, only the low-rank adapters train.

    peft draws the A matrices from torch's global generator; a seeded fork makes them a function of `seed`.
    """
    import torch
    from peft import LoraConfig, get_peft_model

    settings = settings or LoraSettings()
    if settings.r <= 0:
        raise SlmError(f"LoRA rank must be positive, got {settings.r}")
    targets = list(settings.target_modules or DEFAULT_TARGETS[model.config.arch])
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    unknown = [t for t in targets if t not in names]
    if unknown:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if type(m).__name__ == "Linear"})
        raise SlmError(f"LoRA target module(s) {unknown} not found in this {model.config.arch} model; "
                       f"its linear layers are {linear}")
    config = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=targets, bias="none")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return get_peft_model(model, config)


def is_lora(model) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "merge_and_unload")


def merged_copy(peft_model):
    """A plain Decoder with the adapters folded into the weights; the training model is left as it is."""
    return copy.deepcopy(peft_model).merge_and_unload()


def trainable_parameters(model) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def save_adapter(peft_model, path: str | Path) -> Path:
    """Write adapter_config.json + adapter_model.safetensors with HF tensor and module names."""
    from safetensors.torch import save_file

    from slm.io import atomic_directory
    from slm.models.hf import _rename

    base = peft_model.get_base_model()
    arch = base.config.arch
    cfg = peft_model.peft_config["default"]
    prefix = "base_model.model."
    tensors = {}
    for name, t in peft_model.state_dict().items():
        if ".lora_" not in name:
            continue
        inner = name.removeprefix(prefix).replace(".default", "")
        tensors[prefix + _rename(inner, arch, to_hf=True)] = t.detach().cpu().contiguous()
    hf_targets = sorted(HF_MODULE_NAMES.get(arch, {}).get(t, t) for t in cfg.target_modules)
    adapter_config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": cfg.r, "lora_alpha": cfg.lora_alpha,
        "lora_dropout": cfg.lora_dropout, "target_modules": hf_targets, "bias": "none",
        "fan_in_fan_out": False, "inference_mode": True, "base_model_name_or_path": None,
    }
    path = Path(path)
    with atomic_directory(path) as tmp:
        save_file(tensors, tmp / "adapter_model.safetensors", metadata={"format": "pt"})
        (tmp / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2) + "\n")
    return path


def save_merged(peft_model, tokenizer, path: str | Path, adapter: bool = True, dtype=None) -> Path:
    """Merge the adapters into a copy of the model and write a plain HF directory (plus the adapter alone,
    under path/adapter, when `adapter`)."""
    from slm.io import atomic_directory
    from slm.models.hf import write_model_files

    merged = merged_copy(peft_model)
    if tokenizer is not None:
        from slm.tokenizer import check_compatible

        check_compatible(merged.config, tokenizer)
    path = Path(path)
    with atomic_directory(path) as tmp:
        write_model_files(merged, tmp, dtype)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
        if adapter:
            save_adapter(peft_model, tmp / ADAPTER_DIR)
    return path
