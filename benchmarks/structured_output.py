"""The per-token cost of structured output (llguidance masks through the engine's constraint hook).

    python benchmarks/structured_output.py                 # the real model (SmolLM2-135M), batch 1 and 8
    python benchmarks/structured_output.py --model DIR --tokens 48 --repeats 3

For each batch size: the time decoding spends in the constraint (mask fill and unpack, masking the scores,
accepting the token), timed inside the engine per row and token, beside the decoding step's own time per token
with no constraint. (Timing inside the run, rather than subtracting two runs, keeps the figure usable on a
shared machine.) With --compare-xgrammar (when xgrammar is installed), the two libraries'
mask times on one fixed token sequence, the measurement behind choosing llguidance (grammar.py).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

SCHEMA = {"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 40}, "age": {"type": "integer", "minimum": 0, "maximum": 120},
    "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "maxItems": 20}},
    "required": ["name", "age", "tags"]}


class Timed:
    """A constraint that adds the time spent in it to a shared counter."""

    def __init__(self, inner, spent: list):
        self.inner, self.spent = inner, spent

    def allowed(self, vocab_size):
        t = time.perf_counter()
        out = self.inner.allowed(vocab_size)
        self.spent[0] += time.perf_counter() - t
        return out

    def accept(self, token):
        t = time.perf_counter()
        self.inner.accept(token)
        self.spent[0] += time.perf_counter() - t

    @property
    def done(self):
        return self.inner.done


def decode_time(engine, prompts, params, constraints=None) -> tuple[float, int]:
    seqs = [engine.new_sequence(p, params, i) for i, p in enumerate(prompts)]
    for s in seqs:
        if constraints is not None:
            s.constraint = constraints()
    start = time.perf_counter()
    for _ in engine.steps(seqs):
        pass
    return time.perf_counter() - start, sum(len(s.output_ids) for s in seqs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compare-xgrammar", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from slm.infer import Engine, SamplingParams
    from slm.infer.server.grammar import Grammars, closed

    import llguidance

    engine = Engine.from_pretrained(args.model)
    grammar = llguidance.LLMatcher.grammar_from_json_schema(json.dumps(closed(SCHEMA)),
                                                            defaults={"whitespace_flexible": False})
    make = Grammars(engine.tokenizer).factory(grammar)
    # ignore_eos: unconstrained rows decode exactly --tokens tokens; constrained ones may close their JSON first.
    params = SamplingParams(max_tokens=args.tokens, temperature=0.0, ignore_eos=True)
    print(f"model {args.model}, {args.tokens} tokens per row, {args.threads} threads, best of {args.repeats}")
    print("| batch | decoding step, ms (no constraint) | constraint, ms per row and token | share of a step |")
    print("|---|---|---|---|")
    for batch in args.batch:
        prompts = [engine.tokenizer.encode(f"Person {i} as JSON:") for i in range(batch)]
        decode_time(engine, prompts, params)  # warm-up
        plain = min(decode_time(engine, prompts, params) for _ in range(args.repeats))
        per_step = plain[0] / (plain[1] / batch)
        best = None
        for _ in range(args.repeats):
            spent = [0.0]
            elapsed, tokens = decode_time(engine, prompts, params, lambda: Timed(make(), spent))
            per_token = spent[0] / tokens
            best = per_token if best is None else min(best, per_token)
        print(f"| {batch} | {1e3 * per_step:.1f} | {1e3 * best:.3f} | {100 * best * batch / per_step:.1f}% |",
              flush=True)
    if args.compare_xgrammar:
        compare(engine.tokenizer, args.repeats)


def compare(tokenizer, repeats: int) -> None:
    """Mask times of llguidance and xgrammar on one valid token sequence (no model)."""
    import llguidance
    import llguidance.hf
    import llguidance.torch as lt
    import xgrammar as xgr

    from slm.infer.server.grammar import closed

    text = '{"name":"Ann Lee","age":31,"tags":["a","b"]}'
    ids = tokenizer.encode(text, add_special_tokens=False)
    vocab = len(tokenizer)
    schema = json.dumps(closed(SCHEMA))

    def bench(make, fill, accept):
        times, compile_s = [], []
        for _ in range(repeats + 1):
            t = time.perf_counter()
            m = make()
            compile_s.append(time.perf_counter() - t)
            for token in ids:
                t = time.perf_counter()
                fill(m)
                times.append(time.perf_counter() - t)
                accept(m, token)
        return compile_s[0], statistics.median(compile_s[1:]), statistics.median(times)

    ltok = llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab)
    lmask = lt.allocate_token_bitmask(1, ltok.vocab_size)
    ll = bench(lambda: llguidance.LLMatcher(ltok, llguidance.LLMatcher.grammar_from_json_schema(
        schema, defaults={"whitespace_flexible": False})), lambda m: lt.fill_next_token_bitmask(m, lmask, 0),
        lambda m, t: m.consume_token(t))
    compiler = xgr.GrammarCompiler(xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab))
    xmask = xgr.allocate_token_bitmask(1, vocab)
    xg = bench(lambda: xgr.GrammarMatcher(compiler.compile_json_schema(schema, any_whitespace=False)),
               lambda m: m.fill_next_token_bitmask(xmask, 0), lambda m, t: m.accept_token(t))
    print(f"\nmask fill on {len(ids)} tokens of one schema, vocabulary {vocab}:")
    print("| library | first compile ms | later compile ms | fill µs/token (median) |")
    print("|---|---|---|---|")
    for name, (first, later, fill) in (("llguidance", ll), ("xgrammar", xg)):
        print(f"| {name} | {1e3 * first:.1f} | {1e3 * later:.2f} | {1e6 * fill:.0f} |")


if __name__ == "__main__":
    main()
