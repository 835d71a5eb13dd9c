"""Batch-1 decode speed: slm's Engine vs transformers' generate, next to the memory-bandwidth roofline.

    .venv/bin/python benchmarks/decode.py                       # nano and micro, fp32 and int8
    .venv/bin/python benchmarks/decode.py --presets nano --tokens 64 --threads 2
    .venv/bin/python benchmarks/decode.py --speculative         # also: speculative decoding, micro target, nano draft
    .venv/bin/python benchmarks/decode.py --presets micro --paired 12   # also: % of roofline, decode and probe paired

Decode speed is measured as a difference: time(prompt + N new tokens) - time(prompt + 1 new token), so the
prefill is not counted, for both engines (greedy, no EOS). The roofline is the speed at which one token's
weight bytes (every linear and norm weight; the embedding table only as the tied LM head) can be read at the
memory bandwidth measured here by summing a large random tensor (on 2 MiB pages where the machine has them,
as the decoding weights are): each row against the higher of two probes taken just before and just after
it, the final summary against the higher of probes before and after all rows. The int8 row also reports the
perplexity change on stdlib text when a checkpoint directory is given in --presets (random weights for a
preset name: random token ids then, and only the change means anything).
The llama.cpp column lives in benchmarks/decode_llamacpp.py (the GGUF export's benchmark).
"""
from __future__ import annotations

import argparse
import copy
import math
import tempfile
import time
from pathlib import Path

import torch

import slm
from slm.infer import Engine, SamplingParams
from slm.infer.quant import decoding_weights, huge_page_buffer, prepare_for_decoding, quantize_int8, weight_bytes
from slm.models import Decoder, preset


def sum_rate(x: torch.Tensor) -> float:
    """Bytes/s of one sum over x: one reading of how fast its memory streams."""
    t0 = time.perf_counter()
    x.sum()
    return x.numel() * x.element_size() / (time.perf_counter() - t0)


def on_huge_pages(x: torch.Tensor) -> torch.Tensor:
    """A copy of x on 2 MiB pages where the machine has them, as prepare_for_decoding places the weights: a
    1 GiB sum reads 1.1-1.15x faster there than on 4 KiB pages, so a probe on small pages would understate
    the bandwidth and flatter every share of the roofline."""
    buffer = huge_page_buffer(x.numel() * x.element_size())
    return x if buffer is None else buffer.view(x.dtype).view(x.shape).copy_(x)


def memory_bandwidth(gib: float = 1.0, repeats: int = 5) -> float:
    """Bytes/s reading a large fp32 tensor (best of a few sums): what batch-1 decoding is bound by."""
    x = on_huge_pages(torch.rand(int(gib * 2**30 / 4)))  # random: a constant tensor's pages can be merged
    x.sum()
    return max(sum_rate(x) for _ in range(repeats))


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def slm_engine(model, compile: bool | str = False) -> Engine:
    engine = Engine(model, compile=compile)
    engine.warm_up()  # with the inductor graph: every cache window's graph, compiled outside the timings
    return engine


def slm_decode_tps(engine: Engine, prompt: list[int], tokens: int, repeats: int) -> float:
    run = lambda n: engine.generate([prompt], SamplingParams(max_tokens=n, ignore_eos=True))
    run(4)  # warm-up
    return (tokens - 1) / (best_of(lambda: run(tokens), repeats) - best_of(lambda: run(1), repeats))


def hf_decode_tps(hf_model, prompt: list[int], tokens: int, repeats: int, compile: bool = False) -> float:
    """transformers' generate; compile=True is its documented fast path: a static cache and a compiled forward."""
    ids = torch.tensor([prompt])
    extra = {"cache_implementation": "static"} if compile else {}
    if compile:
        hf_model.forward = torch.compile(hf_model.forward, fullgraph=True)

    def run(n):
        with torch.inference_mode():
            hf_model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                              do_sample=False, pad_token_id=0, eos_token_id=None, **extra)

    run(4)
    if compile:
        run(tokens)
    return (tokens - 1) / (best_of(lambda: run(tokens), repeats) - best_of(lambda: run(1), repeats))


def perplexity(model, texts_ids: list[list[int]]) -> float:
    total, count = 0.0, 0
    with torch.inference_mode():
        for ids in texts_ids:
            x = torch.tensor([ids])
            logp = model(x[:, :-1]).log_softmax(-1)
            total -= logp.gather(-1, x[:, 1:, None]).sum().item()
            count += len(ids) - 1
    return math.exp(total / count)


def load_or_init(name: str):
    """A preset name (random weights) or a checkpoint directory (its own weights and tokenizer)."""
    if Path(name).is_dir():
        model, tok = slm.load(name)
        return model, tok, "checkpoint"
    return Decoder(preset(name)).init_weights(seed=0).eval(), None, "random"


def eval_ids(tok, vocab: int, n: int = 8, length: int = 256) -> list[list[int]]:
    from slm.data.sources import iter_stdlib_texts

    if tok is None:  # random weights: any ids do (the ppl change is what is reported)
        g = torch.Generator().manual_seed(0)
        return [torch.randint(0, vocab, (length,), generator=g).tolist() for _ in range(n)]
    texts = iter_stdlib_texts(400)
    out = []
    for text in texts:
        ids = tok.encode(text)
        if len(ids) >= length:
            out.append(ids[-length:])  # the tail: files late in the corpus, less likely seen in training
        if len(out) == n:
            break
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["nano", "micro"],
                    help="preset names (random weights) or checkpoint directories (ppl on stdlib text)")
    ap.add_argument("--tokens", type=int, default=128, help="new tokens per timed generation")
    ap.add_argument("--prompt-len", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3, help="best of this many timings")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--no-hf", action="store_true", help="skip transformers")
    ap.add_argument("--hf-compile", action="store_true",
                    help="also time transformers with a static cache and a compiled forward (the peer for fp32-comp)")
    ap.add_argument("--paired", type=int, default=0, metavar="ROUNDS",
                    help="also measure the compiled engine's %% of the roofline (fp32 and int8) in this many rounds, "
                         "each decode timing paired with a probe right after it (medians over rounds and slices)")
    ap.add_argument("--speculative", action="store_true", help="also time speculative decoding (micro target)")
    ap.add_argument("--only-speculative", action="store_true", help="skip the table, time speculative decoding only")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bandwidth = memory_bandwidth()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; memory bandwidth (1 GiB sum): "
          f"{bandwidth / 1e9:.1f} GB/s")
    header = f"{'preset':7} {'weights':9} {'MB/token':>9} {'slm tok/s':>10} {'HF tok/s':>9} {'slm/HF':>7} " \
             f"{'roofline':>9} {'of roof':>8} {'ppl':>10}"
    print(header)
    prompt = list(range(1, args.prompt_len + 1))
    if args.only_speculative:
        speculative(load_or_init("micro")[0], load_or_init("nano")[0], prompt, args.tokens)
        return
    models, rows = {}, []
    for name in args.presets:
        model, tok, kind = load_or_init(name)
        name = Path(name).name[:7] if kind == "checkpoint" else name
        models[name] = model
        ids = eval_ids(tok, model.config.vocab_size)
        ppl_fp32 = perplexity(model, ids)
        hf_tps = None
        if not args.no_hf:
            from transformers import AutoModelForCausalLM

            with tempfile.TemporaryDirectory() as tmp:
                slm.save(model, None, Path(tmp) / "m")
                hf = AutoModelForCausalLM.from_pretrained(Path(tmp) / "m").eval()
            hf_tps = hf_decode_tps(hf, prompt, args.tokens, args.repeats)
            if args.hf_compile:
                hf_compiled_tps = hf_decode_tps(hf, prompt, args.tokens, args.repeats, compile=True)
                print(f"{name:7} transformers, static cache + torch.compile: {hf_compiled_tps:.1f} tok/s "
                      f"(eager generate {hf_tps:.1f})", flush=True)
            del hf
        # fp32: the checkpoint as loaded; fp32-fast and int8: the layout slm decodes with (Engine.from_pretrained).
        # -comp: the compiled decoding step (Engine(compile=True), `slm generate --compile [--int8]`): slm's C++
        # step for Llama models (slm.infer.native), fp32 or int8; -ind: the inductor graph.
        compiled = prepare_for_decoding(copy.deepcopy(model), compile=True)
        compiled_int8 = prepare_for_decoding(copy.deepcopy(model), int8=True, compile=True)
        variants = (("fp32", model, False), ("fp32-fast", prepare_for_decoding(copy.deepcopy(model)), False),
                    ("fp32-comp", compiled, True), ("fp32-ind", compiled, "inductor"),
                    ("int8", prepare_for_decoding(copy.deepcopy(model), int8=True), False),
                    ("int8-comp", compiled_int8, True), ("int8-ind", compiled_int8, "inductor"))
        for label, m, compile in variants:
            # The host's bandwidth drifts within a run: each row's roofline uses the higher of two probes taken
            # just before and just after its timings.
            near = memory_bandwidth()
            tps = slm_decode_tps(slm_engine(m, compile), prompt, args.tokens, args.repeats)
            near = max(near, memory_bandwidth())
            wb = weight_bytes(m)
            roof = near / wb
            ppl = perplexity(m, ids)
            ppl_text = f"{ppl:.2f}" if label == "fp32" else f"{ppl:.2f} ({(ppl / ppl_fp32 - 1) * 100:+.2f}%)"
            hf_col = f"{hf_tps:9.1f} {tps / hf_tps:7.2f}" if (hf_tps and label.startswith("fp32")) else f"{'n/a':>9} {'':>7}"
            print(f"{name:7} {label:9} {wb / 1e6:9.1f} {tps:10.1f} {hf_col} {roof:9.1f} {tps / roof:8.0%} "
                  f"{ppl_text:>10}  [{kind} weights]", flush=True)
            rows.append((name, label, tps, wb))
    # The probe swings from run to run on a shared host (27-52 GB/s here); the higher of a reading before and
    # one after the rows keeps a slow moment at the start from inflating "% of roofline".
    after = memory_bandwidth()
    peak = max(bandwidth, after)
    print(f"\nmemory bandwidth after the rows: {after / 1e9:.1f} GB/s; % of roofline at the higher probe "
          f"({peak / 1e9:.1f} GB/s):")
    for name, label, tps, wb in rows:
        print(f"{name:7} {label:9} {tps:10.1f} tok/s {tps * wb / 1e9:6.1f} GB/s {tps / (peak / wb):6.0%}")
    if args.paired:
        for name, model in models.items():
            for int8 in (False, True):
                paired_roofline(f"{name} {'int8' if int8 else 'fp32'}",
                                prepare_for_decoding(copy.deepcopy(model), int8=int8, compile=True), prompt,
                                args.tokens, args.paired)
    if args.speculative and {"nano", "micro"} <= set(models):
        speculative(models["micro"], models["nano"], prompt, args.tokens)


def paired_roofline(name: str, model, prompt: list[int], tokens: int, rounds: int, slices: int = 6,
                    slice_seconds: float = 0.064) -> None:
    """% of the roofline with the host's drift taken out, measured two ways per round.

    By round: the compiled engine's decode speed (best of 2) over the roofline of a probe (best of 5 sums)
    taken right after it. This host's bandwidth can jump between about 28 and 55 GB/s from one second to the
    next, and the two sides are not measured alike: a best of 5 short sums catches a fast spell that a
    decode run of half a second averages away.
    By slice: one generation is cut into `slices` slices of at least `slice_seconds` each (16 tokens or more,
    sized from the round's speed), and after each slice the same 1 GiB tensor is summed once (about 30 ms).
    Each slice's share is its decode speed over the roofline of the sum right after it: both sides are single
    measurements a few ms apart. (The sum evicts the caches, so each slice starts cold: too short a slice
    would charge that to decoding.)
    Each slice is also followed by one sum of a contiguous copy of the model's weight bytes: the ceiling for
    any decoder, a pure read of exactly the bytes a token needs, with no products, barriers or attention."""
    engine = slm_engine(model, compile=True)
    wb = weight_bytes(model)
    weights = on_huge_pages(torch.cat([t.detach().flatten() for t in decoding_weights(model)]))
    probe_tensor = on_huge_pages(torch.rand(2**28))  # 1 GiB, as memory_bandwidth() reads
    median = lambda xs: sorted(xs)[len(xs) // 2]
    by_round, by_slice, ceiling, of_ceiling = [], [], [], []
    for r in range(rounds):
        tps = slm_decode_tps(engine, prompt, tokens, 2)
        by_round.append(tps * wb / memory_bandwidth())
        slice_tokens = max(16, math.ceil(slice_seconds * tps))
        length = min(slices * slice_tokens + 1, model.config.max_seq_len - len(prompt))
        seq = engine.new_sequence(prompt, SamplingParams(max_tokens=length, ignore_eos=True), track_text=False)
        steps = engine.steps([seq])
        next(steps)  # the prefill and the first token are not decoding
        shares = []
        for _ in range((length - 1) // slice_tokens):
            t0 = time.perf_counter()
            for _ in range(slice_tokens):
                next(steps)
            decoded = slice_tokens * wb / (time.perf_counter() - t0)
            probe, stream = sum_rate(probe_tensor), sum_rate(weights)
            shares.append(decoded / probe)
            ceiling.append(stream / probe)
            of_ceiling.append(decoded / stream)
        steps.close()
        by_slice += shares
        print(f"{name:10} paired round {r}: {tps:7.1f} tok/s, {by_round[-1]:5.0%} of the roofline by round; "
              f"by slices of {slice_tokens} tokens: median {median(shares):5.0%} "
              f"(range {min(shares):.0%}-{max(shares):.0%})", flush=True)
    print(f"{name:10} compiled, by round over {rounds} rounds: median {median(by_round):.0%} of the roofline "
          f"(range {min(by_round):.0%}-{max(by_round):.0%}; {sum(s >= 0.8 for s in by_round)} of {rounds} at 80% or more)")
    print(f"{name:10} compiled, by slice over {len(by_slice)} slices: median "
          f"{median(by_slice):.0%} of the roofline (quartiles {sorted(by_slice)[len(by_slice) // 4]:.0%}-"
          f"{sorted(by_slice)[3 * len(by_slice) // 4]:.0%}; {sum(s >= 0.8 for s in by_slice)} of {len(by_slice)} at 80% "
          f"or more); a plain sum of the same weights: median {median(ceiling):.0%} of the roofline; decoding "
          f"{median(of_ceiling):.0%} of that sum")


def speculative(target, draft, prompt, tokens) -> None:
    """Acceptance rate and speed-up of speculative decoding over the target alone.

    Two drafts: the target's own int8 copy (closely agrees with it, reads a quarter of the bytes) and the nano
    preset (with random weights it shares nothing with the target: the worst case, a lower bound).
    """
    from slm.infer.speculative import SpeculativeDecoder

    engine = Engine(target)
    drafts = {"int8 copy": quantize_int8(copy.deepcopy(target)), "nano": draft}
    for params in (SamplingParams(max_tokens=tokens, ignore_eos=True),
                   SamplingParams(max_tokens=tokens, ignore_eos=True, temperature=0.8, seed=0)):
        alone = best_of(lambda: engine.generate([prompt], params), 2)
        mode = "greedy" if params.greedy else "T=0.8"
        for label, d in drafts.items():
            if d.config.vocab_size != target.config.vocab_size:
                continue
            spec = SpeculativeDecoder(target, d, k=4)
            spec_time = best_of(lambda: spec.generate(prompt, params), 2)
            print(f"speculative, micro target, {label} draft, {mode}, k=4: acceptance {spec.stats.acceptance_rate:.0%}, "
                  f"{spec.stats.tokens_per_target_call:.2f} tokens/target call, speed-up {alone / spec_time:.2f}x "
                  f"({tokens / spec_time:.1f} vs {tokens / alone:.1f} tok/s)", flush=True)


if __name__ == "__main__":
    main()
