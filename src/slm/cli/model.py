"""slm model info|init"""
from __future__ import annotations

import argparse

from slm.cli import add_subverbs


def register(p: argparse.ArgumentParser) -> None:
    add_subverbs(p, {
        "info": ("parameters, memory and FLOPs per token of a preset or a checkpoint", _register_info),
        "init": ("write a freshly initialised model of a preset as an HF directory", _register_init),
        "presets": ("list the named presets", lambda q: q.set_defaults(func=presets)),
    })


def _register_info(p):
    p.add_argument("model", help="a preset name (see `slm model presets`) or a model directory")
    p.add_argument("--seq-len", type=int, default=None, help="sequence length for the attention FLOPs (default: max)")
    p.set_defaults(func=info)


def _register_init(p):
    p.add_argument("preset")
    p.add_argument("output")
    p.add_argument("--tokenizer", default=None, help="tokenizer directory; the vocab size follows it")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config fields, e.g. n_layers=2")
    p.set_defaults(func=init)


def resolve_config(spec: str, overrides: list[str] = ()):
    """A preset name or a model directory -> ModelConfig, with KEY=VALUE overrides applied."""
    import dataclasses
    from pathlib import Path

    from slm.config import apply_overrides, build
    from slm.errors import SlmError
    from slm.models import PRESETS, ModelConfig
    from slm.models.hf import read_config

    if Path(spec).is_dir():
        data = dataclasses.asdict(read_config(Path(spec)))
    elif spec in PRESETS:
        data = dict(PRESETS[spec])
    else:
        raise SlmError(f"{spec!r} is neither a model directory nor a preset; presets: {', '.join(PRESETS)}")
    return build(ModelConfig, apply_overrides(data, list(overrides)))


def info(args) -> int:
    from slm.models import flops_per_token, param_count

    cfg = resolve_config(args.model)
    n = param_count(cfg)
    n_body = param_count(cfg, exclude_embeddings=True)
    seq = args.seq_len or cfg.max_seq_len
    gib = 1024**3
    print(f"{args.model}: {cfg.arch}, {cfg.n_layers} layers, dim {cfg.dim}, {cfg.n_heads} heads "
          f"({cfg.n_kv_heads} KV), head_dim {cfg.head_dim}, ffn {cfg.ffn_dim}, vocab {cfg.vocab_size}, "
          f"context {cfg.max_seq_len}{', tied embeddings' if cfg.tie_embeddings else ''}")
    print(f"parameters:          {n:,} ({n / 1e6:.1f}M; {n_body / 1e6:.1f}M without the embedding)")
    print(f"weights fp32 / bf16: {n * 4 / gib:.2f} GiB / {n * 2 / gib:.2f} GiB")
    print(f"training state:      {n * 16 / gib:.2f} GiB (fp32 weights + grads + AdamW moments)")
    kv = 2 * cfg.n_layers * cfg.n_kv_heads * cfg.head_dim * 2
    print(f"KV cache bf16:       {kv / 1024:.1f} KiB per token, {kv * cfg.max_seq_len / 1024**2:.1f} MiB per full context")
    print(f"FLOPs per token:     {flops_per_token(cfg, seq, training=False) / 1e9:.3f} GFLOP forward, "
          f"{flops_per_token(cfg, seq) / 1e9:.3f} GFLOP training (seq {seq})")
    return 0


def init(args) -> int:
    import slm
    from slm.models import Decoder
    from slm.tokenizer import load_tokenizer

    overrides = list(args.set)
    tok = load_tokenizer(args.tokenizer) if args.tokenizer else None
    if tok is not None:
        overrides.append(f"vocab_size={len(tok)}")
    cfg = resolve_config(args.preset, overrides)
    model = Decoder(cfg).init_weights(seed=args.seed)
    slm.save(model, tok, args.output)
    print(f"wrote {args.preset} ({model.num_parameters() / 1e6:.1f}M parameters) to {args.output}")
    return 0


def presets(args) -> int:
    from slm.models import PRESETS, param_count, preset

    for name in PRESETS:
        print(f"{name:16} {param_count(preset(name)) / 1e6:9.1f}M")
    return 0
