"""Speculative EFT vs plain EFT decoding on the `slm recipe eft` models: acceptance, large-model calls, speed.

    python benchmarks/eft_speculative.py                       # trains recipes/eft.yaml's seed 0 first if needed
    python benchmarks/eft_speculative.py --run-dir runs/eft --seed 0 --questions 40 --k 2 4

Both decoders run batch-1 on the held-out questions of the recipe's world, greedy and at temperature 1: each
answer ends at EOS (about 5 tokens: `A: teal.`), or with --ignore-eos runs --max-tokens tokens (after its
answer a model goes on writing documents the fine-tuned drafter was never trained on, so acceptance drops).
The large base alone is timed too (the cost EFT adds over the model it up-scales). Speed-ups are wall-clock
ratios of tokens/s over the same prompts in the same process.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def timed(fn, prompts):
    start = time.perf_counter()
    tokens = sum(len(fn(p).token_ids) for p in prompts)
    return tokens, time.perf_counter() - start


def main() -> None:
    import torch

    from slm.compose import load_composition, speculative_eft
    from slm.config import build, load_recipe
    from slm.infer import Engine, SamplingParams
    from slm.recipes.eft import EFTRecipeConfig, make_world, run

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", default="runs/eft", help="an `slm recipe eft` output directory")
    ap.add_argument("--seed", type=int, default=0, help="which seed's models")
    ap.add_argument("--questions", type=int, default=40, help="held-out questions to answer")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--k", type=int, nargs="+", default=[2, 4], help="draft block sizes")
    ap.add_argument("--ignore-eos", action="store_true", help="decode --max-tokens tokens past the answer")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    run_dir = Path(args.run_dir)
    composition = run_dir / f"seed-{args.seed}" / "upscaled.yaml"
    if not composition.is_file():
        cfg = build(EFTRecipeConfig, load_recipe("recipes/eft.yaml", [f"seeds=[{args.seed}]", f"out_dir={run_dir}"]))
        print(f"no models in {run_dir}: running the recipe for seed {args.seed} first")
        run(cfg)
    cfg = build(EFTRecipeConfig, json.loads((run_dir / "results.json").read_text())["config"])
    _, held_out = make_world(args.seed, cfg.world)
    prompts = [f.question for f in held_out[:args.questions]]
    model, tokenizer = load_composition(composition)
    large = model.members[model.base_slot]

    print(f"EFT up-scaling, {len(prompts)} questions, batch 1, {'exactly' if args.ignore_eos else 'up to'} "
          f"{args.max_tokens} tokens, {args.threads} thread(s)")
    print(f"{'sampling':<10} {'decoder':<22} {'tok/s':>8} {'accept':>7} {'tok/large call':>15} {'speed-up':>9}")
    for temperature in (0.0, 1.0):
        def params(i):
            return SamplingParams(max_tokens=args.max_tokens, temperature=temperature, seed=i,
                                  ignore_eos=args.ignore_eos)

        plain_engine, large_engine = Engine(model, tokenizer), Engine(large, tokenizer)
        counter = iter(range(10**9))
        tokens, plain_s = timed(lambda p: plain_engine.generate([p], params(next(counter)))[0], prompts)
        label = "greedy" if temperature == 0 else "T=1"
        print(f"{label:<10} {'plain EFT':<22} {tokens / plain_s:8.1f} {'-':>7} {1.0:15.2f} {1.0:9.2f}")
        counter = iter(range(10**9))
        t_large, large_s = timed(lambda p: large_engine.generate([p], params(next(counter)))[0], prompts)
        print(f"{label:<10} {'large base alone':<22} {t_large / large_s:8.1f} {'-':>7} {1.0:15.2f} "
              f"{plain_s / tokens * t_large / large_s:9.2f}")
        for k in args.k:
            spec = speculative_eft(model, tokenizer, k=k)
            counter = iter(range(10**9))
            tokens_s, spec_s = timed(lambda p: spec.generate(p, params(next(counter))), prompts)
            st = spec.stats
            speedup = (tokens_s / spec_s) / (tokens / plain_s)
            print(f"{label:<10} {f'speculative EFT k={k}':<22} {tokens_s / spec_s:8.1f} {st.acceptance_rate:7.0%} "
                  f"{st.tokens_per_target_call:15.2f} {speedup:9.2f}")


if __name__ == "__main__":
    main()
