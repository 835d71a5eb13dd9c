"""The PET recipe's run: one pretrained MLM, then per seed and label count the CLS-head baseline, the zero-shot
patterns, PET (patterns x repetitions), its ensemble and distilled classifier, and iPET's generations."""
from __future__ import annotations

import json
import random
import shutil
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from slm.errors import ConfigError
from slm.finetune.pet.train import PETTrainConfig
from slm.recipes.pet.data import BUILTIN_PVPS, TASKS


@dataclass
class MLMStage:
    """The masked LM every model starts from (pretrained once, shared by every seed and label count)."""
    vocab_size: int = 1000
    documents: int = 20000  # synthetic-sentiment: corpus reviews; docstring tasks: stdlib files (up to 400)
    model: dict = field(default_factory=lambda: dict(dim=64, n_layers=2, n_heads=4, ffn_dim=256, dropout=0.0,
                                                     attn_dropout=0.0))
    seq_len: int = 48
    packing: str = "doc"  # doc: one review per row (a tiny model does not find its review in packed rows)
    steps: int = 6000
    batch_size: int = 32
    lr: float = 1e-3
    warmup_steps: int = 100
    seed: int = 0
    verdict_fraction: float = 1.0  # synthetic corpus: the share of reviews followed by a verdict
    agreement: float = 0.9  # synthetic corpus: how often a clause agrees with its review's sentiment


@dataclass
class StageConfig:
    steps: int = 100
    batch_size: int = 16
    lr: float = 1e-4


@dataclass
class IPETConfig:
    generations: int = 3  # generation 0 is PET itself
    scale: float = 5.0  # d: the training set grows |T| d^j
    fraction: float = 0.25  # lambda: the share of the other models that label each model's data
    zero_shot: bool = False  # also run zero-shot iPET (no labels: generation 1 from untrained pattern models)
    n_most_likely: int = 100  # zero-shot: each label's examples drawn from its 100 most likely


@dataclass
class PETRecipeConfig:
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    out_dir: str = "runs/pet"
    threads: int = 0
    task: str = "synthetic-sentiment"
    data: dict = field(default_factory=dict)  # task jsonl: train, test, optional unlabeled (JSONL paths)
    patterns: str = ""  # a PVP YAML file (slm.finetune.pet.pvp.load_pvps); default: the task's built-in PVPs
    model: str = ""  # an MLM checkpoint to start from; default: pretrain one (mlm)
    mlm: MLMStage = field(default_factory=MLMStage)
    labels: list[int] = field(default_factory=lambda: [8, 16, 32])  # labelled examples per run
    unlabeled: int = 1000  # unlabelled examples (the rest of the train split, capped)
    test: int = 1000  # test examples (capped)
    max_len: int = 64
    repetitions: int = 3  # seeds per pattern
    reduction: str = "wmean"
    temperature: float = 2.0
    pet: PETTrainConfig = field(default_factory=lambda: PETTrainConfig(steps=100, batch_size=8, lr=1e-4))
    cls: StageConfig = field(default_factory=lambda: StageConfig(steps=100, batch_size=8, lr=1e-4))
    distill: StageConfig = field(default_factory=lambda: StageConfig(steps=200, batch_size=16, lr=1e-4))
    ipet: IPETConfig = field(default_factory=IPETConfig)
    keep_models: bool = False  # keep every trained model's checkpoint (many); default: only the MLM

    def __post_init__(self):
        if self.task not in TASKS:
            raise ConfigError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.task == "jsonl" and not (self.data.get("train") and self.data.get("test") and self.patterns):
            raise ConfigError("task jsonl needs data.train, data.test (JSONL files) and patterns (a YAML file)")
        if self.reduction not in ("mean", "wmean"):
            raise ConfigError(f"reduction must be mean or wmean, got {self.reduction!r}")
        if not self.labels or min(self.labels) < 1:
            raise ConfigError("labels must list positive labelled-set sizes, e.g. [8, 16, 32]")
        if self.repetitions < 1 or self.ipet.generations < 1:
            raise ConfigError("repetitions and ipet.generations must be at least 1")


ROWS = ["CLS head", "zero-shot pattern", "PET single pattern", "PET ensemble", "PET distilled"]


def _examples(records, where: str):
    from slm.finetune.classify import Example

    return [Example(r["text"], r.get("label"), r.get("text_pair"), f"{where}:{i}") for i, r in enumerate(records, 1)]


def _read_jsonl(path: str, need_label: bool):
    from slm.errors import SlmError
    from slm.finetune.classify import read_examples

    if need_label:
        return read_examples(path)
    from slm.io import iter_jsonl

    p = Path(path)
    rows = []
    for where, row in iter_jsonl(p, what="unlabelled data"):
        if not row.get("text"):
            raise SlmError(f"{where}: expected a JSON object with a 'text' field")
        rows.append(row)
    return _examples([{**r, "label": None} for r in rows], str(p))


def load_task(cfg: PETRecipeConfig):
    """(train pool, test, extra unlabelled examples)."""
    if cfg.task == "synthetic-sentiment":
        from slm.recipes.pet.data import sentiment_examples

        return (_examples(sentiment_examples("train", max(cfg.labels) + cfg.unlabeled), "train"),
                _examples(sentiment_examples("test", cfg.test), "test"), [])
    if cfg.task == "jsonl":
        extra = _read_jsonl(cfg.data["unlabeled"], False) if cfg.data.get("unlabeled") else []
        return _read_jsonl(cfg.data["train"], True), _read_jsonl(cfg.data["test"], True)[:cfg.test], extra
    from slm.finetune.classify_data import task_examples

    test = task_examples(cfg.task, "test")
    random.Random("pet-test").shuffle(test)
    return _examples(task_examples(cfg.task, "train"), "train"), _examples(test[:cfg.test], "test"), []


def load_patterns(cfg: PETRecipeConfig):
    from slm.finetune.pet.pvp import load_pvps, read_pvps

    return read_pvps(cfg.patterns) if cfg.patterns else load_pvps(BUILTIN_PVPS[cfg.task], cfg.task)


def pretrain_mlm(cfg: PETRecipeConfig, train_pool) -> Path:
    """The starting MLM: cfg.model, or one pretrained on the task's corpus (made once; a rerun finds it)."""
    if cfg.model:
        return Path(cfg.model)
    from slm.config import build
    from slm.train.pretrain import PretrainConfig, run

    root = Path(cfg.out_dir)
    m = cfg.mlm
    out = root / "mlm"
    done = out / "final"
    if (done / "config.json").is_file():
        return done
    if cfg.task == "synthetic-sentiment":
        from slm.recipes.pet.data import sentiment_corpus

        data = _shards(root, sentiment_corpus(m.documents, m.verdict_fraction, m.seed, m.agreement), m.vocab_size)
    elif cfg.task == "jsonl":  # the user's own texts, labelled and not
        data = _shards(root, [" ".join(filter(None, (e.text, e.text_pair))) for e in train_pool], m.vocab_size)
    else:
        from slm.recipes.common import stdlib_shards

        data = stdlib_shards(root, min(m.documents, 400), m.vocab_size, "roberta-bpe")
    recipe = build(PretrainConfig, {
        "model": {"preset": "roberta-tiny", "config": dict(m.model, max_positions=max(m.seq_len, cfg.max_len) + 2),
                  "seed": m.seed},
        "data": {"dir": str(data), "seq_len": m.seq_len, "batch_size": m.batch_size, "seed": m.seed},
        "objective": "mlm", "mlm": {"packing": m.packing, "masking": "dynamic", "seed": m.seed},
        "train": {"max_steps": m.steps, "lr": m.lr, "min_lr": m.lr / 10, "warmup_steps": m.warmup_steps,
                  "weight_decay": 0.01, "betas": [0.9, 0.98], "eps": 1e-6, "seed": m.seed, "eval_batches": 4,
                  "progress": True, "log_every": max(1, m.steps // 10), "keep_last": 1},
        "out": str(out),
    })
    result = run(recipe)
    import slm

    slm.save(result["model"], result["tokenizer"], done)
    return done


def _shards(root: Path, texts: list[str], vocab_size: int) -> Path:
    from slm.data.shards import prepare
    from slm.data.sources import Document
    from slm.tokenizer import save_tokenizer, train_tokenizer

    data = root / "data"
    if not (data / "index.json").is_file():
        save_tokenizer(train_tokenizer(texts, vocab_size=vocab_size, kind="roberta-bpe"), root / "tokenizer")
        # 2% held out; a small corpus (a user's few texts) holds out a fifth, so validation still fills a batch
        prepare((Document(t, f"corpus:{i}") for i, t in enumerate(texts)), root / "tokenizer", data,
                val_fraction=0.02 if len(texts) >= 5000 else 0.2, workers=1, progress=False)
    return data


def few_shot_split(pool, n: int, seed: int):
    """n labelled examples drawn at random (PET's FewGLUE: a random sample), the others unlabelled."""
    labelled = [e for e in pool if e.label is not None]
    if len(labelled) < n:
        raise ConfigError(f"the train data has {len(labelled)} labelled examples, fewer than the {n} asked for")
    order = list(range(len(pool)))
    random.Random(f"pet-split:{seed}:{n}").shuffle(order)
    chosen = [i for i in order if pool[i].label is not None][:n]
    taken = set(chosen)
    return [pool[i] for i in chosen], [pool[i] for i in order if i not in taken]


def run(cfg: PETRecipeConfig) -> dict:
    import torch

    import slm
    from slm.recipes.pet.stages import run_setting

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    start = time.time()
    pool, test, extra = load_task(cfg)
    pvps = load_patterns(cfg)
    label_names = sorted({e.label for e in pool if e.label is not None})
    for pvp in pvps:
        missing = set(label_names) - set(pvp.verbalizer)
        if missing:
            raise ConfigError(f"pattern {pvp.name!r} has no verbalizer word for label(s) {sorted(missing)}")
    if cfg.ipet.generations > 1 and len(pvps) * cfg.repetitions < 2:
        raise ConfigError(f"iPET needs at least two models per generation; {len(pvps)} pattern(s) x "
                          f"{cfg.repetitions} repetition(s) is one: set repetitions=2 or ipet.generations=1")
    mlm_dir = pretrain_mlm(cfg, pool + extra)
    mlm, tokenizer = slm.load(mlm_dir)
    if getattr(mlm.config, "head", None) != "mlm":
        raise ConfigError(f"{mlm_dir} is not a masked LM (head {getattr(mlm.config, 'head', None)!r}); PET needs one")
    table: dict = {}
    for n in cfg.labels:
        for seed in cfg.seeds:
            t0 = time.time()
            labelled, unlabelled = few_shot_split(pool, n, seed)
            unlabelled = (unlabelled + extra)[:cfg.unlabeled]
            out = Path(cfg.out_dir) / f"n{n}" / f"seed-{seed}"
            scores = run_setting(cfg, mlm, mlm_dir, tokenizer, pvps, label_names, labelled, unlabelled, test, seed,
                                 out)
            for row, value in scores.items():
                table.setdefault(row, {}).setdefault(str(n), []).append(value)
            print(f"{n} labels, seed {seed}: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items())
                  + f" ({time.time() - t0:.0f}s)", flush=True)
            if not cfg.keep_models:
                shutil.rmtree(out / "models", ignore_errors=True)
    summary = {"config": asdict(cfg), "table": table, "checks": acceptance(table), "mlm": str(mlm_dir),
               "seconds": time.time() - start, "date": time.strftime("%Y-%m-%d"),
               "threads": torch.get_num_threads()}
    from slm.io import atomic_write_text

    atomic_write_text(Path(cfg.out_dir) / "results.json", json.dumps(summary, indent=2) + "\n")
    return summary


def _mean(values) -> float:
    return statistics.fmean(values) if values else float("nan")


def acceptance(table: dict) -> dict:
    """The paper's claims, per label count, on the seed means: PET > CLS head, distilled >= single pattern,
    iPET generation 2 >= generation 0 (when run)."""
    checks = {}
    for n in table.get("CLS head", {}):
        row = {"PET beats CLS head": _mean(table["PET single pattern"][n]) > _mean(table["CLS head"][n]),
               "distilled >= single pattern": _mean(table["PET distilled"][n]) >= _mean(table["PET single pattern"][n])}
        if "iPET gen 2" in table:
            row["iPET gen 2 >= gen 0"] = _mean(table["iPET gen 2"][n]) >= _mean(table["iPET gen 0"][n])
        checks[n] = row
    return checks


def format_table(summary: dict) -> str:
    from slm.recipes.common import mean_sd

    cfg = summary["config"]
    ns = [str(n) for n in cfg["labels"]]
    lines = [f"PET / iPET on {cfg['task']}: test accuracy % ({len(cfg['seeds'])} seed(s), mean ± sd)",
             "| model | " + " | ".join(f"{n} labels" for n in ns) + " |", "|---" * (1 + len(ns)) + "|"]
    for row, cells in summary["table"].items():
        lines.append(f"| {row} | " + " | ".join(mean_sd(cells.get(n, []), 100) for n in ns) + " |")
    for n, checks in summary["checks"].items():
        lines.append(f"{n} labels: " + "; ".join(f"{k}: {'yes' if v else 'no'}" for k, v in checks.items()))
    return "\n".join(lines)
