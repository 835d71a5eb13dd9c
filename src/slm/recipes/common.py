"""Pieces several recipes share: the embedded corpus as a tokenizer and token shards, pretraining and
fine-tuning runs with a recipe's few settings, and mean ± sd cells."""
from __future__ import annotations

import math
import statistics
from pathlib import Path


def stdlib_shards(root: Path, corpus_files: int, vocab_size: int, kind: str) -> Path:
    """root/tokenizer (a `kind` BPE trained on `corpus_files` stdlib files) and root/data (their shards, 2% held
    out), made once: a rerun finds them."""
    from slm.data.shards import prepare
    from slm.data.sources import iter_stdlib_texts, stdlib_documents
    from slm.tokenizer import save_tokenizer, train_tokenizer

    data = root / "data"
    if not (data / "index.json").is_file():
        tok = train_tokenizer(iter_stdlib_texts(corpus_files), vocab_size=vocab_size, kind=kind)
        save_tokenizer(tok, root / "tokenizer")
        prepare(stdlib_documents(corpus_files), root / "tokenizer", data, val_fraction=0.02, workers=1, progress=False)
    return data


def mean_sd(values, scale: float = 1.0, digits: int = 1) -> str:
    """'mean ± sd' over the seeds (NaNs, a value a row does not have, left out; '-' when none is left)."""
    values = [scale * v for v in values if not math.isnan(v)]
    if not values:
        return "-"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.{digits}f} ± {spread:.{digits}f}"


def pretrain_lm(data: Path, out: Path, *, seq_len: int, batch_size: int, steps: int, seed: int, lr: float,
                min_lr: float, warmup: int, model: dict | None = None, init_from: str | Path | None = None,
                objective: str = "causal", sections: dict | None = None, compile: bool = False) -> Path:
    """`slm pretrain` on prepared shards, quietly: a fresh `model` ({preset, config}) or a continuation of
    `init_from` (with its tokenizer); `sections` adds objective settings ({"ul2": {...}}). Returns the checkpoint."""
    from slm.config import build
    from slm.train.pretrain import PretrainConfig, run

    init = str(init_from) if init_from else None
    recipe = build(PretrainConfig, {
        "model": {"init_from": init, "preset": None} if init else dict(model, seed=seed),
        "tokenizer": init,
        "data": {"dir": str(data), "seq_len": seq_len, "batch_size": batch_size, "seed": seed},
        "objective": objective, **(sections or {}),
        "train": {"max_steps": steps, "lr": lr, "min_lr": min_lr, "warmup_steps": warmup, "seed": seed,
                  "compile": compile, "progress": False, "eval_batches": 4, "log_every": max(1, steps // 10),
                  "keep_last": 1},
        "out": str(out),
    })
    return Path(run(recipe)["checkpoint"])


def finetune_pairs(base: Path, data: Path, out: Path, settings: dict, seed: int, *, seq2seq: bool,
                   seq_len: int | None = None, overlong: str | None = "truncate", **train) -> Path:
    """`slm finetune` of `base` on a JSONL file (pairs for an encoder-decoder, prompt/completion or chats for a
    decoder), quietly: `settings` gives steps, lr, warmup_steps and batch_size; min_lr is lr / 10 and the log
    has five points unless `train` overrides them. Returns the checkpoint."""
    from slm.finetune.run import build_config, finetune

    steps, lr = settings["steps"], settings["lr"]
    data_section = {"path": str(data), "batch_size": settings["batch_size"], "seed": seed,
                    **({"overlong": overlong} if overlong else {}), **({"seq_len": seq_len} if seq_len else {})}
    ft_cfg, train_cfg = build_config({
        "model": str(base), "out": str(out), "data": data_section,
        "train": {"max_steps": steps, "lr": lr, "min_lr": lr / 10, "warmup_steps": settings["warmup_steps"],
                  "seed": seed, "progress": False, "keep_last": 1, "log_every": max(1, steps // 5), **train},
    })
    return Path(finetune(ft_cfg, train_cfg, say=lambda *_: None, task="seq2seq" if seq2seq else None)["checkpoint"])


def causal_base(root: Path, data: Path, base: dict, seq_len: int, batch_size: int) -> tuple[Path, int]:
    """(a trained causal LM, the tokens it was trained on): base["checkpoint"] when given, else the demo-style
    pretraining of base["preset"] for base["tokens"] (made once under root/base-pretrain: a rerun finds it)."""
    import math

    from slm.train.checkpoint import step_dir

    tokens = int(base["tokens"])
    if base.get("checkpoint"):
        return Path(base["checkpoint"]), tokens
    out = root / "base-pretrain"
    steps = math.ceil(tokens / (batch_size * seq_len))
    final = step_dir(out, steps)
    if (final / "config.json").is_file():
        return final, tokens
    model = {"preset": base["preset"], "config": dict({"max_seq_len": seq_len}, **base.get("config", {}))}
    return pretrain_lm(data, out, seq_len=seq_len, batch_size=batch_size, steps=steps, seed=0, lr=base["lr"],
                       min_lr=base["min_lr"], warmup=base["warmup_steps"], model=model,
                       compile=base.get("compile", False)), tokens


def stdlib_causal_base(root: Path, base: dict, corpus_files: int, vocab_size: int, seq_len: int) -> Path:
    """base["checkpoint"] when given, else causal_base on stdlib shards with a byte-level BPE, under root."""
    if base.get("checkpoint"):
        return Path(base["checkpoint"])
    data = stdlib_shards(root, corpus_files, vocab_size, "byte-bpe")
    return causal_base(root, data, base, seq_len, 8)[0]
