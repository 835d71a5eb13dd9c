"""slm export gguf MODEL_DIR OUT.gguf"""
from __future__ import annotations

import argparse

from slm.cli import MODEL_SOURCE, add_subverbs


def register(p: argparse.ArgumentParser) -> None:
    add_subverbs(p, {
        "gguf": ("write a Llama-family checkpoint as one GGUF file for llama.cpp (weights, tokenizer, chat template)",
                 _register_gguf),
    })


def _register_gguf(p):
    p.add_argument("model", help=f"a Llama-family model: {MODEL_SOURCE}")
    p.add_argument("output", help="the .gguf file to write (replaced atomically if it exists)")
    p.add_argument("--dtype", choices=["f32", "f16", "q8_0"], default="f32",
                   help="storage of the weight matrices; norms always stay f32")
    p.add_argument("--tokenizer", default=None, help="take the tokenizer from this directory instead of the model's")
    p.add_argument("--check", action="store_true",
                   help="load the file in llama.cpp (needs llama-cpp-python) and compare its greedy tokens with slm's")
    p.add_argument("--prompt", action="append", default=None,
                   help="prompt for --check (repeatable; default: two short code prompts)")
    p.add_argument("--check-tokens", type=int, default=32, help="tokens to decode per prompt for --check")
    p.set_defaults(func=gguf)
    p.epilog = ("Llama family only (phi has no llama.cpp 'llama' layout). q/k rows are permuted to llama.cpp's "
                "interleaved rotary layout; --check reports whether llama.cpp reproduces slm's greedy tokens.")


def gguf(args) -> int:
    import slm
    from slm.export.gguf import export_gguf
    from slm.tokenizer import load_tokenizer

    model, tok = slm.load(args.model)
    if args.tokenizer:
        tok = load_tokenizer(args.tokenizer)
    path = export_gguf(model, tok, args.output, dtype=args.dtype)
    size = path.stat().st_size / 1e6
    print(f"wrote {path} ({size:.1f} MB, {args.dtype}, {model.num_parameters() / 1e6:.1f}M parameters)")
    if args.check:
        from slm.export.parity import compare_with_llamacpp

        prompts = args.prompt or ["def main(", "import os\n"]
        report = compare_with_llamacpp(model.eval(), tok, path, prompts, n_tokens=args.check_tokens)
        print(f"llama.cpp check: {report.summary()}")
        return 0 if report.all_match else 1
    return 0
