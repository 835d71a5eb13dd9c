"""Encoder-decoder speed on CPU: slm's T5 against transformers' T5ForConditionalGeneration, same weights, one run.

    python benchmarks/seq2seq.py [--preset flan-t5-small] [--train-steps 8] [--new-tokens 32]

  training    span-corruption-shaped batches (inputs 128, targets 32, batch 8): forward + backward + AdamW,
              tokens (encoder + decoder) per second; each side at its best CPU precision (fp32, or bf16
              autocast where the CPU multiplies bf16 natively: both are measured, the faster is reported)
  greedy      batch 1, a 48-token prompt, new tokens until --new-tokens: slm's engine (fp32; int8 weights; bf16
              weights where the CPU has native bf16) against transformers' generate(do_sample=False) in fp32
  beam        the same prompt, 4 beams: slm's beam search against generate(num_beams=4)
Both sides use the same number of threads; outputs are checked to be the same tokens before timing. Training is
the best of two alternating rounds per setting; generation the median of --repeats calls.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def train_rate(model, forward_loss, batch, steps: int, bf16: bool) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = forward_loss(model, batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    tokens = batch["input_ids"].numel() + batch["labels"].numel()
    return steps * tokens / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="flan-t5-small")
    ap.add_argument("--train-steps", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from transformers import T5ForConditionalGeneration

    import slm
    from slm.infer import Engine, SamplingParams
    from slm.infer.beam import BeamParams
    from slm.models import build_model, preset
    from slm.models.seq2seq import seq2seq_loss

    from slm.train.precision import cpu_facts

    facts = cpu_facts()
    print(f"CPU: {facts.describe()}, {torch.get_num_threads()} threads; "
          f"torch {torch.__version__}")
    bf16_ok = facts.native_bf16 is not None
    cfg = preset(args.preset, dropout=0.0)
    ours = build_model(cfg).init_weights(0)
    with torch.no_grad():  # EOS's logit pinned at 0, far below the top ones: every path runs to the token budget
        ours.lm_head.weight[cfg.eos_token_id] = 0
    path = tempfile.mkdtemp()
    slm.save(ours, None, path)
    hf = T5ForConditionalGeneration.from_pretrained(path)
    print(f"model: {args.preset}, {ours.num_parameters() / 1e6:.1f}M parameters")

    g = torch.Generator().manual_seed(0)
    ours.eval()
    hf.eval()
    prompt = torch.randint(3, cfg.vocab_size - 100, (1, 48), generator=g)
    n = args.new_tokens
    kw = dict(max_new_tokens=n, min_new_tokens=n, eos_token_id=None)
    engine = Engine.from_pretrained(path)  # the engine's CPU decoding layout (input-major float weights)
    params = SamplingParams(max_tokens=n, ignore_eos=True)
    ref = hf.generate(prompt, do_sample=False, **kw)[0, 1:].tolist()
    assert engine.generate([prompt[0].tolist()], params)[0].token_ids == ref, "greedy outputs differ"
    with torch.inference_mode():
        t_hf = timed(lambda: hf.generate(prompt, do_sample=False, **kw), args.repeats)
    t_slm = timed(lambda: engine.generate([prompt[0].tolist()], params), args.repeats)
    print(f"greedy transformers generate: {n / t_hf:.1f} tok/s; slm fp32: {n / t_slm:.1f} tok/s "
          f"({t_hf / t_slm:.2f}x)")
    fast = {"int8": Engine.from_pretrained(path, int8=True)}
    hf_bf16 = None
    if bf16_ok:
        fast["bf16"] = Engine.from_pretrained(path, dtype=torch.bfloat16)
        hf_bf16 = T5ForConditionalGeneration.from_pretrained(path, dtype=torch.bfloat16).eval()
        with torch.inference_mode():
            t_hf16 = timed(lambda: hf_bf16.generate(prompt, do_sample=False, **kw), args.repeats)
        print(f"greedy transformers generate bf16: {n / t_hf16:.1f} tok/s")
        t_hf = min(t_hf, t_hf16)
    for name, other in fast.items():
        t_other = timed(lambda: other.generate([prompt[0].tolist()], params), args.repeats)
        print(f"greedy slm {name}: {n / t_other:.1f} tok/s ({t_hf / t_other:.2f}x transformers' best)")

    beams = BeamParams(num_beams=4, max_tokens=n, early_stopping="never")
    bkw = dict(max_new_tokens=n, num_beams=4, early_stopping="never", do_sample=False, eos_token_id=None)
    [[top]] = engine.beam_search([prompt[0].tolist()], beams)
    assert top.token_ids == hf.generate(prompt, **bkw)[0, 1:].tolist(), "beam outputs differ"
    with torch.inference_mode():
        t_hf_beam = timed(lambda: hf.generate(prompt, **bkw), args.repeats)
    t_beam = timed(lambda: engine.beam_search([prompt[0].tolist()], beams), args.repeats)
    print(f"beam(4) transformers: {t_hf_beam * 1000:.0f} ms; slm fp32: {t_beam * 1000:.0f} ms "
          f"({t_hf_beam / t_beam:.2f}x)")
    if hf_bf16 is not None:
        with torch.inference_mode():
            t_hf16_beam = timed(lambda: hf_bf16.generate(prompt, **bkw), args.repeats)
        print(f"beam(4) transformers bf16: {t_hf16_beam * 1000:.0f} ms")
        t_hf_beam = min(t_hf_beam, t_hf16_beam)
    for name, other in fast.items():
        t_other = timed(lambda: other.beam_search([prompt[0].tolist()], beams), args.repeats)
        print(f"beam(4) slm {name}: {t_other * 1000:.0f} ms ({t_hf_beam / t_other:.2f}x transformers' best)")


    # Training last: it moves both models' weights (the same steps on the same batch).
    batch = {"input_ids": torch.randint(3, cfg.vocab_size - 100, (8, 128), generator=g),
             "labels": torch.randint(3, cfg.vocab_size - 100, (8, 32), generator=g)}
    hf_loss = lambda m, b: m(input_ids=b["input_ids"], labels=b["labels"]).loss
    slm_loss = lambda m, b: (lambda s, n: s / n)(*seq2seq_loss(m, b))
    rates = {}
    for _ in range(2):  # alternating rounds, best of each: a neighbour's burst on the shared cores hits both sides
        for name, model, loss in (("slm", ours, slm_loss), ("transformers", hf, hf_loss)):
            for bf16 in ([False, True] if bf16_ok else [False]):
                rate = train_rate(model, loss, batch, args.train_steps, bf16)
                rates[(name, bf16)] = max(rates.get((name, bf16), 0.0), rate)
    for (name, bf16), rate in rates.items():
        print(f"train  {name:<12} {'bf16' if bf16 else 'fp32'}: {rate:,.0f} tok/s")
    best = {name: max(r for (n, _), r in rates.items() if n == name) for name in ("slm", "transformers")}
    print(f"train  best vs best: {best['slm'] / best['transformers']:.2f}x")

if __name__ == "__main__":
    main()
