"""slm pretrain: train a model from scratch (or continue one) on prepared token shards, from a YAML recipe."""
from __future__ import annotations

import argparse


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", nargs="?", help="YAML recipe with sections model, tokenizer, data, train, out "
                                             "(e.g. recipes/pretrain-nano.yaml)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="dotted overrides, e.g. train.max_steps=200 data.dir=runs/data model.preset=micro")
    p.add_argument("--out", help="run directory (overrides the recipe's `out`)")
    p.add_argument("--resume", help="'auto': continue from the newest good checkpoint in the run directory "
                                    "(fresh start if none); or a checkpoint directory")
    p.add_argument("--devices", type=int, default=1,
                   help="processes to train with; N > 1 re-launches under torchrun (DDP, or FSDP2 with "
                        "train.strategy=fsdp): one per GPU, or N CPU processes with gloo")
    p.set_defaults(func=run)


def run(args) -> int:
    import os
    import subprocess
    import sys

    if args.devices > 1 and "WORLD_SIZE" not in os.environ:
        from slm.train.distributed import torchrun_command

        argv = ["slm", "pretrain"] + ([args.recipe] if args.recipe else [])
        argv += (["--set", *args.set] if args.set else []) + (["--out", args.out] if args.out else [])
        argv += ["--resume", args.resume] if args.resume else []
        return subprocess.call(torchrun_command(args.devices, argv))

    from slm.train import distributed as D
    from slm.train.pretrain import load_config, run as pretrain

    overrides = list(args.set) + ([f"out={args.out}"] if args.out else [])
    cfg = load_config(args.recipe, overrides)
    try:
        result = pretrain(cfg, resume=args.resume)
    finally:
        D.teardown()
    if "plot" in result:
        print(f"done: step {result['step']}, {result['tokens']:,} tokens; "
              + (f"val loss {result['val_loss']:.4f} (perplexity {result['val_ppl']:.2f}); " if "val_loss" in result else "")
              + f"checkpoint {result['checkpoint']}; loss curve {result['plot']}")
    return 0
