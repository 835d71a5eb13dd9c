"""Training throughput: slm's Trainer against a plain transformers LlamaForCausalLM + torch.optim.AdamW loop.

Same model shape, batch, sequence length, data and thread count. Each side trains --steps measured steps
after --warmup steps (compilation and allocator warm-up are not counted), in --rounds alternating rounds,
each round of each side in a fresh process: process-wide state (the C allocator's settings and heap, thread
pools, compile caches in memory) must not leak from one side into the other. The best round of each side
counts (the machine may be shared). Prints tokens/s, the ratios, and MFU against this machine's measured
matmul peak.

Three sides: `transformers` is the loop as a transformers user runs it, in a default process;
`transformers+retain` is the same loop with slm's allocator setting (slm.train.allocator, which slm's Trainer
applies on CPU), to show how much of slm's lead comes from that setting alone; `slm` is slm's Trainer.

    python benchmarks/train_throughput.py                       # nano on CPU, fp32
    python benchmarks/train_throughput.py --preset tinyllama-1.1b --batch 4 --seq 2048   # on a GPU, bf16
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F


def matmul_peak(device: torch.device, dtype: torch.dtype, sizes=(512, 1024, 2048), reps: int = 10) -> float:
    """Best FLOP/s of square matmuls of a few sizes: the practical peak this machine gives a dense step.

    A shared machine's peak moves from minute to minute, so main() takes the best of a measurement before
    and one after the timed rounds; otherwise a slow moment at the start reads as MFU above 100%.
    """
    best_rate = 0.0
    for n in sizes:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        for _ in range(reps):
            sync(device)
            t = time.perf_counter()
            a @ b
            sync(device)
            best_rate = max(best_rate, 2 * n**3 / (time.perf_counter() - t))
    return best_rate


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class FixedBatches:
    """The same list of batches, cycled; stateful so that the Trainer treats it like a real loader."""

    def __init__(self, batches):
        self.batches, self.position = batches, 0

    def __iter__(self):
        while True:
            batch = self.batches[self.position % len(self.batches)]
            self.position += 1
            yield batch

    def state_dict(self):
        return {"position": self.position}

    def load_state_dict(self, state):
        self.position = state["position"]


def run_slm(cfg, batches, args, device) -> float:
    """Tokens/s of slm's Trainer over the measured steps (its own per-step timing, logged every step)."""
    from slm.models import Decoder
    from slm.train import TrainConfig, Trainer

    model = Decoder(cfg).init_weights(0)
    config = TrainConfig(max_steps=args.warmup + args.steps, lr=4e-4, min_lr=4e-5, warmup_steps=0,
                         log_every=1, save_every=0, keep_last=1, compile=not args.no_compile,
                         precision="bf16" if args.bf16 else "fp32", device=str(device), progress=False)
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(model, config, FixedBatches(batches), out_dir=out)
        trainer.save_checkpoint = lambda: None  # the benchmark measures training steps, not disk writes
        trainer.fit()
    measured = [r for r in trainer.history if "tokens_per_s" in r][args.warmup:]
    tokens = args.batch * args.seq * len(measured)
    return tokens / sum(args.batch * args.seq / r["tokens_per_s"] for r in measured)


def run_transformers(cfg, batches, args, device) -> float:
    """Tokens/s of the loop a transformers user writes: model(input_ids, labels) -> loss.backward -> AdamW."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from slm.models.hf import config_to_hf

    hf_config = LlamaConfig(**config_to_hf(cfg))
    hf_config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    model = LlamaForCausalLM(hf_config).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=4e-4, betas=(0.9, 0.95), weight_decay=0.1,
                                  fused=device.type == "cuda" or None)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)
    times = []
    for i in range(args.warmup + args.steps):
        batch = batches[i % len(batches)]
        sync(device)
        t = time.perf_counter()
        ids, labels = batch["input_ids"].to(device), batch["labels"].to(device)
        with autocast:
            logits = model(input_ids=ids).logits
            # labels are already shifted (as slm's batches): the same targets, the same cross entropy.
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()
        sync(device)
        times.append(time.perf_counter() - t)
    return args.batch * args.seq * args.steps / sum(times[args.warmup:])


SIDES = {"transformers": run_transformers, "transformers+retain": run_transformers, "slm": run_slm}


def measure_side(args) -> None:
    """In a child process: one side's tokens/s, printed as the last line (JSON)."""
    device = torch.device(args.device)
    if args.side == "transformers+retain":
        from slm.train.allocator import retain_freed_memory

        retain_freed_memory()
    cfg = model_config(args)
    print(json.dumps({"tokens_per_s": SIDES[args.side](cfg, fixed_batches(cfg, args), args, device)}), flush=True)


def model_config(args):
    from slm.models import preset

    overrides = {"max_seq_len": max(args.seq, 64)}
    if args.vocab:
        overrides["vocab_size"] = args.vocab
    return preset(args.preset, **overrides)


def fixed_batches(cfg, args) -> list[dict]:
    """The same four random batches for every side (seeded)."""
    g = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(4):
        ids = torch.randint(0, cfg.vocab_size, (args.batch, args.seq + 1), generator=g)
        batches.append({"input_ids": ids[:, :-1].contiguous(), "labels": ids[:, 1:].contiguous()})
    return batches


def run_in_child(side: str, argv: list[str]) -> float:
    done = subprocess.run([sys.executable, __file__, *argv, "--side", side], capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        raise SystemExit(f"the {side} side failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])["tokens_per_s"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="nano")
    p.add_argument("--vocab", type=int, default=None, help="vocabulary size (default: the preset's)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast for both (default on CUDA)")
    p.add_argument("--no-compile", action="store_true", help="slm without torch.compile")
    p.add_argument("--side", choices=list(SIDES), help=argparse.SUPPRESS)  # internal: the child's job
    args = p.parse_args()
    device = torch.device(args.device)
    args.bf16 = args.bf16 or device.type == "cuda"
    if args.side:
        return measure_side(args)
    argv = sys.argv[1:]

    from slm.models import flops_per_token

    cfg = model_config(args)
    peak = matmul_peak(device, torch.bfloat16 if args.bf16 else torch.float32)
    flops = flops_per_token(cfg, args.seq, training=True)
    print(f"{args.preset}: {cfg.n_layers} layers, dim {cfg.dim}, vocab {cfg.vocab_size}; batch {args.batch} x "
          f"{args.seq}; {device}, {'bf16' if args.bf16 else 'fp32'}, {torch.get_num_threads()} threads; "
          f"slm compile={not args.no_compile}; each round of each side in a fresh process")
    print(f"matmul peak before the rounds: {peak / 1e9:,.1f} GFLOP/s; {flops / 1e6:,.1f} MFLOP per trained token")
    best = dict.fromkeys(SIDES, 0.0)
    for r in range(args.rounds):
        for name in SIDES:
            tps = run_in_child(name, argv)
            best[name] = max(best[name], tps)
            print(f"  round {r + 1}: {name:20s} {tps:10,.0f} tokens/s", flush=True)
    peak = max(peak, matmul_peak(device, torch.bfloat16 if args.bf16 else torch.float32))
    print(f"matmul peak (best of before and after): {peak / 1e9:,.1f} GFLOP/s")
    for name, tps in best.items():
        print(f"{name:20s} {tps:10,.0f} tokens/s   MFU {tps * flops / peak:6.1%}")
    print(f"ratio slm / transformers: {best['slm'] / best['transformers']:.2f}x")
    print(f"ratio slm / transformers+retain (the same allocator setting): "
          f"{best['slm'] / best['transformers+retain']:.2f}x")


if __name__ == "__main__":
    main()
