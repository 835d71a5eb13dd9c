"""slm plot: a PNG of a run's training and validation loss (from RUN_DIR/metrics.jsonl)."""
from __future__ import annotations

import argparse


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a training run directory (it holds metrics.jsonl)")
    p.add_argument("--out", help="PNG path (default RUN_DIR/loss.png)")
    p.set_defaults(func=run)


def run(args) -> int:
    from slm.train.metrics import plot_run

    print(plot_run(args.run_dir, args.out))
    return 0
