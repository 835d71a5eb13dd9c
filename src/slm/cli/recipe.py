"""slm recipe NAME: run a seed system's whole pipeline at CPU scale."""
from __future__ import annotations

import argparse
import importlib

from slm.cli import add_subverbs

# (name, module with register(parser), one-line help). A new recipe is one line here.
RECIPES: list[tuple[str, str, str]] = [
    ("tinygsm", "slm.recipes.tinygsm", "TinyGSM: generator + verifier writing Python for grade-school math"),
    ("eft", "slm.recipes.eft", "EFT: up-scale a small fine-tuned model with a large base by log-prob arithmetic"),
]


def register(p: argparse.ArgumentParser) -> None:
    add_subverbs(p, {name: (help_text, importlib.import_module(module).register) for name, module, help_text in RECIPES})
