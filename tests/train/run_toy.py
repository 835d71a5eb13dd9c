"""A tiny training run for the subprocess tests (torchrun, SIGKILL). Not a test module itself.

python tests/train/run_toy.py OUT [--strategy ddp|fsdp] [--steps N] [--rows R] [--save-every K]
                                  [--kill-at-step S] [--resume auto] [--precision fp32|bf16]
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from train_toy import ToyBatches, tiny_model  # noqa: E402

from slm.train import TrainConfig, Trainer, causal_lm_loss  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--strategy", default="auto")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--rows", type=int, default=4)
    p.add_argument("--accum", type=int, default=1)
    p.add_argument("--save-every", type=int, default=0)
    p.add_argument("--kill-at-step", type=int, default=0)
    p.add_argument("--resume", default=None)
    p.add_argument("--precision", default="fp32")
    args = p.parse_args()
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    data = ToyBatches(rows=args.rows, rank=rank, world=world)
    val = ToyBatches(rows=args.rows, seed=99, rank=rank, world=world, limit=2)
    config = TrainConfig(max_steps=args.steps, lr=3e-3, min_lr=3e-4, warmup_steps=3, log_every=1,
                         eval_every=4, eval_batches=2, save_every=args.save_every, keep_last=2,
                         grad_accum=args.accum, strategy=args.strategy, precision=args.precision, progress=False)
    calls = 0

    def loss_fn(model, batch):
        # The kill comes from inside a training step (after checkpoints were written), like a crash would.
        nonlocal calls
        calls += 1
        if args.kill_at_step and trainer.step == args.kill_at_step and model.training:
            os.kill(os.getpid(), signal.SIGKILL)
        return causal_lm_loss(model, batch)

    trainer = Trainer(tiny_model(), config, data, val, out_dir=args.out, loss_fn=loss_fn)
    trainer.fit(resume=args.resume)


if __name__ == "__main__":
    main()
