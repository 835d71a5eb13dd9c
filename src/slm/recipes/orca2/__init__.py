"""Orca 2 at CPU scale: a teacher answers each task family under the instruction of the strategy that suits it,
and a small student learns from the answers with the instructions erased, in progressive stages.

    slm recipe orca2                                     # recipes/orca2.yaml: scripted and real-model teacher, 3 seeds
    slm recipe orca2 --config recipes/orca2-smoke.yaml   # seconds; the numbers mean nothing

  prompts   strategies, task families with their detailed instructions (prompts.yaml, user files add more),
            prompt erasure, the cautious system message, which strategy an answer shows
  families  the built-in families (arithmetic, lookup, recall, compare) and their checkers
  data      teacher answers, validated, as erased / kept / single-strategy training chats; the scripted teacher
  stages    progressive SFT stages (each resumable) and the held-out evaluation

Once: the families' items (train and held out, disjoint), a causal base (slm.recipes.common.causal_base, the
demo's nano on stdlib shards, or base.checkpoint), and per teacher (scripted: correct answers in each strategy;
local: the real model through slm serve; endpoint) its answers under each family's instruction and under the
single strategy's, cached. Per teacher, variant and seed: the stages of SFT (ChatML, loss on the teacher's
tokens, packed), then greedy answers to the held-out items under each evaluation system message: accuracy and
strategy match (the answer shows the family's strategy) per family.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from slm.recipes.orca2.stages import FinetuneSection
from slm.teach.settings import TeacherSection

DEFAULT_RECIPE = "recipes/orca2.yaml"


@dataclass
class Orca2RecipeConfig:
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    out_dir: str = "runs/orca2"
    threads: int = 0
    teachers: list[str] = field(default_factory=lambda: ["scripted", "local"])  # kinds; endpoint reads `teacher`
    teacher: TeacherSection = field(default_factory=TeacherSection)
    prompts: list[str] = field(default_factory=list)  # user prompts files over the packaged prompts.yaml
    families: list[str] | None = None  # None: every family of the prompts
    variants: list[str] = field(default_factory=lambda: ["erased", "kept", "single"])
    single_strategy: str = "step-by-step"
    train_per_family: int = 200
    eval_per_family: int = 40
    function_files: int = 300  # stdlib files the recall family's functions come from
    teacher_max_tokens: int = 96
    stages: list[dict] = field(default_factory=lambda: [dict(name="direct", families=["lookup"], steps=40),
                                                        dict(name="mixed", families=None, steps=160)])
    finetune: FinetuneSection = field(default_factory=FinetuneSection)
    eval_systems: list[str] = field(default_factory=lambda: ["generic", "cautious"])
    eval_max_tokens: int = 64
    corpus_files: int = 400
    vocab_size: int = 4096
    base: dict = field(default_factory=lambda: dict(checkpoint=None, preset="nano", config={}, tokens=1_500_000,
                                                    lr=2e-3, min_lr=2e-4, warmup_steps=30, compile=True))
    base_seq_len: int = 256


def student_base(cfg: Orca2RecipeConfig) -> Path:
    from slm.recipes.common import stdlib_causal_base

    return stdlib_causal_base(Path(cfg.out_dir) / "base", cfg.base, cfg.corpus_files, cfg.vocab_size,
                              cfg.base_seq_len)


def items(cfg: Orca2RecipeConfig, prompts) -> tuple[dict, dict]:
    from slm.errors import ConfigError
    from slm.recipes.orca2.families import family_items, split_items

    names = cfg.families or list(prompts.families)
    unknown = set(names) - set(prompts.families)
    if unknown:
        raise ConfigError(f"unknown families {sorted(unknown)}; the prompts define {', '.join(prompts.families)}")
    split = {n: split_items(family_items(prompts.families[n].source, cfg.train_per_family + cfg.eval_per_family,
                                         seed=0, files=cfg.function_files), cfg.eval_per_family) for n in names}
    return {n: s[0] for n, s in split.items()}, {n: s[1] for n, s in split.items()}


def taught(cfg: Orca2RecipeConfig, kind: str, prompts, train: dict, root: Path) -> dict:
    """{"family": answers under the family instructions, "single": under the single strategy's instruction}."""
    from slm.recipes.orca2.data import scripted_answers, teach
    from slm.teach.settings import open_teacher

    section = TeacherSection(**{**asdict(cfg.teacher), "kind": kind})
    with open_teacher(section, cache=root / f"teacher-{kind}.sqlite", scripted=scripted_answers(prompts, train)) as t:
        out = {"family": teach(t, prompts, train, None, cfg.teacher_max_tokens, progress=True)}
        if "single" in cfg.variants:
            out["single"] = teach(t, prompts, train, cfg.single_strategy, cfg.teacher_max_tokens, progress=True)
    return out


def family_records(prompts, train: dict, answers: dict, variant: str, single: str) -> tuple[dict, dict]:
    from slm.recipes.orca2.data import training_records

    records, counts = {}, {}
    for name in train:
        records[name], c = training_records(prompts, {name: train[name]}, {name: answers[name]}, variant, single)
        counts.update(c)
    return records, counts


def run(cfg: Orca2RecipeConfig) -> dict:
    import torch

    from slm.config import build
    from slm.errors import ConfigError
    from slm.recipes.orca2.data import VARIANTS
    from slm.recipes.orca2.prompts import load_prompts
    from slm.recipes.orca2.stages import Stage, evaluate_student, train_stages

    unknown = set(cfg.variants) - set(VARIANTS)
    if unknown:
        raise ConfigError(f"unknown variants {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    start, root = time.time(), Path(cfg.out_dir)
    root.mkdir(parents=True, exist_ok=True)
    prompts = load_prompts(cfg.prompts)
    if cfg.single_strategy not in prompts.strategies:
        raise ConfigError(f"single_strategy {cfg.single_strategy!r} is not a strategy: {', '.join(prompts.strategies)}")
    stages = [build(Stage, s, "stages") for s in cfg.stages]
    train, held_out = items(cfg, prompts)
    base = student_base(cfg)
    summary = {"config": asdict(cfg), "strategies": {n: prompts.families[n].strategy for n in train},
               "teachers": {}, "table": {}}
    for kind in cfg.teachers:
        answers = taught(cfg, kind, prompts, train, root)
        _, teacher_counts = family_records(prompts, train, answers["family"], "erased", cfg.single_strategy)
        summary["teachers"][kind] = teacher_counts
        for seed in cfg.seeds:
            for variant in cfg.variants:
                t0 = time.time()
                records, _ = family_records(prompts, train, answers["single" if variant == "single" else "family"],
                                            variant, cfg.single_strategy)
                final = train_stages(base, stages, records, root / kind / f"seed-{seed}" / variant, seed, cfg.finetune)
                for system in cfg.eval_systems:
                    scores = evaluate_student(final, prompts, held_out, system, cfg.eval_max_tokens)
                    summary["table"].setdefault(kind, {}).setdefault(f"{variant} / {system}", []).append(scores)
                    print(f"{kind} teacher, seed {seed}, {variant}, {system} system: " + ", ".join(
                        f"{n} acc {s['accuracy']:.2f} match {s['strategy_match']:.2f}" for n, s in scores.items())
                        + f" ({time.time() - t0:.0f}s)", flush=True)
                _save(summary, start)  # after every student: an interrupted run keeps its rows
    return _save(summary, start)


def _save(summary: dict, start: float) -> dict:
    import torch

    from slm.io import atomic_write_text

    summary.update(seconds=time.time() - start, date=time.strftime("%Y-%m-%d"), threads=torch.get_num_threads())
    atomic_write_text(Path(summary["config"]["out_dir"]) / "results.json", json.dumps(summary, indent=2) + "\n")
    return summary


def format_table(summary: dict) -> str:
    from slm.recipes.common import mean_sd

    families = list(summary["strategies"])
    lines = []
    for kind, rows in summary["table"].items():
        n = len(next(iter(rows.values())))
        lines += [f"Orca 2, {kind} teacher: held-out accuracy % / strategy match % ({n} seed(s), mean ± sd)",
                  "| student / system | " + " | ".join(f"{f} ({summary['strategies'][f]})" for f in families)
                  + " | mean |", "|---" * (len(families) + 2) + "|"]
        for row, runs in rows.items():
            cells = [f"{mean_sd([r[f]['accuracy'] for r in runs], 100)} / "
                     f"{mean_sd([r[f]['strategy_match'] for r in runs], 100)}" for f in families]
            acc = [statistics.fmean(r[f]["accuracy"] for f in families) for r in runs]
            match = [statistics.fmean(r[f]["strategy_match"] for f in families) for r in runs]
            lines.append(f"| {row} | " + " | ".join(cells) + f" | {mean_sd(acc, 100)} / {mean_sd(match, 100)} |")
        t = summary["teachers"][kind]
        lines.append(f"{kind} teacher's answers (correct / in the family's strategy, of asked): " + ", ".join(
            f"{f} {c['correct']}/{c['shows_strategy']}/{c['answers']}" for f, c in t.items()))
    return "\n".join(lines)


def register(parser: argparse.ArgumentParser) -> None:
    from slm.cli.recipe import add_recipe_options, table_recipe_main

    add_recipe_options(parser, DEFAULT_RECIPE, "teachers=[scripted] --set seeds=[0]")
    parser.set_defaults(func=table_recipe_main(DEFAULT_RECIPE, Orca2RecipeConfig, run, format_table))
