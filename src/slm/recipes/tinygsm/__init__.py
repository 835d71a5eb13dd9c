"""TinyGSM (Liu et al. 2023) at CPU scale: math word problems solved by small models writing Python.

    slm recipe tinygsm                         # recipes/tinygsm.yaml: 3 seeds, prints the accuracy table
    slm recipe tinygsm --config recipes/tinygsm-smoke.yaml --set eval.n_samples=8

Parts (each usable alone):
  problems   a generator of grade-school problems with their programs; template-held-out splits
  formats    the TinyGSM program format, TinyGSM / GSM8K JSONL readers, sandboxed execution of programs
  filters    the paper's filters and 13-gram decontamination
  verifier   decoder + scalar head, token-level labels, last-token scoring
  selection  greedy / majority@N / verifier@N / pass@N
  pipeline   the whole run (run, format_table)
"""
from __future__ import annotations

import argparse

DEFAULT_RECIPE = "recipes/tinygsm.yaml"


def register(parser: argparse.ArgumentParser) -> None:
    from slm.cli.recipe import add_recipe_options

    add_recipe_options(parser, DEFAULT_RECIPE, "seeds=[0] --set eval.n_samples=32")
    parser.add_argument("--train-file", default=None,
                        help="train on this TinyGSM JSONL (question, code) instead of generated problems")
    parser.add_argument("--test-file", default=None,
                        help="evaluate on this GSM8K (question, answer '#### N') or TinyGSM JSONL file")
    parser.set_defaults(func=_main)


def _main(args) -> int:
    from pathlib import Path

    from slm.cli.recipe import recipe_settings
    from slm.config import build
    from slm.recipes.tinygsm.pipeline import TinyGSMConfig, format_table, run

    data = recipe_settings(args, DEFAULT_RECIPE)
    for key, value in (("train_file", args.train_file), ("test_file", args.test_file)):
        if value:
            data.setdefault("data", {})[key] = value
    summary = run(build(TinyGSMConfig, data))
    print(format_table(summary))
    print(f"results: {Path(summary['config']['out_dir']) / 'results.json'} ({summary['seconds']:.0f}s)")
    return 0
