"""Evaluation speed: slm's lm-eval adapter vs lm-eval's own `hf` backend, and the sandbox vs a bare subprocess.

    .venv/bin/python benchmarks/eval_harness.py [--requests 400] [--docs 40] [--programs 200] [--batch-size 8]

1. Log-likelihood requests (multiple-choice style) and rolling log-likelihoods, the same Instances through
   `SlmLM` and `HFLM` on one checkpoint (a random nano-shaped Llama saved with slm.save): requests/s, ratio, and
   the largest difference between the two backends' numbers.
2. Short programs: `run_many` (fresh directory, limits, audit hook, network namespace) vs the least a harness
   can do, `subprocess.run([python, "-I", "-S", "-c", code], timeout=...)`, with the same number of workers.
"""
from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def build_checkpoint(root: Path) -> Path:
    import slm
    from slm.data.sources import iter_stdlib_texts

    tokenizer = slm.train_tokenizer(iter_stdlib_texts(60), vocab_size=4096)
    cfg = slm.preset("nano", vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                     eos_token_id=tokenizer.eos_token_id)
    model = slm.Decoder(cfg).init_weights(seed=0)
    path = root / "nano"
    slm.save(model, tokenizer, path)
    return path


def instances(kind: str, n: int, seed: int = 0):
    from lm_eval.api.instance import Instance

    from slm.data.sources import iter_stdlib_texts

    words = " ".join(iter_stdlib_texts(20)).split()
    rng = random.Random(seed)
    out = []
    for i in range(n):
        start = rng.randrange(len(words) - 400)
        if kind == "loglikelihood":
            ctx = " ".join(words[start:start + rng.randint(20, 120)])
            args = (ctx, " " + " ".join(words[start + 200:start + 200 + rng.randint(1, 8)]))
        else:
            args = (" ".join(words[start:start + rng.randint(100, 400)]),)
        out.append(Instance(request_type=kind, doc={}, arguments=args, idx=i))
    return out


def time_backend(lm, kind: str, reqs) -> tuple[float, list]:
    start = time.perf_counter()
    results = getattr(lm, kind)(reqs, disable_tqdm=True)
    return time.perf_counter() - start, results


def scoring(args) -> None:
    from lm_eval.models.huggingface import HFLM

    from slm.eval.lm_eval_adapter import SlmLM

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = build_checkpoint(Path(tmp))
        ours = SlmLM(pretrained=str(ckpt), batch_size=args.batch_size)
        theirs = HFLM(pretrained=str(ckpt), device="cpu", dtype="float32", batch_size=args.batch_size)
        print(f"checkpoint: nano shape, vocab {ours.tokenizer.vocab_size}, max_length {ours.max_length}; "
              f"batch size {args.batch_size}")
        print("| requests | slm (req/s) | lm-eval hf (req/s) | ratio slm/hf | max abs difference |")
        print("|---|---|---|---|---|")
        for kind, n in (("loglikelihood", args.requests), ("loglikelihood_rolling", args.docs)):
            reqs = instances(kind, n)
            time_backend(ours, kind, reqs[:4]), time_backend(theirs, kind, reqs[:4])  # warm-up
            t_hf, r_hf = time_backend(theirs, kind, reqs)
            t_slm, r_slm = time_backend(ours, kind, reqs)
            value = (lambda r: r[0]) if kind == "loglikelihood" else (lambda r: r)
            diff = max(abs(value(a) - value(b)) for a, b in zip(r_slm, r_hf))
            print(f"| {n} {kind} | {n / t_slm:.1f} | {n / t_hf:.1f} | {t_hf / t_slm:.2f} | {diff:.2e} |")


def sandbox(args) -> None:
    from slm.eval.sandbox import network_isolated, run_many

    programs = [f"def solution():\n    return sum(range({i}))\nprint(solution())\n" for i in range(args.programs)]
    run_many(programs[:4], workers=args.workers)  # warm-up

    def bare(code: str):
        return subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, timeout=10)

    start = time.perf_counter()
    with ThreadPoolExecutor(args.workers) as pool:
        bare_out = list(pool.map(bare, programs))
    t_bare = time.perf_counter() - start
    start = time.perf_counter()
    ours = run_many(programs, workers=args.workers, timeout=10)
    t_ours = time.perf_counter() - start
    assert all(r.status == "ok" for r in ours) and all(p.returncode == 0 for p in bare_out)
    assert [r.stdout for r in ours] == [p.stdout.decode() for p in bare_out]
    print(f"\nsandbox: {args.programs} short programs, {args.workers} workers, "
          f"network namespace: {network_isolated()}")
    print("| | slm run_many | bare subprocess | ratio slm/bare |")
    print("|---|---|---|---|")
    print(f"| programs/s | {args.programs / t_ours:.1f} | {args.programs / t_bare:.1f} | {t_bare / t_ours:.2f} |")
    print(f"| ms per program (wall / programs × workers) | {1000 * t_ours / args.programs * args.workers:.1f} | "
          f"{1000 * t_bare / args.programs * args.workers:.1f} | |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=400, help="loglikelihood requests")
    p.add_argument("--docs", type=int, default=40, help="documents for loglikelihood_rolling")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--programs", type=int, default=200)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--skip-scoring", action="store_true")
    args = p.parse_args()
    import torch

    torch.manual_seed(0)
    if not args.skip_scoring:
        scoring(args)
    sandbox(args)


if __name__ == "__main__":
    main()
