"""`slm <verb>`: parse the command line, then call one function. No logic lives here.

Each verb is a module of slm.cli with `register(parser)`; heavy imports happen inside the verb's
function so that `slm --help` answers at once.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# What a model argument accepts, wherever one is taken (resolved by slm.models.sources).
MODEL_SOURCE = "an HF model directory, a llama-architecture .gguf file, or smollm2-135m-instruct (the real model)"

# (verb, module, one-line help). A new verb is one line here plus its module.
VERBS = [
    ("demo", "slm.cli.demo", "run the main job on the embedded corpus (what `make demo` runs)"),
    ("tokenizer", "slm.cli.tokenizer", "train, inspect and try tokenizers"),
    ("data", "slm.cli.data", "prepare token shards from text sources; describe prepared data"),
    ("model", "slm.cli.model", "describe a preset or checkpoint; create a freshly initialised model"),
    ("recipe", "slm.cli.recipe", "run a seed system's pipeline end to end (tinygsm, eft, ...)"),
    ("pretrain", "slm.cli.pretrain", "pretrain a model on prepared token shards from a YAML recipe (torchrun with --devices)"),
    ("plot", "slm.cli.plot", "write a PNG of a run's training and validation loss"),
    ("convert", "slm.cli.convert", "import a GGUF file into an HF directory, or re-write a checkpoint (dtype, shards, tokenizer)"),
    ("eval", "slm.cli.eval", "evaluate a checkpoint on YAML-defined tasks (perplexity, choice, generation, code)"),
    ("lm-eval", "slm.cli.lm_eval", "run EleutherAI's lm_eval CLI with `--model slm` registered"),
    ("finetune", "slm.cli.finetune", "supervised fine-tuning (full or LoRA) on JSONL conversations"),
    ("generate", "slm.cli.generate", "complete prompts with a model (batched, streamed, int8, speculative)"),
    ("chat", "slm.cli.chat", "chat with a model in the terminal, streaming its replies"),
    ("serve", "slm.cli.serve", "serve a model over an OpenAI-compatible HTTP API (localhost by default)"),
    ("export", "slm.cli.export", "export a checkpoint for other runtimes (GGUF for llama.cpp)"),
    ("teach", "slm.cli.teach", "synthetic data from a teacher model over an OpenAI-compatible API (local by default)"),
]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends an option's default to its help, unless there is none to show or the help already says it."""

    def _get_help_string(self, action):
        if action.default is None or "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="slm", description="slm: small language models — pretrain, adapt, evaluate, serve and export.",
        epilog="Run `slm VERB --help` for the options of a verb.")
    parser.add_argument("--version", action="version", version=f"slm {_version()}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for name, module, help_text in VERBS:
        p = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".",
                           formatter_class=HelpFormatter)
        importlib.import_module(module).register(p)
    return parser


def _version() -> str:
    from slm import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    from slm.errors import SlmError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        (parser if args.verb is None else parser._subparsers._group_actions[0].choices[args.verb]).print_help()
        return 2
    try:
        return args.func(args) or 0
    except SlmError as e:
        print(f"slm {args.verb}: error: {e}", file=sys.stderr)
        return 2
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as e:
        print(f"slm {args.verb}: error: {e.strerror or e}: {e.filename}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"slm {args.verb}: interrupted", file=sys.stderr)
        return 130


def add_subverbs(parser: argparse.ArgumentParser, verbs: dict) -> None:
    """For verbs with sub-verbs (`slm tokenizer train`): verbs maps name -> (help, register function)."""
    sub = parser.add_subparsers(dest="subverb", metavar="SUBVERB")
    for name, (help_text, register) in verbs.items():
        register(sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".",
                                formatter_class=HelpFormatter))
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


if __name__ == "__main__":
    sys.exit(main())
