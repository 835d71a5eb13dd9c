"""MLM pretraining tokens/s and batch-1 classification latency: slm's encoder vs transformers' RoBERTa, on CPU.

    python benchmarks/mlm_throughput.py [--steps 20] [--dim 256] [--layers 4]

Both sides train the same shape from the same weights at their best CPU precision (bf16 autocast where the CPU
has native bf16 matmuls, else fp32):
  transformers  RobertaForMaskedLM + DataCollatorForLanguageModeling (masks at collate time), AdamW, loss.backward()
  slm           Encoder + slm.objectives.MaskTokens (fairseq masking) + mlm_loss (head on masked positions only)
and classification latency is one 64-token sequence through each side's sequence classifier (no grad), median of
repeated calls. Prints tok/s, ms and the ratios.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch


def best_dtype() -> torch.dtype | None:
    try:
        import torch.backends.mkldnn as mk
        if hasattr(mk, "is_bf16_supported") and mk.is_bf16_supported():
            return torch.bfloat16
    except Exception:
        pass
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--vocab", type=int, default=8192)
    args = ap.parse_args()
    from transformers import (DataCollatorForLanguageModeling, RobertaConfig, RobertaForMaskedLM,
                              RobertaForSequenceClassification)

    import slm
    from slm.data.sources import iter_stdlib_texts
    from slm.objectives import MaskingConfig, MaskTokens, mlm_loss

    dtype = best_dtype()
    autocast = (lambda: torch.autocast("cpu", dtype=dtype)) if dtype else (lambda: torch.autocast("cpu", enabled=False))
    tok = slm.train_tokenizer(iter_stdlib_texts(60), vocab_size=args.vocab, kind="roberta-bpe")
    T = args.seq_len
    hf_cfg = RobertaConfig(vocab_size=len(tok), hidden_size=args.dim, num_hidden_layers=args.layers,
                           num_attention_heads=args.dim // 64, intermediate_size=4 * args.dim,
                           max_position_embeddings=T + 2, type_vocab_size=1, pad_token_id=1, layer_norm_eps=1e-5)
    stream = [i for text in iter_stdlib_texts(60) for i in tok(text)["input_ids"]]
    n_rows = args.batch * (args.steps + 3)
    rows = torch.tensor(stream[:n_rows * (T - 1)]).view(n_rows, T - 1)
    rows = torch.cat([torch.zeros(n_rows, 1, dtype=torch.long), rows], dim=1)  # <s> + block

    def timed(step_fn) -> float:
        for i in range(3):
            step_fn(i)  # warm-up
        start = time.perf_counter()
        for i in range(3, args.steps + 3):
            step_fn(i)
        return args.steps * args.batch * T / (time.perf_counter() - start)

    torch.manual_seed(0)
    hf = RobertaForMaskedLM(hf_cfg).train()
    tmp = "/tmp/slm-bench-mlm"
    hf.save_pretrained(tmp)
    ours, _ = slm.load(tmp)
    ours.train()
    collator = DataCollatorForLanguageModeling(tok, mlm_probability=0.15)
    hf_opt = torch.optim.AdamW(hf.parameters(), lr=1e-4)
    our_opt = torch.optim.AdamW(ours.parameters(), lr=1e-4)
    masker = MaskTokens(tok, MaskingConfig())

    def hf_step(i):
        batch = collator([{"input_ids": r} for r in rows[i * args.batch:(i + 1) * args.batch].tolist()])
        with autocast():
            loss = hf(input_ids=batch["input_ids"], labels=batch["labels"]).loss
        loss.backward()
        hf_opt.step()
        hf_opt.zero_grad(set_to_none=True)

    def our_step(i):
        sl = slice(i * args.batch, (i + 1) * args.batch)
        batch = masker({"input_ids": rows[sl], "sample_index": torch.arange(sl.start, sl.stop),
                        "mask_epoch": torch.zeros(args.batch, dtype=torch.long)})
        with autocast():
            loss, n = mlm_loss(ours, batch)
        (loss / n).backward()
        our_opt.step()
        our_opt.zero_grad(set_to_none=True)

    hf_tps, our_tps = [], []
    for _ in range(2):  # alternate, so that a noisy neighbour hits both sides
        hf_tps.append(timed(hf_step))
        our_tps.append(timed(our_step))
    hf_best, our_best = max(hf_tps), max(our_tps)
    print(f"precision: {'bf16 autocast' if dtype else 'fp32'}; threads {torch.get_num_threads()}; "
          f"shape dim {args.dim} x {args.layers} layers, batch {args.batch} x {T} tokens")
    print(f"MLM training  transformers {hf_best:,.0f} tok/s   slm {our_best:,.0f} tok/s   ratio {our_best / hf_best:.2f}x")

    torch.manual_seed(0)
    hf_clf = RobertaForSequenceClassification(hf_cfg.__class__(**{**hf_cfg.to_dict(), "num_labels": 6})).eval()
    hf_clf.save_pretrained(tmp + "-clf")
    our_clf, _ = slm.load(tmp + "-clf")
    x = rows[:1, :64]

    def latency(fn, reps=200) -> float:
        with torch.inference_mode():
            for _ in range(10):
                fn()
            times = []
            for _ in range(reps):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1e3

    hf_ms = latency(lambda: hf_clf(input_ids=x).logits)
    our_ms = latency(lambda: our_clf(x))
    print(f"classify b=1  transformers {hf_ms:.3f} ms   slm {our_ms:.3f} ms   ratio {hf_ms / our_ms:.2f}x (fp32)")


if __name__ == "__main__":
    main()
