"""Composition files: a small YAML naming the models of an EFT composition, loadable wherever a model dir is.

    # upscaled.yaml (paths relative to this file)
    kind: eft
    base: large-base            # the model whose pretraining scale is emulated
    reference: small-base       # the base the experts were fine-tuned from
    experts:
      - model: small-chat       # fine-tuned model(s) whose behaviour is emulated, with weights
        weight: 1.0

`load_composition(path) -> (EFTModel, tokenizer)`. `slm generate`, `slm serve` and `slm eval` accept such a
file in place of a model directory (see `is_composition`). The tokenizer is the first expert's (the chat
template a fine-tuned model was taught); all tokenizers must agree on the shared vocabulary.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from slm.config import build
from slm.errors import ConfigError, SlmError


@dataclass
class ExpertSpec:
    model: str
    weight: float = 1.0


@dataclass
class CompositionSpec:
    kind: str = "eft"
    base: str = ""
    reference: str = ""
    experts: list[ExpertSpec] = field(default_factory=list)

    def __post_init__(self):
        if self.kind != "eft":
            raise ConfigError(f"composition kind {self.kind!r} is not supported; the only kind is 'eft'")
        if not self.base or not self.reference or not self.experts:
            raise ConfigError("an EFT composition names base, reference and at least one expert "
                              "(experts: [{model: DIR, weight: 1.0}])")


def is_composition(path: str | Path) -> bool:
    """True for a composition file (.yaml / .yml), which loaders treat as a model."""
    return Path(path).suffix in (".yaml", ".yml") and Path(path).is_file()


def read_composition(path: str | Path) -> CompositionSpec:
    from slm.config import read_yaml

    path = Path(path)
    data = read_yaml(path, "composition file")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a composition is a mapping with kind, base, reference and experts")
    return build(CompositionSpec, data, where=path.name)


def load_composition(path: str | Path, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
    """(EFTModel, tokenizer) from a composition file; each distinct directory is loaded once."""
    import slm
    from slm.compose.eft import EFTModel, shared_vocabulary

    path = Path(path)
    spec = read_composition(path)
    loaded: dict[Path, tuple] = {}

    def load(entry: str, role: str):
        where = (path.parent / entry).resolve()
        if not where.is_dir():
            raise SlmError(f"{path}: the {role} {entry!r} is not a model directory (looked in {where})")
        if where not in loaded:
            loaded[where] = slm.load(where, dtype=dtype, device=device)
        return loaded[where]

    base, base_tok = load(spec.base, "base")
    reference, ref_tok = load(spec.reference, "reference")
    experts = [load(e.model, f"expert {i}") for i, e in enumerate(spec.experts)]
    tokenizers = {"base": base_tok, "reference": ref_tok, **{f"expert {i}": t for i, (_, t) in enumerate(experts)}}
    shared = shared_vocabulary(tokenizers)
    rows = min(m.config.vocab_size for m in [base, reference] + [m for m, _ in experts])
    model = EFTModel(base, [(m, e.weight) for (m, _), e in zip(experts, spec.experts)], reference,
                     vocab_size=min(shared, rows) if shared else rows)
    tokenizer = next((t for t in [experts[0][1], base_tok, ref_tok] if t is not None), None)
    return model.eval(), tokenizer
