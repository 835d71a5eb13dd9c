"""slm recipe NAME: run a seed system's whole pipeline at CPU scale; `slm recipe list` names them all.

The recipes come from the one registry, slm.recipes.RECIPES: a new recipe is an entry there, not here.
"""
from __future__ import annotations

import argparse
import importlib

from slm.cli import HelpFormatter


def register(p: argparse.ArgumentParser) -> None:
    from slm.recipes import RECIPES, RESERVED_NAMES

    sub = p.add_subparsers(dest="recipe", metavar="RECIPE")
    listing = sub.add_parser("list", help="every recipe with a one-line description and the page to read",
                             description="List every recipe: what it reproduces and the page to read.",
                             formatter_class=HelpFormatter)
    listing.set_defaults(func=_list)
    for recipe in RECIPES:
        assert recipe.name not in RESERVED_NAMES, f"a recipe may not be called {recipe.name!r}"
        q = sub.add_parser(recipe.name, help=recipe.description, description=_description(recipe),
                           epilog=_epilog(recipe), formatter_class=_RecipeHelpFormatter)
        importlib.import_module(recipe.module).register(q)
    p.set_defaults(func=lambda args: p.print_help() or 2)


class _RecipeHelpFormatter(HelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Keeps the description's and epilog's lines (what runs, config, time, smoke, results, read) as written;
    options still show their defaults."""


def _description(recipe) -> str:
    return _lines([("", f"{recipe.description[0].upper()}{recipe.description[1:]}."),
                   ("reproduces:", recipe.paper), ("what runs:", recipe.stages)])


def _epilog(recipe) -> str:
    return _lines([
        ("config:", f"{recipe.default_yaml} (the measured run) unless --config names another"),
        ("time:", recipe.default_time),
        ("smoke:", f"slm recipe {recipe.name} --config {recipe.smoke_yaml} ({recipe.smoke_time}; "
                   "checks the plumbing, its numbers mean nothing)"),
        ("results:", recipe.results),
        ("read:", recipe.docs_page),
    ])


def _lines(fields: list[tuple[str, str]], width: int = 100) -> str:
    """'label:  text' lines, the text wrapped under itself, so that the help reads as a small table."""
    import textwrap

    indent = " " * 12
    return "\n".join(textwrap.fill(text, width, initial_indent=f"{label:<12}" if label else "",
                                   subsequent_indent=indent if label else "",
                                   break_on_hyphens=False) for label, text in fields)


def _list(args) -> int:
    from slm.recipes import RECIPES

    width = max(len(r.name) for r in RECIPES)
    for recipe in RECIPES:
        print(f"{recipe.name:<{width}}  {recipe.description}")
        print(f"{'':<{width}}  {recipe.default_time}; read {recipe.docs_page}")
    print("\n`slm recipe NAME --help` for a recipe's options, what it runs and where its results go.")
    return 0


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


def table_recipe_main(default_recipe: str, config_class: type, run, format_table, extra=None):
    """The function of a recipe verb: build the config (YAML, --set, --out), run, print the table and where the
    results went; extra(summary) may add a line (a composition file, ...)."""
    def main(args) -> int:
        from pathlib import Path

        from slm.config import build

        summary = run(build(config_class, recipe_settings(args, default_recipe)))
        print(format_table(summary))
        tail = f"; {extra(summary)}" if extra else ""
        print(f"results: {Path(summary['config']['out_dir']) / 'results.json'} ({summary['seconds']:.0f}s){tail}")
        return 0
    return main
