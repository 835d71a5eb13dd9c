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
    parser.add_argument("--config", default=None,
                        help=f"YAML recipe (default: {DEFAULT_RECIPE} when it exists, else built-in defaults)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe value, e.g. --set seeds=[0] --set eval.n_samples=32 (repeatable)")
    parser.add_argument("--out", default=None, help="output directory (overrides out_dir)")
    parser.add_argument("--train-file", default=None,
                        help="train on this TinyGSM JSONL (question, code) instead of generated problems")
    parser.add_argument("--test-file", default=None,
                        help="evaluate on this GSM8K (question, answer '#### N') or TinyGSM JSONL file")
    parser.set_defaults(func=_main)


def _main(args) -> int:
    from pathlib import Path

    from slm.config import apply_overrides, build, load_recipe
    from slm.recipes.tinygsm.pipeline import TinyGSMConfig, format_table, run

    path = args.config or (DEFAULT_RECIPE if Path(DEFAULT_RECIPE).is_file() else None)
    data = load_recipe(path, args.overrides) if path else apply_overrides({}, args.overrides)
    if args.out:
        data["out_dir"] = args.out
    for key, value in (("train_file", args.train_file), ("test_file", args.test_file)):
        if value:
            data.setdefault("data", {})[key] = value
    summary = run(build(TinyGSMConfig, data))
    print(format_table(summary))
    print(f"results: {Path(summary['config']['out_dir']) / 'results.json'} ({summary['seconds']:.0f}s)")
    return 0
