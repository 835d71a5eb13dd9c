"""Training throughput: slm's Trainer against a plain transformers LlamaForCausalLM + torch.optim.AdamW loop,
in fp32 and in bf16 autocast, with MFU against this machine's measured fp32 and bf16 matmul peaks.

Same model shape, batch, sequence length, data and thread count. Each side trains --steps measured steps
after --warmup steps (compilation and allocator warm-up are not counted), in --rounds alternating rounds,
each round of each side in a fresh process: process-wide state (the C allocator's settings and heap, thread
pools, compile caches in memory) must not leak from one side into the other. The best round of each side
counts (the machine may be shared).

A side is IMPLEMENTATION:PRECISION. Implementations: `slm` (slm's Trainer, compiled), `transformers` (the
loop as a transformers user writes it), `transformers+compile` (the same loop with torch.compile(model)),
`transformers+retain` (the same loop with slm's allocator setting, slm.train.allocator, which slm's Trainer
applies on CPU). Default sides: slm and transformers in fp32, and where the device multiplies bf16 natively
(CUDA; a CPU with AVX512-BF16 or AMX) also slm, transformers and transformers+compile in bf16; the ratios
compare slm with transformers' faster bf16 configuration.

    python benchmarks/train_throughput.py                                  # nano on CPU
    python benchmarks/train_throughput.py --preset micro --seq 512 --batch 4   # the bf16 issue's size
    python benchmarks/train_throughput.py --sides slm:fp32,transformers+retain:fp32   # any sides
    python benchmarks/train_throughput.py --profile --preset micro --seq 512 --batch 4  # where slm's step goes
    python benchmarks/train_throughput.py --preset tinyllama-1.1b --batch 4 --seq 2048   # on a GPU
"""
from __future__ import annotations

import argparse
import json
import re
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
                         precision=args.precision, device=str(device), progress=False)
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
    forward = torch.compile(model) if args.side.startswith("transformers+compile") else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=4e-4, betas=(0.9, 0.95), weight_decay=0.1,
                                  fused=device.type == "cuda" or None)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")
    times = []
    for i in range(args.warmup + args.steps):
        batch = batches[i % len(batches)]
        sync(device)
        t = time.perf_counter()
        ids, labels = batch["input_ids"].to(device), batch["labels"].to(device)
        with autocast:
            logits = forward(input_ids=ids).logits
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


IMPLEMENTATIONS = {"slm": run_slm, "transformers": run_transformers, "transformers+compile": run_transformers,
                   "transformers+retain": run_transformers}


def measure_side(args) -> None:
    """In a child process: one side's tokens/s, printed as the last line (JSON)."""
    device = torch.device(args.device)
    if args.side == "transformers+retain":
        from slm.train.allocator import retain_freed_memory

        retain_freed_memory()
    cfg = model_config(args)
    rate = IMPLEMENTATIONS[args.side](cfg, fixed_batches(cfg, args), args, device)
    print(json.dumps({"tokens_per_s": rate}), flush=True)


def default_sides(device: torch.device) -> list[str]:
    from slm.train.precision import cpu_facts

    sides = ["slm:fp32", "transformers:fp32"]
    if device.type == "cuda" or (device.type == "cpu" and cpu_facts().native_bf16):
        sides += ["slm:bf16", "transformers:bf16", "transformers+compile:bf16"]
    return sides


def parse_sides(text: str) -> list[tuple[str, str]]:
    sides = []
    for item in text.split(","):
        impl, _, precision = item.strip().partition(":")
        if impl not in IMPLEMENTATIONS or precision not in ("fp32", "bf16"):
            raise SystemExit(f"bad side {item!r}: write IMPLEMENTATION:PRECISION with IMPLEMENTATION one of "
                             f"{', '.join(IMPLEMENTATIONS)} and PRECISION fp32 or bf16")
        sides.append((impl, precision))
    return sides


# Where a step's time goes, by profiler op name (eager aten ops, inductor's extern kernels and mkldnn's linear).
CATEGORIES = (("matmul", re.compile(r"(^|[_:.])(add|b|badd|_int_)?mm($|_)|linear|matmul")),
              ("attention", re.compile(r"scaled_dot_product|flash_attention|efficient_attention")),
              ("norms", re.compile(r"rms_norm|layer_norm")),
              ("loss", re.compile(r"cross_entropy|log_softmax|nll_loss")),
              ("optimizer", re.compile(r"adam|_foreach|clip_grad")),
              ("compiled (fused pointwise)", re.compile(r"cpp_fused|triton_|compiled")))


def categorise(name: str) -> str:
    bare = name.lower()
    return next((category for category, pattern in CATEGORIES if pattern.search(bare)), "other")


def profile_slm(cfg, batches, args, device) -> None:
    """slm's step under torch.profiler for a few steps after warm-up: self CPU time per category."""
    from torch.profiler import ProfilerActivity, profile

    from slm.models import Decoder
    from slm.train import TrainConfig, Trainer

    steps = args.warmup + 3
    config = TrainConfig(max_steps=steps, lr=4e-4, min_lr=4e-5, warmup_steps=0, log_every=1, keep_last=1,
                         compile=not args.no_compile, precision=args.precision, device=str(device), progress=False)
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(Decoder(cfg).init_weights(0), config, FixedBatches(batches), out_dir=out)
        trainer.save_checkpoint = lambda: None
        real_step, seen = trainer._train_step, {"n": 0}
        prof = profile(activities=[ProfilerActivity.CPU])

        def step(*a):  # profile only the steps after warm-up (compilation is not the step)
            seen["n"] += 1
            if seen["n"] == args.warmup + 1:
                prof.__enter__()
            return real_step(*a)
        trainer._train_step = step
        trainer.fit()
        prof.__exit__(None, None, None)
    totals: dict[str, float] = {}
    for event in prof.key_averages():
        category = categorise(event.key)
        totals[category] = totals.get(category, 0.0) + event.self_cpu_time_total
    whole = sum(totals.values()) or 1.0
    print(f"slm {args.precision} step, self CPU time by category over 3 steps:")
    for category, us in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"  {category:12s} {us / 3e3:9.1f} ms/step  {us / whole:6.1%}")


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


def run_in_child(side: tuple[str, str], argv: list[str]) -> float:
    impl, precision = side
    done = subprocess.run([sys.executable, __file__, *argv, "--side", impl, "--precision", precision],
                          capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        raise SystemExit(f"the {impl}:{precision} side failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
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
    p.add_argument("--sides", default=None, help="comma-separated IMPLEMENTATION:PRECISION (default: see above)")
    p.add_argument("--no-compile", action="store_true", help="slm without torch.compile")
    p.add_argument("--profile", action="store_true", help="print where slm's step time goes, fp32 and bf16")
    p.add_argument("--side", choices=list(IMPLEMENTATIONS), help=argparse.SUPPRESS)  # internal: the child's job
    p.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)  # internal: the child's precision
    args = p.parse_args()
    device = torch.device(args.device)
    if args.side:
        return measure_side(args)
    argv = [a for a in sys.argv[1:] if a != "--profile"]

    from slm.models import flops_per_token
    from slm.train.precision import cpu_facts

    cfg = model_config(args)
    sides = parse_sides(args.sides or ",".join(default_sides(device)))
    if args.profile:
        for precision in sorted({precision for _, precision in sides}, reverse=True):
            profile_slm(cfg, fixed_batches(cfg, args), argparse.Namespace(**{**vars(args), "precision": precision}),
                        device)
        return
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    peaks = {name: matmul_peak(device, dtypes[name]) for name in sorted({p for _, p in sides})}
    flops = flops_per_token(cfg, args.seq, training=True)
    cpu = cpu_facts().describe() if device.type == "cpu" else torch.cuda.get_device_name(device)
    print(f"{cpu}; {torch.get_num_threads()} threads")
    print(f"{args.preset}: {cfg.n_layers} layers, dim {cfg.dim}, vocab {cfg.vocab_size}; batch {args.batch} x "
          f"{args.seq}; {device}; slm compile={not args.no_compile}; each round of each side in a fresh process")
    print("matmul peaks before the rounds: " + ", ".join(f"{k} {v / 1e9:,.1f} GFLOP/s" for k, v in peaks.items())
          + f"; {flops / 1e6:,.1f} MFLOP per trained token")
    best = dict.fromkeys(sides, 0.0)
    for r in range(args.rounds):
        for side in sides:
            tps = run_in_child(side, argv)
            best[side] = max(best[side], tps)
            print(f"  round {r + 1}: {':'.join(side):26s} {tps:10,.0f} tokens/s", flush=True)
    peaks = {k: max(v, matmul_peak(device, dtypes[k])) for k, v in peaks.items()}
    print("matmul peaks (best of before and after): "
          + ", ".join(f"{k} {v / 1e9:,.1f} GFLOP/s" for k, v in peaks.items()))
    for side, tps in best.items():
        print(f"{':'.join(side):26s} {tps:10,.0f} tokens/s   MFU {tps * flops / peaks[side[1]]:6.1%} "
              f"of the {side[1]} peak")
    for precision in peaks:
        ours = best.get(("slm", precision))
        theirs = max((s for s in best if s[1] == precision and s[0] != "slm"), key=best.get, default=None)
        if ours and theirs:
            print(f"ratio slm / best transformers ({':'.join(theirs)}), {precision}: {ours / best[theirs]:.2f}x")
    if best.get(("slm", "bf16")) and best.get(("slm", "fp32")):
        print(f"ratio slm bf16 / slm fp32: {best[('slm', 'bf16')] / best[('slm', 'fp32')]:.2f}x")


if __name__ == "__main__":
    main()
