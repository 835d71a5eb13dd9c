"""slm tokenizer train|encode|info"""
from __future__ import annotations

import argparse

from slm.cli import add_subverbs


def register(p: argparse.ArgumentParser) -> None:
    add_subverbs(p, {
        "train": ("train a BPE tokenizer on text files, folders, or the embedded stdlib corpus", _register_train),
        "encode": ("show the ids and pieces a tokenizer gives for a text", _register_encode),
        "info": ("print a tokenizer's vocabulary size and special tokens", _register_info),
    })


def _register_train(p):
    p.add_argument("output", help="directory to write tokenizer.json and tokenizer_config.json into")
    p.add_argument("--input", nargs="*", default=[], metavar="PATH",
                   help="text files or folders (all files below are read); none means the embedded stdlib corpus")
    p.add_argument("--vocab-size", type=int, default=8192)
    p.add_argument("--kind", choices=["byte-bpe", "llama-bpe"], default="byte-bpe",
                   help="byte-bpe: GPT-2/LiteLlama style; llama-bpe: Llama-2 style with <0xNN> byte fallback")
    p.add_argument("--min-frequency", type=int, default=2)
    p.add_argument("--limit-files", type=int, default=None, help="read at most this many files (quick trials)")
    p.set_defaults(func=train)


def _register_encode(p):
    p.add_argument("tokenizer", help="directory holding the tokenizer (or a model directory)")
    p.add_argument("text")
    p.set_defaults(func=encode)


def _register_info(p):
    p.add_argument("tokenizer", help="directory holding the tokenizer (or a model directory)")
    p.set_defaults(func=info)


def _texts(inputs, limit):
    from pathlib import Path

    from slm.data.sources import iter_stdlib_texts
    from slm.errors import SlmError

    if not inputs:
        yield from iter_stdlib_texts(limit)
        return
    files = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files += sorted(f for f in path.rglob("*") if f.is_file())
        elif path.is_file():
            files.append(path)
        else:
            raise SlmError(f"input not found: {path}")
    for f in files[:limit]:
        yield f.read_text(encoding="utf-8", errors="replace")


def train(args) -> int:
    from slm.tokenizer import save_tokenizer, train_tokenizer

    tok = train_tokenizer(_texts(args.input, args.limit_files), vocab_size=args.vocab_size, kind=args.kind,
                          min_frequency=args.min_frequency, show_progress=True)
    save_tokenizer(tok, args.output)
    print(f"wrote a {args.kind} tokenizer with {len(tok)} tokens to {args.output}")
    return 0


def encode(args) -> int:
    from slm.tokenizer import load_tokenizer

    tok = load_tokenizer(args.tokenizer)
    ids = tok.encode(args.text)
    print("ids:   ", ids)
    print("pieces:", tok.convert_ids_to_tokens(ids))
    print("decode:", repr(tok.decode(ids)))
    return 0


def info(args) -> int:
    from slm.tokenizer import load_tokenizer

    tok = load_tokenizer(args.tokenizer)
    print(f"class:      {type(tok).__name__}")
    print(f"vocab size: {len(tok)}")
    for name in ("bos", "eos", "pad", "unk"):
        print(f"{name + ':':11} {getattr(tok, name + '_token')!r} (id {getattr(tok, name + '_token_id')})")
    print(f"chat template: {'yes' if tok.chat_template else 'no'}")
    return 0
