"""slm lm-eval ARGS...: EleutherAI's lm_eval CLI with `--model slm` registered (every argument passes through)."""
from __future__ import annotations

import argparse


def register(p: argparse.ArgumentParser) -> None:
    # Every token, options included, belongs to lm_eval (`slm lm-eval --help` shows lm_eval's help): with no
    # prefix character left, argparse sees only positionals and REMAINDER takes them all.
    p.prefix_chars = "\0"
    p.add_argument("args", nargs=argparse.REMAINDER,
                   help="lm_eval's own arguments, e.g. --model slm --model_args pretrained=DIR --tasks hellaswag "
                        "(`slm lm-eval run --help` lists them)")
    p.set_defaults(func=run)


def run(args) -> int:
    import sys

    from slm.errors import SlmError

    try:
        from lm_eval.__main__ import cli_evaluate
    except ImportError:
        raise SlmError("lm-eval is not installed: pip install 'slm[eval]'") from None
    import slm.eval.lm_eval_adapter  # noqa: F401  registers --model slm

    argv = list(args.args)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    sys.argv = ["lm_eval", *argv]
    try:
        cli_evaluate()
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0
