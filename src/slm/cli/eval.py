"""slm eval MODEL_DIR --tasks tasks.yaml: run YAML-defined tasks on a checkpoint; print a markdown table."""
from __future__ import annotations

import argparse

from slm.cli import MODEL_SOURCE


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help=f"{MODEL_SOURCE}, or a composition YAML (slm.compose)")
    p.add_argument("--tasks", required=True, help="task YAML file (see docs/evaluation.md)")
    p.add_argument("--task", action="append", default=None, metavar="NAME",
                   help="run only this task of the file (repeatable)")
    p.add_argument("--limit", type=int, default=None, help="at most N documents per task")
    p.add_argument("--batch-size", type=int, default=8, help="sequences per forward pass (results do not depend on it)")
    p.add_argument("--num-fewshot", type=int, default=None, help="override every task's num_fewshot")
    p.add_argument("--seed", type=int, default=0, help="seed for few-shot example selection and sampling")
    p.add_argument("--output", default=None, help="write the results as JSON here")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="weights' dtype (log-probabilities are always taken in float32)")
    p.set_defaults(func=run)


def run(args) -> int:
    import json
    import sys

    import torch

    from slm.errors import SlmError
    from slm.eval.harness import evaluate, load_model, markdown_table
    from slm.eval.tasks import load_tasks
    from slm.io import atomic_write_text

    if args.limit is not None and args.limit < 1:
        raise SlmError("--limit must be at least 1")
    if args.batch_size < 1:
        raise SlmError("--batch-size must be at least 1")
    tasks = load_tasks(args.tasks, names=args.task, limit=args.limit)
    model, tokenizer = load_model(args.model, dtype=getattr(torch, args.dtype), device=args.device)
    if tokenizer is None:
        raise SlmError(f"{args.model} has no tokenizer; evaluation needs one")
    results = evaluate(model, tokenizer, tasks, batch_size=args.batch_size, seed=args.seed,
                       num_fewshot=args.num_fewshot, show_progress=sys.stderr.isatty(),
                       log=lambda line: print(line, file=sys.stderr))
    print(markdown_table(results))
    if args.output:
        report = {"model": str(args.model), "tasks_file": str(args.tasks), "limit": args.limit,
                  "num_fewshot": args.num_fewshot, "seed": args.seed, "batch_size": args.batch_size,
                  "results": results}
        atomic_write_text(args.output, json.dumps(report, indent=2, allow_nan=True) + "\n")
    return 0
