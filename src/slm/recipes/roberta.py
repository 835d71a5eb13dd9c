"""RoBERTa at CPU scale: the paper's pretraining ablations that fit a CPU, measured by held-out MLM perplexity and
by downstream accuracy after fine-tuning.

    slm recipe roberta                                      # recipes/roberta.yaml: 3 seeds, prints the table
    slm recipe roberta --config recipes/roberta-smoke.yaml  # seconds; the numbers mean nothing

Once: a byte-level BPE with RoBERTa's specials (<s> <pad> </s> <unk> <mask>) on the embedded corpus (stdlib
source) and its token shards (slm data prepare, 2% held out). Per seed and variant:
  1. pretrain a roberta-tiny-shaped encoder with `slm pretrain`'s objective: mlm (no NSP), one variant of
       dynamic-full   dynamic masking, FULL-SENTENCES blocks (RoBERTa)
       static-full    the static baseline: data duplicated `static_copies` times, each copy masked once
       dynamic-doc    dynamic masking, DOC-SENTENCES blocks (never across documents; shorter rows padded)
       none           no pretraining (the fine-tuning baseline)
  2. held-out MLM perplexity on one fixed evaluation set for every variant (FULL-SENTENCES blocks of the held-out
     split, masked once with a fixed seed), so the variants are compared on the same tokens and masks;
  3. fine-tune a classifier (slm finetune --task classify) on each embedded task and report test accuracy.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

DEFAULT_RECIPE = "recipes/roberta.yaml"
VARIANTS = {"dynamic-full": ("dynamic", "full"), "static-full": ("static", "full"), "dynamic-doc": ("dynamic", "doc"),
            "none": (None, None)}


@dataclass
class RobertaRecipeConfig:
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    out_dir: str = "runs/roberta"
    threads: int = 0  # torch CPU threads (0: torch's choice)
    corpus_files: int = 400  # stdlib files to pretrain on
    vocab_size: int = 4096
    model: dict = field(default_factory=lambda: dict(dim=128, n_layers=4, n_heads=4, ffn_dim=512))
    seq_len: int = 64  # tokens per row, <s> included
    pretrain: dict = field(default_factory=lambda: dict(steps=400, batch_size=32, lr=1e-3, warmup_steps=40))
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    static_copies: int = 10
    eval_batches: int = 40
    finetune: dict = field(default_factory=lambda: dict(steps=200, batch_size=32, lr=1e-3, warmup_steps=20))
    tasks: list[str] = field(default_factory=lambda: ["docstring-package", "docstring-signature"])


def prepare_data(cfg: RobertaRecipeConfig) -> Path:
    from slm.finetune.classify_data import write_task
    from slm.recipes.common import stdlib_shards

    root = Path(cfg.out_dir)
    data = stdlib_shards(root, cfg.corpus_files, cfg.vocab_size, "roberta-bpe")
    for task in cfg.tasks:
        for split in ("train", "test"):
            if not (root / "tasks" / f"{task}-{split}.jsonl").is_file():
                (root / "tasks").mkdir(parents=True, exist_ok=True)
                write_task(root / "tasks" / f"{task}-{split}.jsonl", task, split)
    return data


def pretrain(cfg: RobertaRecipeConfig, data: Path, variant: str, seed: int):
    from slm.config import build
    from slm.models import build_model, preset
    from slm.tokenizer import load_tokenizer
    from slm.train.pretrain import PretrainConfig, run

    masking, packing = VARIANTS[variant]
    out = Path(cfg.out_dir) / f"seed-{seed}" / variant
    if masking is None:  # no pretraining: the initialised model, saved as a checkpoint for the same fine-tuning
        import slm

        tok = load_tokenizer(data / "tokenizer")
        model = build_model(preset("roberta-tiny", vocab_size=len(tok), max_positions=cfg.seq_len + 2, **cfg.model))
        model.init_weights(seed)
        slm.save(model, tok, out / "init")
        return model, tok, out / "init"
    p = cfg.pretrain
    recipe = build(PretrainConfig, {
        "model": {"preset": "roberta-tiny", "config": dict(cfg.model, max_positions=cfg.seq_len + 2), "seed": seed},
        "data": {"dir": str(data), "seq_len": cfg.seq_len, "batch_size": p["batch_size"], "seed": seed},
        "objective": "mlm", "mlm": {"packing": packing, "masking": masking, "copies": cfg.static_copies, "seed": seed},
        "train": {"max_steps": p["steps"], "lr": p["lr"], "min_lr": p["lr"] / 10, "warmup_steps": p["warmup_steps"],
                  "weight_decay": 0.01, "betas": [0.9, 0.98], "eps": 1e-6, "grad_clip": 0.0, "seed": seed,
                  "eval_batches": 1, "progress": False, "log_every": max(1, p["steps"] // 10), "keep_last": 1},
        "out": str(out),
    })
    result = run(recipe)
    return result["model"], result["tokenizer"], Path(result["checkpoint"])


def heldout_perplexity(model, tokenizer, data: Path, cfg: RobertaRecipeConfig) -> float:
    """MLM perplexity on the held-out split: FULL-SENTENCES blocks, masked once with a fixed seed (the same
    tokens and masks for every variant)."""
    import torch

    from slm.objectives import MaskingConfig, MaskTokens, MLMBlockLoader, mlm_loss

    loader = MLMBlockLoader(data, "val", cfg.seq_len, 16, packing="full", epochs=1, shuffle=False, drop_last=False,
                            pad_id=tokenizer.pad_token_id)
    masker = MaskTokens(tokenizer, MaskingConfig(seed=12345))
    total = count = 0.0
    model.eval()
    with torch.no_grad():
        for i, batch in enumerate(loader):
            if i == cfg.eval_batches:
                break
            loss, n = mlm_loss(model, masker(batch))
            total, count = total + float(loss), count + float(n)
    return math.exp(total / max(count, 1.0))


def finetune_task(cfg: RobertaRecipeConfig, checkpoint: Path, task: str, seed: int, out: Path) -> dict:
    """`slm finetune --task classify` of the checkpoint on the task's training set (the recipe's settings)."""
    from slm.finetune.classify import ClassifyConfig, finetune_classifier

    f = cfg.finetune
    return finetune_classifier(ClassifyConfig(
        model=str(checkpoint), data=str(Path(cfg.out_dir) / "tasks" / f"{task}-train.jsonl"), out=str(out),
        batch_size=f["batch_size"], overlong="truncate", seed=seed,
        train={"max_steps": f["steps"], "lr": f["lr"], "min_lr": f["lr"] / 10, "warmup_steps": f["warmup_steps"],
               "progress": False, "keep_last": 1, "log_every": max(1, f["steps"] // 5)}), say=lambda *_: None)


def finetune_and_test(cfg: RobertaRecipeConfig, checkpoint: Path, task: str, seed: int, variant: str) -> float:
    from slm.finetune.classify import read_examples

    root = Path(cfg.out_dir)
    result = finetune_task(cfg, checkpoint, task, seed, root / f"seed-{seed}" / variant / task)
    test = read_examples(root / "tasks" / f"{task}-test.jsonl")
    return _accuracy_truncated(result["model"], result["tokenizer"], test)


def class_probabilities(model, tokenizer, examples):
    """[examples, labels] softmax probabilities, long texts cut to the model's length as in training."""
    import torch

    from slm.finetune.classify import collate, encode

    rows, _ = encode(examples, tokenizer, model.config.labels, model.config.max_seq_len, "truncate")
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(rows), 64):
            b = collate(rows[i:i + 64], tokenizer.pad_token_id)
            out.append(model(b["input_ids"], attention_mask=b["attention_mask"]).softmax(-1))
    return torch.cat(out)


def _accuracy_truncated(model, tokenizer, examples) -> float:
    """Test accuracy, long docstrings cut to the model's length as in training."""
    index = {name: i for i, name in enumerate(model.config.labels)}
    predicted = class_probabilities(model, tokenizer, examples).argmax(-1).tolist()
    return sum(p == index[e.label] for p, e in zip(predicted, examples)) / len(examples)


def run(cfg: RobertaRecipeConfig) -> dict:
    import torch

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    unknown = set(cfg.variants) - set(VARIANTS)
    if unknown:
        from slm.errors import ConfigError

        raise ConfigError(f"unknown variant(s) {sorted(unknown)}; choose from {list(VARIANTS)}")
    start = time.time()
    data = prepare_data(cfg)
    results: dict = {v: {"ppl": [], **{t: [] for t in cfg.tasks}} for v in cfg.variants}
    for seed in cfg.seeds:
        for variant in cfg.variants:
            t0 = time.time()
            model, tok, ckpt = pretrain(cfg, data, variant, seed)
            results[variant]["ppl"].append(heldout_perplexity(model, tok, data, cfg))
            for task in cfg.tasks:
                results[variant][task].append(finetune_and_test(cfg, ckpt, task, seed, variant))
            print(f"seed {seed} {variant}: held-out MLM perplexity {results[variant]['ppl'][-1]:.2f}; "
                  + ", ".join(f"{t} {results[variant][t][-1]:.3f}" for t in cfg.tasks)
                  + f" ({time.time() - t0:.0f}s)", flush=True)
    summary = {"config": asdict(cfg), "table": results, "seconds": time.time() - start,
               "date": time.strftime("%Y-%m-%d"), "threads": torch.get_num_threads()}
    from slm.io import atomic_write_text

    atomic_write_text(Path(cfg.out_dir) / "results.json", json.dumps(summary, indent=2) + "\n")
    return summary


def format_table(summary: dict) -> str:
    from slm.recipes.common import mean_sd as cell

    tasks = summary["config"]["tasks"]
    n = len(summary["config"]["seeds"])
    head = "| pretraining | held-out MLM ppl | " + " | ".join(f"{t} acc %" for t in tasks) + " |"
    lines = [f"RoBERTa ablations ({n} seed(s), mean ± sd)", head, "|---" * (2 + len(tasks)) + "|"]
    for variant, r in summary["table"].items():
        ppl = cell(r["ppl"], digits=2) if VARIANTS[variant][0] else "-"
        lines.append(f"| {variant} | {ppl} | " + " | ".join(cell(r[t], 100) for t in tasks) + " |")
    return "\n".join(lines)


def register(parser: argparse.ArgumentParser) -> None:
    from slm.cli.recipe import add_recipe_options, table_recipe_main

    add_recipe_options(parser, DEFAULT_RECIPE, "seeds=[0] --set pretrain.steps=100")
    parser.set_defaults(func=table_recipe_main(DEFAULT_RECIPE, RobertaRecipeConfig, run, format_table))
