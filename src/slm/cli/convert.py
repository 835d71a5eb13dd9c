"""slm convert SRC DST"""
from __future__ import annotations

import argparse


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="a local HF model directory (Llama or Phi family, safetensors weights)")
    p.add_argument("output", help="the directory to write (replaced atomically if it exists)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None,
                   help="store the weights in this dtype (default: keep float32)")
    p.add_argument("--max-shard-gb", type=float, default=2.0, help="split the weights into shards of at most this size")
    p.add_argument("--tokenizer", default=None, help="take the tokenizer from here instead (e.g. a tokenizer.model dir)")
    p.set_defaults(func=convert)
    p.epilog = ("slm checkpoints already are HF directories; convert normalises one (dtype, sharding, a SentencePiece "
                "tokenizer.model turned into tokenizer.json) and verifies that it loads. GGUF is `slm export gguf`.")


def convert(args) -> int:
    import torch

    import slm
    from slm.tokenizer import load_tokenizer

    model, tok = slm.load(args.source)
    if args.tokenizer:
        tok = load_tokenizer(args.tokenizer)
    dtype = getattr(torch, args.dtype) if args.dtype else None
    slm.save(model, tok, args.output, dtype=dtype, max_shard_bytes=int(args.max_shard_gb * 1024**3))
    print(f"wrote {args.output} ({model.num_parameters() / 1e6:.1f}M parameters"
          f"{', ' + args.dtype if args.dtype else ''}{', with tokenizer' if tok is not None else ''})")
    return 0
