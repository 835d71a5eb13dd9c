"""slm lm-eval ARGS...: EleutherAI's lm_eval CLI with `--model slm` registered (every argument passes through)."""
from __future__ import annotations

import argparse


def register(p: argparse.ArgumentParser) -> None:
    # Every token, options included, belongs to lm_eval (`slm lm-eval --help` shows lm_eval's help): with no
    # prefix character left, argparse sees only positionals and REMAINDER takes them all.
    p.prefix_chars = "\0"
    p.add_argument("args", nargs=argparse.REMAINDER,
                   help="lm_eval's own arguments, e.g. --model slm --model_args pretrained=DIR --tasks hellaswag "
                        "(`slm lm-eval run --help` lists them); or --install-plugin / --uninstall-plugin to "
                        "make the plain `lm_eval --model slm` command work in this environment")
    p.set_defaults(func=run)


def run(args) -> int:
    import sys

    from slm.errors import SlmError

    try:
        from lm_eval.__main__ import cli_evaluate  # noqa: F401  (fails early when lm-eval is missing)
    except ImportError:
        raise SlmError("lm-eval is not installed: pip install 'slm[eval]'") from None
    import slm.eval.lm_eval_adapter  # noqa: F401  registers --model slm

    argv = list(args.args)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if argv[:1] in (["--install-plugin"], ["--uninstall-plugin"]):
        return _plugin(argv[0])
    sys.argv = ["lm_eval", *argv]
    try:
        cli_evaluate()
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0


def _plugin(action: str) -> int:
    from slm.eval import lm_eval_plugin

    if action == "--install-plugin":
        path = lm_eval_plugin.install()
        print(f"installed {path}: `lm_eval --model slm ...` now works in this environment")
    else:
        path = lm_eval_plugin.uninstall()
        print(f"removed {path}" if path else "no slm plugin was installed")
    return 0
