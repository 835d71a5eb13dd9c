"""Batch-1 greedy decode: slm's engine vs llama.cpp (llama-cpp-python) on the same weights, next to the roofline.

    .venv/bin/python benchmarks/decode_llamacpp.py [--presets nano micro] [--tokens 128] [--threads 1]

For each preset (random weights of that shape; speed does not depend on the values) the model is exported to
GGUF f32 and q8_0 and decoded greedily by llama.cpp, and decoded by slm's Engine in fp32 and int8
(slm.infer.quant), all in this one run with the same thread count. Decode tokens/s =
(N - 1) / (time for N new tokens - time for 1) after a 16-token prompt, best of --repeats (the method of
benchmarks/decode.py, so the columns line up).
Roofline = measured memory bandwidth / weight bytes read per token. Needs llama-cpp-python (`make check-gguf`).
--real adds the real model (smollm2-135m-instruct, imported from its GGUF file): llama.cpp also runs the
original Q4_1 file, and transformers' generate runs the imported HF directory.
"""
from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

import slm
from slm.export import export_gguf
from slm.export.parity import llamacpp_greedy, load_llamacpp, slm_greedy
from slm.infer import Engine, SamplingParams
from slm.infer.quant import prepare_for_decoding, quantize_int8, weight_bytes

sys.path.insert(0, str(Path(__file__).parent))
from decode import hf_decode_tps, memory_bandwidth  # noqa: E402  (the same roofline denominator as the slm-vs-transformers table)


def gguf_bytes_per_token(path: Path) -> int:
    """Bytes of the tensors one token reads: all but token_embd, which counts only when it is also the output."""
    import gguf

    tensors = {t.name: int(t.n_bytes) for t in gguf.GGUFReader(path).tensors}
    if "output.weight" in tensors:
        tensors.pop("token_embd.weight")
    return sum(tensors.values())


def decode_rate(generate, n_tokens: int, repeats: int) -> float:
    """Tokens/s of the decode steps alone: prefill and first token are timed separately and subtracted."""
    def best(n):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            generate(n)
            times.append(time.perf_counter() - t0)
        return min(times)

    generate(2)  # warm-up (allocations, thread pools, caches)
    return (n_tokens - 1) / (best(n_tokens) - best(1))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="*", default=["nano", "micro"])
    ap.add_argument("--real", action="store_true", help="also the real model (SmolLM2-135M-Instruct)")
    ap.add_argument("--tokens", type=int, default=128, help="new tokens per generate call")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1,
                    help="threads for both torch and llama.cpp (1: on a shared machine spinning threads only queue)")
    args = ap.parse_args(argv)
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        print("llama-cpp-python is not installed: run `make check-gguf` first", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    bandwidth = memory_bandwidth()
    print(f"memory bandwidth (1 GiB sum): {bandwidth / 1e9:.1f} GB/s; threads {args.threads}; "
          f"prompt 16 tokens, {args.tokens} new tokens, best of {args.repeats}")
    from slm.data.sources import iter_stdlib_texts

    tok = slm.train_tokenizer(list(iter_stdlib_texts(10)), vocab_size=1024, kind="byte-bpe")
    prompt = list(range(100, 116))
    models = [(name, lambda name=name: slm.models.Decoder(slm.preset(name)).init_weights(0).eval(), tok, None)
              for name in args.presets]
    if args.real:
        from slm.models.sources import real_model_file, resolve_model_path

        directory = resolve_model_path("smollm2-135m-instruct")
        models.append(("smollm2-135m", lambda: slm.load(directory)[0], slm.load(directory)[1],
                       (directory, real_model_file("smollm2-135m-instruct"))))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, build, tok, real in models:
            model, int8 = build(), quantize_int8(build())
            # The compiled step (slm generate --compile: the C++ step, fp32 or int8),
            # built and compiled here, before the timings.
            compiled = Engine(prepare_for_decoding(copy.deepcopy(model), compile=True), compile=True)
            compiled_int8 = Engine(prepare_for_decoding(copy.deepcopy(model), int8=True, compile=True),
                                   compile=True)
            compiled.warm_up()
            compiled_int8.warm_up()
            greedy = SamplingParams(ignore_eos=True)
            runs = [("slm fp32", lambda n, m=model: slm_greedy(m, prompt, n), weight_bytes(model)),
                    ("slm fp32 compiled", lambda n, e=compiled: e.generate([prompt], replace(greedy, max_tokens=n)),
                     weight_bytes(model)),
                    ("slm int8", lambda n, m=int8: slm_greedy(m, prompt, n), weight_bytes(int8)),
                    ("slm int8 compiled",
                     lambda n, e=compiled_int8: e.generate([prompt], replace(greedy, max_tokens=n)),
                     weight_bytes(int8))]
            for dtype in ("f32", "q8_0"):
                path = export_gguf(model, tok, Path(tmp) / f"{name}-{dtype}.gguf", dtype=dtype)
                llm = load_llamacpp(path, n_ctx=len(prompt) + args.tokens + 1, n_threads=args.threads)
                runs.append((f"llama.cpp {dtype}", lambda n, m=llm: llamacpp_greedy(m, prompt, n),
                             gguf_bytes_per_token(path)))
            if real is not None:
                from transformers import AutoModelForCausalLM

                directory, original = real
                llm = load_llamacpp(original, n_ctx=len(prompt) + args.tokens + 1, n_threads=args.threads)
                runs.append(("llama.cpp Q4_1", lambda n, m=llm: llamacpp_greedy(m, prompt, n),
                             gguf_bytes_per_token(original)))
                hf = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
                rate = hf_decode_tps(hf, prompt, args.tokens, args.repeats)
                rows.append((name, "transformers generate", rate, weight_bytes(model), bandwidth / weight_bytes(model)))
                print(f"  {name:6s} {'transformers':16s} {rate:8.1f} tok/s", flush=True)
            for label, generate, nbytes in runs:
                rate = decode_rate(generate, args.tokens, args.repeats)
                rows.append((name, label, rate, nbytes, bandwidth / nbytes))
                print(f"  {name:6s} {label:16s} {rate:8.1f} tok/s", flush=True)
    print("\n| model | engine | tok/s | weight MB/token | roofline tok/s | % of roofline | vs slm fp32 |")
    print("|---|---|---|---|---|---|---|")
    for name, label, tps, nbytes, roof in rows:
        base = next(r[2] for r in rows if r[0] == name and r[1] == "slm fp32")
        print(f"| {name} | {label} | {tps:.0f} | {nbytes / 1e6:.1f} | {roof:.0f} | {tps / roof:.0%} | {tps / base:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
