"""slm convert SRC DST: normalise an HF directory, or import a GGUF file (or a named real model) into one."""
from __future__ import annotations

import argparse


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="a local HF model directory (Llama or Phi family, safetensors weights), a "
                   "llama-architecture .gguf file, or a real model's name (smollm2-135m-instruct)")
    p.add_argument("output", help="the directory to write (replaced atomically if it exists)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None,
                   help="store the weights in this dtype (default: keep float32)")
    p.add_argument("--max-shard-gb", type=float, default=2.0, help="split the weights into shards of at most this size")
    p.add_argument("--tokenizer", default=None, help="take the tokenizer from here instead (e.g. a tokenizer.model dir)")
    p.set_defaults(func=convert)
    p.epilog = ("slm checkpoints already are HF directories; convert normalises one (dtype, sharding, a SentencePiece "
                "tokenizer.model turned into tokenizer.json) and verifies that it loads. A GGUF file is dequantized "
                "to float32 (F32, F16, BF16, Q8_0, Q4_0/1, Q5_0/1, K-quants), its q/k rows un-permuted and its "
                "tokenizer rebuilt from the file's metadata. The reverse is `slm export gguf`.")


def convert(args) -> int:
    import torch

    import slm
    from slm.models.gguf_import import is_gguf, read_gguf
    from slm.models.sources import REAL_MODELS, real_model_file
    from slm.tokenizer import load_tokenizer

    source = real_model_file(args.source) if args.source in REAL_MODELS else args.source
    # A GGUF file is read directly, not through slm.load's conversion cache: the output is the conversion.
    model, tok = read_gguf(source) if is_gguf(source) else slm.load(source)
    if args.tokenizer:
        tok = load_tokenizer(args.tokenizer)
    dtype = getattr(torch, args.dtype) if args.dtype else None
    slm.save(model, tok, args.output, dtype=dtype, max_shard_bytes=int(args.max_shard_gb * 1024**3))
    print(f"wrote {args.output} ({model.num_parameters() / 1e6:.1f}M parameters"
          f"{', ' + args.dtype if args.dtype else ''}{', with tokenizer' if tok is not None else ''})")
    return 0
