"""slm demo: the main job on the embedded corpus (the Python standard library's source)."""
from __future__ import annotations

import argparse


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo", help="where the tokenizer, shards, run and checkpoint go")
    p.add_argument("--tokens", type=int, default=1_500_000, help="pretraining token budget")
    p.add_argument("--preset", default="nano", help="model preset (nano trains in about 10 minutes on 2 cores)")
    p.add_argument("--files", type=int, default=None, help="use only the first N stdlib files (default: all)")
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                   help="auto: bf16 autocast where the CPU (AVX512-BF16, AMX) or GPU has native bf16, else fp32")
    p.add_argument("--prompt", default=None, help="code prompt for the sampled continuation")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (for logs)")
    p.set_defaults(func=run)


def run(args) -> int:
    from slm.train.demo import DemoOptions, run_demo

    opts = DemoOptions(out=args.out, token_budget=args.tokens, preset=args.preset, corpus_files=args.files,
                       precision=args.precision, progress=not args.no_progress)
    if args.prompt:
        opts.prompt = args.prompt
    run_demo(opts)
    return 0
