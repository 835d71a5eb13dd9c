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


def add_recipe_options(parser: argparse.ArgumentParser, default_recipe: str, example_override: str) -> None:
    """The options every recipe verb shares: --config, --set (repeatable) and --out."""
    parser.add_argument("--config", default=None,
                        help=f"YAML recipe (default: {default_recipe} when it exists, else built-in defaults)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override a recipe value, e.g. --set {example_override} (repeatable)")
    parser.add_argument("--out", default=None, help="output directory (overrides out_dir)")


def recipe_settings(args, default_recipe: str) -> dict:
    """The recipe's settings as a dict: the YAML file (the default one when it exists), then --set, then --out."""
    from pathlib import Path

    from slm.config import apply_overrides, load_recipe

    path = args.config or (default_recipe if Path(default_recipe).is_file() else None)
    data = load_recipe(path, args.overrides) if path else apply_overrides({}, args.overrides)
    if args.out:
        data["out_dir"] = args.out
    return data
