"""FLAN at CPU scale: instruction-tune a small decoder and a small T5 on the embedded task collection with one
cluster held out, and score them zero-shot on the held-out cluster's tasks.

    slm recipe flan                                    # recipes/flan.yaml: 3 seeds, the table
    slm recipe flan --config recipes/flan-smoke.yaml   # seconds; the numbers mean nothing

Once: the stdlib task collection (slm.instruct.collection: 21 tasks, 7 clusters, 4-7 templates each), and per
model kind a pretrained base: a causal nano on stdlib shards (as the demo trains it) and a t5-tiny pretrained
with span corruption (slm recipe t5's stage). Per held-out cluster (FLAN's rules: slm.instruct.splits), model
kind and seed, instruction tuning through `slm finetune` (decoders: ChatML, the loss on the answer; T5: input/
target pairs) on examples drawn from the mixture (slm.instruct.mixture: examples-proportional with a cap, zero-/
few-shot and options variants equally weighted) for these variants:
  base              no tuning;
  single-template   every training task, each phrased by its first template only;
  multi-template    every training task, every template (FLAN);
  tasks-1/3, -2/3   multi-template on a nested third / two thirds of the training tasks (task scaling).
Scoring: every held-out example through every non-turned template, zero-shot, through `slm eval`: rank
classification over the options (with the OPTIONS list shown), greedy exact match (the last number for CoT
tasks) or Rouge-L; a cluster's score is the mean of its tasks' scores.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

DEFAULT_RECIPE = "recipes/flan.yaml"
VARIANTS = ("base", "single-template", "multi-template", "tasks-1/3", "tasks-2/3")
TASK_FRACTIONS = {"tasks-1/3": 1 / 3, "tasks-2/3": 2 / 3}


@dataclass
class FlanRecipeConfig:
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    out_dir: str = "runs/flan"
    threads: int = 0
    models: list[str] = field(default_factory=lambda: ["decoder", "t5"])
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    held_out: list[str] = field(default_factory=lambda: ["nli", "cloze"])
    collection: dict = field(default_factory=lambda: dict(files=300, per_task=1500))
    user_tasks: list[str] = field(default_factory=list)  # task YAMLs (slm.instruct.tasks.load_user_task)
    cap: int = 3000
    train_examples: int = 2000
    eval_per_task: int = 30
    shots: int = 1
    # the decoder: a causal base (slm.recipes.common.causal_base) and its SFT
    corpus_files: int = 400
    vocab_size: int = 4096
    decoder_base: dict = field(default_factory=lambda: dict(
        checkpoint=None, preset="nano", config={}, tokens=1_500_000, lr=2e-3, min_lr=2e-4,
        warmup_steps=30, compile=True))
    decoder_seq_len: int = 256
    # the T5: slm recipe t5's pretraining stage, settings as in T5RecipeConfig
    t5: dict = field(default_factory=lambda: dict(
        model=dict(dim=128, n_layers=2, n_heads=4, head_dim=32, ffn_dim=256), inputs_length=128,
        pretrain=dict(steps=400, batch_size=16, lr=1e-3, warmup_steps=40)))
    finetune: dict = field(default_factory=lambda: dict(steps=100, batch_size=8, lr=1e-3, warmup_steps=10,
                                                        seq_len=256))
    max_tokens: int = 32


# ------------------------------------------------------------------------------------------------ bases
def decoder_base(cfg: FlanRecipeConfig) -> Path:
    from slm.recipes.common import stdlib_causal_base

    return stdlib_causal_base(Path(cfg.out_dir) / "decoder", cfg.decoder_base, cfg.corpus_files, cfg.vocab_size,
                              cfg.decoder_seq_len)


def t5_base(cfg: FlanRecipeConfig) -> Path:
    from slm.config import build
    from slm.recipes import t5

    t5_cfg = build(t5.T5RecipeConfig, dict(cfg.t5, out_dir=str(Path(cfg.out_dir) / "t5"), seeds=[0],
                                           corpus_files=cfg.corpus_files, vocab_size=cfg.vocab_size))
    from slm.train.checkpoint import step_dir

    data = t5.prepare_data(t5_cfg)
    final = step_dir(Path(t5_cfg.out_dir) / "seed-0" / "pretrain", t5_cfg.pretrain["steps"])  # a rerun finds it
    return final if (final / "config.json").is_file() else t5.pretrain(t5_cfg, data, seed=0)[0]


# ------------------------------------------------------------------------------------------------ data
def collection(cfg: FlanRecipeConfig):
    from slm.instruct.collection import stdlib_collection
    from slm.instruct.tasks import load_user_task

    c = stdlib_collection(**cfg.collection)
    for path in cfg.user_tasks:
        c.add(load_user_task(path))
    return c


def training_file(cfg: FlanRecipeConfig, tasks, variant: str, seed: int, kind: str, out: Path) -> Path:
    """The drawn training examples as `slm finetune` reads them: chats for a decoder, pairs for T5."""
    from slm.instruct.mixture import MixOptions, draw
    from slm.io import atomic_write_jsonl

    drawn = draw(tasks, cfg.train_examples, MixOptions(seed=seed, cap=cfg.cap, shots=cfg.shots,
                                                       single_template=variant == "single-template"))
    if kind == "t5":
        records = [{"input": d.input, "target": d.target} for d in drawn]
    else:
        records = [{"messages": [{"role": "user", "content": d.input}, {"role": "assistant", "content": d.target}]}
                   for d in drawn]
    return atomic_write_jsonl(out, records)


def eval_files(cfg: FlanRecipeConfig, tasks, names: list[str], tokenizer, kind: str, root: Path) -> list:
    """One slm eval task per held-out task: every example x non-turned template, zero-shot, with options."""
    from slm.eval.tasks import TaskSpec
    from slm.instruct.tasks import render
    from slm.io import atomic_write_jsonl

    specs = []
    for name in names:
        task = tasks.tasks[name]
        docs = []
        for index in range(min(cfg.eval_per_task, len(task.examples))):
            for template in task.eval_templates:
                r = render(task, index, template, seed=10_000)  # a rendering seed no training draw uses
                prompt = r.input if kind == "t5" else tokenizer.apply_chat_template(
                    [{"role": "user", "content": r.input}], tokenize=False, add_generation_prompt=True)
                doc = {"prompt": prompt, "answer": r.answer}
                if task.metric == "rank_classification":
                    doc.update(choices=list(r.options), label=r.options.index(r.answer))
                docs.append(doc)
        path = root / f"eval-{kind}-{name}.jsonl"
        atomic_write_jsonl(path, docs)
        common = dict(name=name, data=str(path), doc_to_text="{{prompt}}", target_delimiter="")
        if task.metric == "rank_classification":
            specs.append((TaskSpec(kind="multiple_choice", doc_to_target="{{label}}", choices="choices", **common),
                          "acc"))
        else:
            stop = [] if kind == "t5" else ["<|im_end|>"]  # T5 ends at </s>; CoT targets span lines
            extract = "last_number" if task.cot_field else "none"
            specs.append((TaskSpec(kind="generate", doc_to_target="{{answer}}", max_tokens=cfg.max_tokens, stop=stop,
                                   extract=extract, **common),
                          "rougeL" if task.metric == "rougeL" else "exact_match"))
    return specs


# ------------------------------------------------------------------------------------------------ train, score
def tune(cfg: FlanRecipeConfig, base: Path, data: Path, out: Path, seed: int, kind: str) -> Path:
    from slm.recipes.common import finetune_pairs

    return finetune_pairs(base, data, out, cfg.finetune, seed, seq2seq=kind == "t5",
                          seq_len=None if kind == "t5" else cfg.finetune["seq_len"])


def score(checkpoint: Path, specs: list) -> dict[str, float]:
    import slm
    from slm.eval.harness import evaluate

    model, tokenizer = slm.load(checkpoint)
    results = evaluate(model, tokenizer, [s for s, _ in specs], batch_size=16)
    return {s.name: results[s.name][metric] for s, metric in specs}


def run(cfg: FlanRecipeConfig) -> dict:
    import statistics

    import torch

    import slm
    from slm.errors import ConfigError
    from slm.instruct.splits import held_out_split, task_subset

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    for name, allowed in (("variants", VARIANTS), ("models", ("decoder", "t5"))):
        unknown = set(getattr(cfg, name)) - set(allowed)
        if unknown:
            raise ConfigError(f"unknown {name} {sorted(unknown)}; choose from {', '.join(allowed)}")
    start = time.time()
    root = Path(cfg.out_dir)
    tasks = collection(cfg)
    bases = {kind: (decoder_base if kind == "decoder" else t5_base)(cfg) for kind in cfg.models}
    table: dict = {}
    for cluster in cfg.held_out:
        train_names, eval_names = held_out_split(tasks, cluster)
        for kind in cfg.models:
            _, tokenizer = slm.load(bases[kind])
            specs = eval_files(cfg, tasks, eval_names, tokenizer, kind, root)
            rows = table.setdefault(f"{cluster}/{kind}", {})
            base_scores = score(bases[kind], specs) if "base" in cfg.variants else None
            for seed in cfg.seeds:
                for variant in cfg.variants:
                    t0 = time.time()
                    if variant == "base":
                        scores = base_scores
                    else:
                        names = task_subset(train_names, TASK_FRACTIONS.get(variant, 1.0), seed)
                        out = root / f"seed-{seed}" / cluster / kind / variant.replace("/", "of")
                        out.mkdir(parents=True, exist_ok=True)
                        data = training_file(cfg, tasks.subset(names), variant, seed, kind, out / "train.jsonl")
                        scores = score(tune(cfg, bases[kind], data, out, seed, kind), specs)
                    mean = statistics.fmean(scores.values())
                    rows.setdefault(variant, []).append({"cluster_score": mean, "tasks": scores})
                    print(f"held out {cluster}, {kind}, seed {seed}, {variant}: {mean:.3f} "
                          f"({', '.join(f'{k} {v:.3f}' for k, v in scores.items())}; {time.time() - t0:.0f}s)",
                          flush=True)
                    _save(cfg, table, tasks, start)  # after every run: an interrupted one keeps its rows
    return _save(cfg, table, tasks, start)


def _save(cfg: FlanRecipeConfig, table: dict, tasks, start: float) -> dict:
    import torch

    from slm.io import atomic_write_text

    summary = {"config": asdict(cfg), "table": table, "seconds": time.time() - start,
               "clusters": tasks.clusters, "date": time.strftime("%Y-%m-%d"), "threads": torch.get_num_threads()}
    atomic_write_text(Path(cfg.out_dir) / "results.json", json.dumps(summary, indent=2) + "\n")
    return summary


def format_table(summary: dict) -> str:
    from slm.recipes.common import mean_sd

    n = len(summary["config"]["seeds"])
    variants = summary["config"]["variants"]
    lines = [f"FLAN: zero-shot score on the held-out cluster ({n} seed(s), mean ± sd, %)",
             "| held out / model | " + " | ".join(variants) + " |", "|---" * (len(variants) + 1) + "|"]
    for key, rows in summary["table"].items():
        cells = [mean_sd([r["cluster_score"] for r in rows.get(v, [])], 100) for v in variants]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def register(parser: argparse.ArgumentParser) -> None:
    from slm.cli.recipe import add_recipe_options, table_recipe_main

    add_recipe_options(parser, DEFAULT_RECIPE, "seeds=[0] --set held_out=[read_comp]")
    parser.set_defaults(func=table_recipe_main(DEFAULT_RECIPE, FlanRecipeConfig, run, format_table))
