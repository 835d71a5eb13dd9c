"""`slm recipe supericl`: a fine-tuned small encoder as a plug-in inside a language model's in-context prompt.

    slm recipe supericl                                        # recipes/supericl.yaml: the real model served locally
    slm recipe supericl --set llm.kind=endpoint --set llm.base_url=http://host/v1 --set llm.model=NAME
    slm recipe supericl --config recipes/supericl-smoke.yaml   # seconds: a scripted LLM; the numbers mean nothing

Per seed: the plug-in is the RoBERTa recipe's encoder (dynamic-masking MLM pretraining on the embedded corpus,
then `slm finetune --task classify` on the task's full training set); it labels the in-context examples (k drawn
from the training set) and every test item, with its softmax confidence. The LLM (slm.teach: `slm serve` on the
real model by default, any OpenAI-compatible endpoint by flag) then answers each test item under each variant:
plain in-context learning (no plug-in lines), SuperICL, and the paper's three ablations. Reported per task:
accuracy of the plug-in alone and of each variant, how often the LLM named no label, and for SuperICL the
override rate and accuracy per plug-in confidence bin (slm.compose.supericl).
"""
from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

DEFAULT_RECIPE = "recipes/supericl.yaml"
# The embedded tasks' text fields, named as the paper names GLUE's (slm.finetune.classify_data).
TASK_FIELDS = {"docstring-package": ("Docstring",), "docstring-signature": ("Docstring", "Signature")}
VARIANTS = {  # name: (plug-in lines shown, ablation)
    "icl": (False, {}),
    "supericl": (True, {}),
    "no-test-prediction": (True, {"test_prediction": False}),
    "no-confidence": (True, {"confidence": False}),
    "no-context": (True, {"context": False}),
}


@dataclass
class SuperICLRecipeConfig:
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    out_dir: str = "runs/supericl"
    threads: int = 0
    tasks: list[str] = field(default_factory=lambda: list(TASK_FIELDS))
    plugin: dict = field(default_factory=lambda: dict(
        corpus_files=400, vocab_size=4096, model=dict(dim=128, n_layers=4, n_heads=4, ffn_dim=512), seq_len=64,
        pretrain=dict(steps=400, batch_size=32, lr=1e-3, warmup_steps=40),
        finetune=dict(steps=200, batch_size=32, lr=1e-3, warmup_steps=20)))
    plugin_name: str = "RoBERTa"
    k: int = 8  # in-context examples (the paper: 32 for GLUE, with a 4,096-token model)
    test_items: int = 60  # per task, the same ones for every variant
    max_prompt_tokens: int = 1800  # in words; examples are dropped from the end beyond it
    constrained: bool = False  # ask the server for one of the labels (guided_regex)
    explain: bool = True
    llm: dict = field(default_factory=lambda: dict(kind="local"))  # slm.teach.settings.TeacherSection
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))


def train_plugin(cfg: SuperICLRecipeConfig, seed: int):
    """The RoBERTa recipe's pretrain + classify fine-tune, one model per task; {task: (model, tokenizer)}."""
    from slm.recipes.roberta import RobertaRecipeConfig, finetune_task, prepare_data, pretrain

    p = cfg.plugin
    rcfg = RobertaRecipeConfig(seeds=[seed], out_dir=str(Path(cfg.out_dir) / "plugin"), threads=cfg.threads,
                               corpus_files=p["corpus_files"], vocab_size=p["vocab_size"], model=p["model"],
                               seq_len=p["seq_len"], pretrain=p["pretrain"], finetune=p["finetune"], tasks=cfg.tasks)
    data = prepare_data(rcfg)
    _, _, checkpoint = pretrain(rcfg, data, "dynamic-full", seed)
    models = {}
    for task in cfg.tasks:
        result = finetune_task(rcfg, checkpoint, task, seed, Path(cfg.out_dir) / f"seed-{seed}" / f"plugin-{task}")
        models[task] = (result["model"], result["tokenizer"])
    return models, Path(rcfg.out_dir) / "tasks"


def plugin_predictions(model, tokenizer, examples: list) -> list:
    """The plug-in's label and softmax confidence for each example."""
    from slm.compose.supericl import Prediction
    from slm.recipes.roberta import class_probabilities

    conf, index = class_probabilities(model, tokenizer, examples).max(-1)
    return [Prediction(model.config.labels[j], float(c)) for j, c in zip(index.tolist(), conf.tolist())]


def _item(example, task: str):
    """A classify Example as a prompt Item (whitespace folded: a docstring's line breaks would split fields)."""
    from slm.compose.supericl import Item

    texts = (example.text,) + ((example.text_pair or "",) if len(TASK_FIELDS[task]) == 2 else ())
    return Item(tuple(" ".join(t.split()) for t in texts), str(example.label))


def simulated_llm(body: dict) -> str:
    """The smoke run's scripted LLM: follows the plug-in line of the test block, else the first label shown."""
    import re

    test = body["prompt"].rsplit("\n\n", 1)[-1]
    shown = re.search(r"Prediction: (\S+)", test) or re.search(r"Label: (\S+)", body["prompt"])
    return shown.group(1) if shown else "none"


def run_task(cfg: SuperICLRecipeConfig, teacher, task: str, model, tokenizer, tasks_dir: Path, seed: int) -> dict:
    from slm.compose.supericl import Ablation, SuperICL, confidence_bins
    from slm.finetune.classify import read_examples

    train = read_examples(tasks_dir / f"{task}-train.jsonl")
    test = read_examples(tasks_dir / f"{task}-test.jsonl")
    r = random.Random(seed)
    shots = r.sample(train, min(cfg.k, len(train)))
    tests = random.Random(1234).sample(test, min(cfg.test_items, len(test)))  # the same items for every seed
    labels = list(model.config.labels)
    context = list(zip([_item(e, task) for e in shots], plugin_predictions(model, tokenizer, shots)))
    items, preds = [_item(e, task) for e in tests], plugin_predictions(model, tokenizer, tests)
    golds = [it.label for it in items]
    result = {"n": len(items), "plugin": sum(p.label == g for p, g in zip(preds, golds)) / len(items)}
    for name in cfg.variants:
        show, ablation = VARIANTS[name]
        sicl = SuperICL(teacher, TASK_FIELDS[task], labels, plugin_name=cfg.plugin_name, plugin=show,
                        ablation=Ablation(**ablation), explain=cfg.explain and name == "supericl",
                        constrained=cfg.constrained, max_prompt_tokens=cfg.max_prompt_tokens, seed=seed)
        outcomes = list(teacher.map(lambda pair: sicl.classify(context, *pair), zip(items, preds)))
        result[name] = sum(o.label == g for o, g in zip(outcomes, golds)) / len(items)
        result[f"{name}_unparsed"] = sum(o.label is None for o in outcomes) / len(items)
        if name == "supericl":
            result["override_rate"] = sum(o.overrode for o in outcomes) / len(items)
            result["bins"] = confidence_bins(outcomes, golds)
            result["examples"] = [{"prompt_tail": o.prompt[-300:], "completion": o.completion, "gold": g,
                                   "explanation": o.explanation} for o, g in zip(outcomes[:3], golds)]
    return result


def run(cfg: SuperICLRecipeConfig) -> dict:
    import torch

    from slm.errors import ConfigError
    from slm.io import atomic_write_text
    from slm.teach.settings import TeacherSection, open_teacher

    unknown = sorted(set(cfg.variants) - set(VARIANTS)) + sorted(set(cfg.tasks) - set(TASK_FIELDS))
    if unknown:
        raise ConfigError(f"unknown variant(s) or task(s) {unknown}; variants: {', '.join(VARIANTS)}; "
                          f"tasks: {', '.join(TASK_FIELDS)}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    start, root = time.time(), Path(cfg.out_dir)
    root.mkdir(parents=True, exist_ok=True)
    table: dict = {task: [] for task in cfg.tasks}
    plugins = {seed: train_plugin(cfg, seed) for seed in cfg.seeds}  # before the LLM server takes the cores
    section = TeacherSection(**cfg.llm)
    with open_teacher(section, cache=root / "llm.sqlite", scripted=simulated_llm) as teacher:
        for seed in cfg.seeds:
            models, tasks_dir = plugins[seed]
            for task in cfg.tasks:
                t0 = time.time()
                row = run_task(cfg, teacher, task, *models[task], tasks_dir, seed)
                table[task].append(row)
                print(f"supericl seed {seed} {task}: plug-in {row['plugin']:.3f}, "
                      + ", ".join(f"{v} {row[v]:.3f}" for v in cfg.variants) + f" ({time.time() - t0:.0f}s)",
                      flush=True)
    summary = {"config": asdict(cfg), "llm": section.kind if section.kind != "endpoint" else section.model,
               "table": table, "seconds": time.time() - start, "date": time.strftime("%Y-%m-%d")}
    atomic_write_text(root / "results.json", json.dumps(summary, indent=2) + "\n")
    return summary


def format_table(summary: dict) -> str:
    from slm.recipes.common import mean_sd

    variants = summary["config"]["variants"]
    n = len(summary["config"]["seeds"])
    lines = [f"SuperICL: accuracy % ({n} seed(s), mean ± sd), LLM {summary['llm']}",
             "| task | plug-in | " + " | ".join(variants) + " | SuperICL overrides % |",
             "|---" * (3 + len(variants)) + "|"]
    for task, runs in summary["table"].items():
        cells = [mean_sd([r["plugin"] for r in runs], 100)] + [mean_sd([r[v] for r in runs], 100) for v in variants]
        overrides = mean_sd([r["override_rate"] for r in runs if "override_rate" in r], 100)
        lines.append(f"| {task} | " + " | ".join(cells) + f" | {overrides} |")
    for task, runs in summary["table"].items():
        for b in (runs[0].get("bins") or []):
            if b["n"]:
                acc = "-" if b["override_accuracy"] is None else f"{100 * b['override_accuracy']:.0f}%"
                lines.append(f"{task} seed {summary['config']['seeds'][0]}, plug-in confidence {b['bin']}: {b['n']} "
                             f"items, plug-in right {100 * b['plugin_accuracy']:.0f}%, overridden "
                             f"{100 * b['override_rate']:.0f}% (overrides right: {acc})")
    return "\n".join(lines)


def register(parser: argparse.ArgumentParser) -> None:
    from slm.cli.recipe import add_recipe_options, table_recipe_main

    add_recipe_options(parser, DEFAULT_RECIPE, "seeds=[0] --set test_items=20")
    parser.set_defaults(func=table_recipe_main(DEFAULT_RECIPE, SuperICLRecipeConfig, run, format_table))
