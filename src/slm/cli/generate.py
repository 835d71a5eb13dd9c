"""slm generate DIR --prompt TEXT: complete prompts with a model directory (batched, optionally streamed).

The model/sampling option helpers here are shared with `slm chat` and `slm serve`.
"""
from __future__ import annotations

import argparse

from slm.cli import MODEL_SOURCE


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help=f"{MODEL_SOURCE} (with tokenizer files), or a composition YAML (slm.compose)")
    p.add_argument("--int8", action="store_true",
                   help="quantize every linear weight, the LM head included, to int8 per output channel at load "
                        "(the embedding table stays float)")
    p.add_argument("--compile", nargs="?", const=True, default=False, choices=[True, "native", "inductor"],
                   metavar="native|inductor",
                   help="decode one-row batches through a compiled step: slm's C++ step for fp32 or int8 "
                        "Llama-family models on CPU (built once, about 40 s), otherwise one torch.export + inductor "
                        "graph per cache length (seconds each, a minute or more the first time); either needs a "
                        "C++ compiler on CPU. A value picks one; combines with --int8")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")


def add_sampling_args(p: argparse.ArgumentParser, max_tokens: int = 128) -> None:
    p.add_argument("--max-tokens", type=int, default=max_tokens, help="tokens to generate at most")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--top-k", type=int, default=0, help="keep the k most likely tokens (0 = off)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (1 = off)")
    p.add_argument("--min-p", type=float, default=0.0, help="drop tokens below min_p x the top probability (0 = off)")
    p.add_argument("--repetition-penalty", type=float, default=1.0, help="HF-style penalty on seen tokens (1 = off)")
    p.add_argument("--stop", action="append", default=[], metavar="TEXT", help="stop string (repeatable)")
    p.add_argument("--seed", type=int, default=None, help="random seed for sampling")


def load_engine(args, warm_up: bool = False, **engine_kwargs):
    """The engine the options ask for. warm_up: with --compile, compile every decoding graph now (chat and
    serve, which run long enough to reach them all, would otherwise stall the first time a length is reached)."""
    import torch

    from slm.infer import Engine

    if args.threads:
        torch.set_num_threads(args.threads)
    engine = Engine.from_pretrained(args.model, int8=args.int8, compile=args.compile, **engine_kwargs)
    if engine.tokenizer is None:
        from slm.errors import SlmError

        raise SlmError(f"{args.model} has no tokenizer files; text generation needs one")
    if warm_up and args.compile:
        engine.warm_up(progress=True)
    return engine


def sampling_params(args, **extra):
    from slm.infer import SamplingParams

    return SamplingParams(max_tokens=args.max_tokens, temperature=args.temperature, top_k=args.top_k,
                          top_p=args.top_p, min_p=args.min_p, repetition_penalty=args.repetition_penalty,
                          stop=list(args.stop), seed=args.seed, **extra)


def register(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    p.add_argument("--prompt", action="append", default=[], help="a prompt (repeatable: prompts run as one batch)")
    p.add_argument("--prompt-file", default=None, help="a file of prompts, one JSON string or plain line per line")
    add_sampling_args(p)
    p.add_argument("--stream", action="store_true", help="print tokens as they come (one prompt)")
    p.add_argument("--draft", default=None, help="a draft model directory: speculative decoding (one prompt)")
    p.add_argument("--draft-k", type=int, default=4, help="draft tokens per speculative round")
    p.add_argument("--json", action="store_true", help="print one JSON object per prompt")
    g = p.add_argument_group("beam search (transformers' semantics; decoders and encoder-decoders)")
    g.add_argument("--num-beams", type=int, default=1, help="beams per prompt (1 = sampling as above)")
    g.add_argument("--length-penalty", type=float, default=1.0,
                   help="scores are summed log-probabilities / length ** this (> 0 favours longer outputs)")
    g.add_argument("--early-stopping", choices=["true", "false", "never"], default="false",
                   help="true: stop when num-beams hypotheses are done; false: when none can improve (heuristic); "
                        "never: the exact search")
    g.add_argument("--num-return-sequences", type=int, default=1, help="the n best hypotheses to print per prompt")
    p.add_argument("--infill", action="store_true",
                   help="each prompt is a text with gaps marked <gap>: fill them greedily with a UL2-trained model "
                        "(slm recipe ul2r; slm.infer.infill) and print the filled text")
    p.set_defaults(func=run)


def _read_prompts(args) -> list[str]:
    import json
    from pathlib import Path

    from slm.errors import SlmError

    prompts = list(args.prompt)
    if args.prompt_file:
        for line in Path(args.prompt_file).read_text().splitlines():
            if line.strip():
                try:
                    value = json.loads(line)
                except json.JSONDecodeError:
                    value = line
                prompts.append(value if isinstance(value, str) else line)
    if not prompts:
        raise SlmError("give at least one --prompt or a --prompt-file")
    return prompts


def run(args) -> int:
    import json
    import sys
    import time

    from slm.errors import SlmError

    prompts = _read_prompts(args)
    if args.infill:
        return _infill(args, prompts)
    if (args.stream or args.draft) and len(prompts) != 1:
        raise SlmError("--stream and --draft take exactly one prompt")
    engine = load_engine(args)
    if args.num_beams != 1 or args.num_return_sequences != 1:
        return _beam(args, engine, prompts)
    params = sampling_params(args)
    start = time.perf_counter()
    if args.draft:
        import slm
        from slm.infer.speculative import SpeculativeDecoder

        draft, _ = slm.load(args.draft)
        if args.int8:
            from slm.infer.quant import quantize_int8

            quantize_int8(draft)
        spec = SpeculativeDecoder(engine.model, draft, engine.tokenizer, k=args.draft_k)
        completions = [spec.generate(prompts[0], params)]
        print(f"[speculative: acceptance {spec.stats.acceptance_rate:.0%}, "
              f"{spec.stats.tokens_per_target_call:.2f} tokens per target call]", file=sys.stderr)
    elif args.stream:
        sys.stdout.write(prompts[0])
        for event in engine.stream(prompts[0], params):
            sys.stdout.write(event.text)
            sys.stdout.flush()
        sys.stdout.write("\n")
        return 0
    else:
        completions = engine.generate(prompts, params)
    elapsed = time.perf_counter() - start
    for prompt, c in zip(prompts, completions):
        if args.json:
            print(json.dumps({"prompt": prompt, "text": c.text, "finish_reason": c.finish_reason,
                              "completion_tokens": len(c.token_ids)}))
        else:
            print(prompt + c.text)
            if len(prompts) > 1:
                print("-" * 40)
    n = sum(len(c.token_ids) for c in completions)
    print(f"[{n} tokens in {elapsed:.2f}s: {n / max(elapsed, 1e-9):.1f} tokens/s]", file=sys.stderr)
    return 0


def _beam(args, engine, prompts) -> int:
    import json
    import sys

    from slm.errors import SlmError
    from slm.infer.beam import BeamParams

    if args.stream or args.draft or args.temperature > 0:
        raise SlmError("--num-beams searches deterministically: drop --stream, --draft and --temperature")
    early = {"true": True, "false": False, "never": "never"}[args.early_stopping]
    params = BeamParams(num_beams=args.num_beams, max_tokens=args.max_tokens, length_penalty=args.length_penalty,
                        early_stopping=early, num_return_sequences=args.num_return_sequences)
    for prompt, hyps in zip(prompts, engine.beam_search(prompts, params)):
        if args.json:
            print(json.dumps({"prompt": prompt, "beams": [{"text": h.text, "score": h.score,
                              "finish_reason": h.finish_reason} for h in hyps]}))
            continue
        for rank, h in enumerate(hyps, 1):
            print(f"[{rank}] score {h.score:.4f}: {h.text}")
        if len(prompts) > 1:
            print("-" * 40)
    print(f"[beam search: {args.num_beams} beams over {len(prompts)} prompt(s)]", file=sys.stderr)
    return 0


def _infill(args, prompts) -> int:
    import json

    import slm
    from slm.errors import SlmError
    from slm.infer.infill import infill

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    model, tokenizer = slm.load(args.model)
    if tokenizer is None:
        raise SlmError(f"{args.model}: no tokenizer files next to the weights")
    model.eval()
    for prompt in prompts:
        result = infill(model, tokenizer, prompt, max_tokens=args.max_tokens)
        print(json.dumps({"prompt": prompt, **result}) if args.json else result["text"])
    return 0
