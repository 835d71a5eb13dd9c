"""T5 at CPU scale: span-corruption pretraining on the embedded corpus, then seq2seq SFT on a small local
instruction set, as the shared base the FLAME, SLaDe, FLAN and UL2 recipes start from.

    slm recipe t5                                      # recipes/t5.yaml: 3 seeds, prints the table
    slm recipe t5 --config recipes/t5-smoke.yaml       # seconds; the numbers mean nothing

Once: a T5-layout byte-level BPE (tokenizer kind t5-bpe: <pad> </s> <unk>, 100 sentinels at the top) on stdlib
source, its token shards (slm data prepare, 2% held out), and the instruction set: five word-level tasks
(reverse, sort, first and last word, count) written as `input -> target` pairs over identifiers of the corpus,
with the test pairs drawn from words that no training pair uses. Per seed:
  1. pretrain a t5-tiny-shaped encoder-decoder with `slm pretrain`'s objective span_corruption (T5's noise:
     density 0.15, mean span 3), and report the held-out span-corruption loss;
  2. fine-tune it with `slm finetune` on the pairs (the family makes it seq2seq), and the same from a fresh init
     (the no-pretraining baseline);
  3. greedy answers to the test pairs through `slm eval`'s generate task: exact match and Rouge-L.
"""
from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

DEFAULT_RECIPE = "recipes/t5.yaml"
TASKS = {
    "reverse": lambda w: " ".join(reversed(w)),
    "sort": lambda w: " ".join(sorted(w)),
    "first": lambda w: w[0],
    "last": lambda w: w[-1],
    "count": lambda w: str(len(w)),
}


@dataclass
class T5RecipeConfig:
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    out_dir: str = "runs/t5"
    threads: int = 0  # torch CPU threads (0: torch's choice)
    corpus_files: int = 400
    vocab_size: int = 4096
    model: dict = field(default_factory=lambda: dict(dim=128, n_layers=2, n_heads=4, head_dim=32, ffn_dim=256))
    inputs_length: int = 128  # encoder tokens per pretraining row
    span: dict = field(default_factory=lambda: dict(noise_density=0.15, mean_span=3.0))
    pretrain: dict = field(default_factory=lambda: dict(steps=400, batch_size=16, lr=1e-3, warmup_steps=40))
    train_pairs: int = 2000
    test_pairs: int = 200
    words: tuple[int, int] = (2, 5)  # words per instruction
    finetune: dict = field(default_factory=lambda: dict(steps=300, batch_size=32, lr=1e-3, warmup_steps=30))
    max_tokens: int = 24
    variants: list[str] = field(default_factory=lambda: ["span-corruption", "none"])


def _vocabulary(cfg: T5RecipeConfig) -> list[str]:
    import re

    from slm.data.sources import iter_stdlib_texts

    words = set()
    for text in iter_stdlib_texts(cfg.corpus_files):
        words.update(w for w in re.findall(r"\b[a-z]{3,8}\b", text))
    return sorted(words)


def instruction_pairs(vocabulary: list[str], n: int, words: tuple[int, int], seed: str) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        task = list(TASKS)[i % len(TASKS)]
        picked = rng.sample(vocabulary, rng.randint(*words))
        out.append({"input": f"{task}: {' '.join(picked)}", "target": TASKS[task](picked), "task": task})
    return out


def prepare_data(cfg: T5RecipeConfig) -> Path:
    from slm.io import atomic_write_text
    from slm.recipes.common import stdlib_shards

    root = Path(cfg.out_dir)
    data = stdlib_shards(root, cfg.corpus_files, cfg.vocab_size, "t5-bpe")
    if not (root / "pairs-test.jsonl").is_file():
        vocabulary = _vocabulary(cfg)
        random.Random("slm-t5-words").shuffle(vocabulary)
        held_out = max(len(vocabulary) // 5, cfg.words[1])  # test words never appear in training pairs
        for split, words, n in (("train", vocabulary[held_out:], cfg.train_pairs),
                                ("test", vocabulary[:held_out], cfg.test_pairs)):
            pairs = instruction_pairs(words, n, cfg.words, f"slm-t5-{split}")
            atomic_write_text(root / f"pairs-{split}.jsonl", "".join(json.dumps(p) + "\n" for p in pairs))
    return data


def pretrain(cfg: T5RecipeConfig, data: Path, seed: int) -> tuple[Path, float]:
    from slm.config import build
    from slm.train.pretrain import PretrainConfig, run

    p = cfg.pretrain
    out = Path(cfg.out_dir) / f"seed-{seed}" / "pretrain"
    recipe = build(PretrainConfig, {
        "model": {"preset": "t5-tiny", "config": dict(cfg.model, dropout=0.0), "seed": seed},
        "data": {"dir": str(data), "seq_len": cfg.inputs_length, "batch_size": p["batch_size"], "seed": seed},
        "objective": "span_corruption", "span": dict(cfg.span, seed=seed),
        "train": {"max_steps": p["steps"], "lr": p["lr"], "min_lr": p["lr"] / 10, "warmup_steps": p["warmup_steps"],
                  "weight_decay": 0.0, "seed": seed, "eval_batches": 8, "progress": False,
                  "log_every": max(1, p["steps"] // 10), "keep_last": 1},
        "out": str(out),
    })
    result = run(recipe)
    return Path(result["checkpoint"]), float(result.get("val_loss", float("nan")))


def fresh_model(cfg: T5RecipeConfig, data: Path, seed: int) -> Path:
    import slm
    from slm.models import build_model, preset
    from slm.tokenizer import load_tokenizer

    tok = load_tokenizer(Path(cfg.out_dir) / "tokenizer")
    model = build_model(preset("t5-tiny", vocab_size=len(tok), **dict(cfg.model, dropout=0.0))).init_weights(seed)
    return slm.save(model, tok, Path(cfg.out_dir) / f"seed-{seed}" / "init")


def finetune(cfg: T5RecipeConfig, checkpoint: Path, seed: int, variant: str) -> Path:
    from slm.recipes.common import finetune_pairs

    root = Path(cfg.out_dir)
    return finetune_pairs(checkpoint, root / "pairs-train.jsonl", root / f"seed-{seed}" / f"sft-{variant}",
                          cfg.finetune, seed, seq2seq=True, overlong=None)


def evaluate(cfg: T5RecipeConfig, checkpoint: Path) -> dict:
    import slm
    from slm.eval.harness import evaluate as run_eval
    from slm.eval.tasks import TaskSpec

    model, tok = slm.load(checkpoint)
    task = TaskSpec(name="instructions", kind="generate", data=str(Path(cfg.out_dir) / "pairs-test.jsonl"),
                    doc_to_text="{{input}}", doc_to_target="{{target}}", max_tokens=cfg.max_tokens, stop=[])
    return run_eval(model, tok, [task], batch_size=32)["instructions"]


def run(cfg: T5RecipeConfig) -> dict:
    import torch

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    unknown = set(cfg.variants) - {"span-corruption", "none"}
    if unknown:
        from slm.errors import ConfigError

        raise ConfigError(f"unknown variant(s) {sorted(unknown)}; choose from span-corruption, none")
    start = time.time()
    data = prepare_data(cfg)
    table: dict = {v: {"val_loss": [], "exact_match": [], "rougeL": []} for v in cfg.variants}
    for seed in cfg.seeds:
        for variant in cfg.variants:
            t0 = time.time()
            if variant == "none":
                base, val_loss = fresh_model(cfg, data, seed), float("nan")
            else:
                base, val_loss = pretrain(cfg, data, seed)
            scores = evaluate(cfg, finetune(cfg, base, seed, variant))
            row = table[variant]
            row["val_loss"].append(val_loss)
            row["exact_match"].append(scores["exact_match"])
            row["rougeL"].append(scores["rougeL"])
            print(f"seed {seed} {variant}: span-corruption val loss {val_loss:.3f}; exact match "
                  f"{scores['exact_match']:.3f}, Rouge-L {scores['rougeL']:.3f} ({time.time() - t0:.0f}s)", flush=True)
    summary = {"config": asdict(cfg), "table": table, "seconds": time.time() - start,
               "date": time.strftime("%Y-%m-%d"), "threads": torch.get_num_threads()}
    from slm.io import atomic_write_text

    atomic_write_text(Path(cfg.out_dir) / "results.json", json.dumps(summary, indent=2) + "\n")
    return summary


def format_table(summary: dict) -> str:
    from slm.recipes.common import mean_sd as cell  # the no-pretraining row has no pretraining loss: "-"

    n = len(summary["config"]["seeds"])
    lines = [f"T5 base: span corruption then instruction SFT ({n} seed(s), mean ± sd)",
             "| pretraining | held-out span-corruption loss | exact match % | Rouge-L % |", "|---|---|---|---|"]
    for variant, r in summary["table"].items():
        lines.append(f"| {variant} | {cell(r['val_loss'], digits=3)} | {cell(r['exact_match'], 100)} | "
                     f"{cell(r['rougeL'], 100)} |")
    return "\n".join(lines)


def register(parser: argparse.ArgumentParser) -> None:
    from slm.cli.recipe import add_recipe_options, table_recipe_main

    add_recipe_options(parser, DEFAULT_RECIPE, "seeds=[0] --set pretrain.steps=100")
    parser.set_defaults(func=table_recipe_main(DEFAULT_RECIPE, T5RecipeConfig, run, format_table))
