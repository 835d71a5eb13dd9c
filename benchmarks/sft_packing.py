"""SFT throughput: packed rows (slm's contamination-free packing) against padded batches, in one run.

Both sides run the same nano model with the trainer's loss (`slm.train.causal_lm_loss`, forward + backward)
on the same conversations (the demo set: stdlib docstring <-> function pairs, a mix of short examples).
The peer is the usual unpacked SFT batch: one example per row, right-padded to the longest in the batch
(what TRL does without packing). Throughput counts REAL tokens (padding excluded) per second.

Each batch is timed `--repeats` times and the fastest run is kept, with the two sides interleaved batch by
batch: on a shared machine the minimum is the figure least disturbed by other jobs.

    .venv/bin/python benchmarks/sft_packing.py [--batches 6] [--repeats 3] [--seq-len 512] [--rows 4] [--padded-batch 16]
"""
from __future__ import annotations

import argparse
import json
import time


def real_tokens(batch) -> int:
    mask = batch.get("attention_mask")
    if mask is not None and mask.dim() == 2:
        return int(mask.sum())
    return int((batch["document_ids"] >= 0).sum())


def fastest_step(model, batch, repeats: int) -> float:
    """Seconds of the fastest forward + backward of `batch` (gradients cleared between runs)."""
    from slm.train import causal_lm_loss

    best = float("inf")
    for _ in range(repeats):
        model.zero_grad(set_to_none=True)
        start = time.perf_counter()
        loss, _ = causal_lm_loss(model, batch)
        loss.backward()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, default=6, help="batches timed per side")
    p.add_argument("--repeats", type=int, default=3, help="timings per batch; the fastest is kept")
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--rows", type=int, default=4, help="packed rows per batch")
    p.add_argument("--padded-batch", type=int, default=16, help="examples per padded batch")
    p.add_argument("--files", type=int, default=60, help="stdlib files for the tokenizer and the demo set")
    args = p.parse_args()

    import torch

    import slm
    from slm.data.sources import iter_stdlib_texts
    from slm.finetune.data import Renderer
    from slm.finetune.demo_data import demo_records
    from slm.finetune.packing import SFTBatches
    from slm.models import Decoder, preset

    torch.manual_seed(0)
    tokenizer = slm.train_tokenizer(iter_stdlib_texts(args.files), vocab_size=4096, kind="byte-bpe")
    render = Renderer(tokenizer)
    examples = [render(r["messages"]) for r in demo_records(files=args.files, max_code_chars=400)]
    examples = [e for e in examples if len(e) <= args.seq_len]
    lengths = sorted(len(e) for e in examples)
    print(f"{len(examples)} conversations, tokens per example: median {lengths[len(lengths) // 2]}, "
          f"max {lengths[-1]}, mean {sum(lengths) / len(lengths):.0f}")
    model = Decoder(preset("nano", vocab_size=len(tokenizer))).init_weights(seed=0).train()
    pad = tokenizer.pad_token_id
    data = {"padded": SFTBatches(examples, args.seq_len, args.padded_batch, pad, pack=False, seed=0),
            "packed": SFTBatches(examples, args.seq_len, args.rows, pad, pack=True, seed=0)}
    totals = {kind: [0, 0, 0.0] for kind in data}  # real tokens, slots, seconds
    fastest_step(model, data["packed"].make_batch(0, 0), 1)  # warm-up: first-call allocations
    for index in range(args.batches):  # interleaved, so that load on a shared machine hits both sides
        for kind, batches in data.items():
            batch = batches.make_batch(0, index)
            totals[kind][0] += real_tokens(batch)
            totals[kind][1] += batch["input_ids"].numel()
            totals[kind][2] += fastest_step(model, batch, args.repeats)
    for kind, (real, slots, seconds) in totals.items():
        print(f"{kind:7} {real:7,} real tokens in {slots:7,} slots ({real / slots:.0%} filled), "
              f"{seconds:6.2f} s -> {real / seconds:7,.0f} tokens/s")
    speed = {kind: real / seconds for kind, (real, _, seconds) in totals.items()}
    print(f"packed / padded real tokens per second: {speed['packed'] / speed['padded']:.2f}x")
    print(json.dumps({"args": vars(args), "totals": totals}))


if __name__ == "__main__":
    main()
