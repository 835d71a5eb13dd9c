"""phi-1 / phi-1.5 at CPU scale: synthetic textbooks from topic seeds, an educational-value filter, and the same
phi model pretrained on raw, filtered, synthetic and mixed data for the same number of tokens.

    slm recipe phi                                     # recipes/phi.yaml: the local real model teaches; 3 seeds
    slm recipe phi --config recipes/phi-smoke.yaml     # seconds, a scripted teacher; the numbers mean nothing

Once (cached on disk under out_dir, so the seeds and a rerun reuse it):
  1. topics from the stdlib files read (modules and documented functions/classes) and the user's topic files,
     a fifth of the modules held out (no seeds, no raw training text); raw text = the other files (and the
     user's raw files) cut into chunks;
  2. the teacher (slm.teach: local real model, any endpoint, or scripted) writes one lesson per prompt
     (topic x audience x style, seeded with an extract), plus the plans with fewer topic seeds that the
     diversity measures compare; MinHash near-duplicates and texts sharing an 8-gram with the evaluation sets
     are dropped;
  3. the judge labels a sample of raw chunks; a random forest on the real model's frozen mean-pooled
     embeddings predicts the rest (held-out AUC reported); the top fraction is the filtered raw text;
  4. one byte-level BPE over raw + synthetic text, and token shards (slm.data.shards.prepare) of the four
     training sets: raw, filtered, synthetic, synthetic + filtered.
Per seed and set: a phi model (nano-phi, CPU-sized) pretrained for the same steps x rows x tokens, then
`slm eval`'s harness on the textbook-style questions of held-out topics, held-out raw bits per byte and the
smoke tasks.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from slm.teach.settings import TeacherSection
from slm.recipes.phi.topics import AUDIENCES, STYLES

DEFAULT_RECIPE = "recipes/phi.yaml"
VARIANTS = ("raw", "filtered", "synthetic", "synthetic+filtered")


@dataclass
class SyntheticSection:
    prompts: int = 64  # lessons asked for (before dedup)
    max_tokens: int = 160
    temperature: float = 0.8
    audiences: list[str] = field(default_factory=lambda: list(AUDIENCES))
    styles: list[str] = field(default_factory=lambda: list(STYLES))
    dedup_threshold: float = 0.7  # MinHash Jaccard above which a lesson is a near-duplicate of an earlier one
    plan_seed: int = 0


@dataclass
class FilterSection:
    label: int = 64  # raw chunks the judge labels
    keep: float = 0.5  # the top fraction of raw chunks by the forest's score
    embedder: str = "smollm2-135m-instruct"  # a model name or HF dir; "random" = a frozen random nano-phi
    embed_tokens: int = 128
    trees: int = 200


@dataclass
class DiversitySection:
    topic_seeds: list[int] = field(default_factory=lambda: [1, 4, 16])  # how many topics each plan draws from
    texts: int = 16  # lessons per plan: the same count for every number of seeds


@dataclass
class PretrainSection:
    steps: int = 150
    batch_size: int = 8
    seq_len: int = 128
    lr: float = 2e-3
    warmup_steps: int = 15


@dataclass
class EvalSection:
    questions: int = 120
    heldout_docs: int = 40
    smoke_tasks: str | None = "recipes/eval-smoke.yaml"


@dataclass
class PhiRecipeConfig:
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    out_dir: str = "runs/phi"
    threads: int = 0
    corpus_files: int = 300  # stdlib files: the raw text and the topic seeds
    topic_files: list[str] = field(default_factory=list)  # more topics, "name: description" a line
    raw_files: list[str] = field(default_factory=list)  # more raw text (the filter applies to it too)
    held_out_fraction: float = 0.2
    chunk_chars: int = 1500
    max_raw_chunks: int = 400
    vocab_size: int = 2048
    teacher: TeacherSection = field(default_factory=TeacherSection)
    synthetic: SyntheticSection = field(default_factory=SyntheticSection)
    filter: FilterSection = field(default_factory=FilterSection)
    diversity: DiversitySection = field(default_factory=DiversitySection)
    model: dict = field(default_factory=lambda: dict(dim=64, n_layers=2, n_heads=2, ffn_dim=256, max_seq_len=128))
    pretrain: PretrainSection = field(default_factory=PretrainSection)
    eval: EvalSection = field(default_factory=EvalSection)
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))


def chunks(text: str, chars: int) -> list[str]:
    """The text cut at line ends into pieces of about `chars` characters (blank pieces dropped)."""
    out, current = [], []
    size = 0
    for line in text.splitlines(keepends=True):
        current.append(line)
        size += len(line)
        if size >= chars:
            out.append("".join(current))
            current, size = [], 0
    if current:
        out.append("".join(current))
    return [c for c in out if c.strip()]


def corpus(cfg: PhiRecipeConfig) -> dict:
    """Topics (seeds and held out), raw training chunks and held-out raw texts."""
    from slm.data.sources import stdlib_dir, stdlib_files
    from slm.recipes.phi.topics import file_topics, held_out_groups, module_name, stdlib_topics

    topics = stdlib_topics(cfg.corpus_files)
    for path in cfg.topic_files:
        topics += file_topics(path)
    held = held_out_groups(topics, cfg.held_out_fraction)
    root = stdlib_dir()
    raw, heldout = [], []
    for path in stdlib_files(cfg.corpus_files):
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        (heldout if module_name(path, root) in held else raw).extend(chunks(text, cfg.chunk_chars))
    for path in cfg.raw_files:
        from slm.data.sources import file_documents

        raw.extend(c for doc in file_documents(path) for c in chunks(doc.text, cfg.chunk_chars))
    rng = random.Random("slm-phi-raw")
    if len(raw) > cfg.max_raw_chunks:
        raw = [raw[i] for i in sorted(rng.sample(range(len(raw)), cfg.max_raw_chunks))]
    rng.shuffle(heldout)
    return {"seeds": [t for t in topics if t.group not in held], "held_out": [t for t in topics if t.group in held],
            "raw": raw, "heldout_raw": heldout[: cfg.eval.heldout_docs]}


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def teach(cfg: PhiRecipeConfig, data: dict, root: Path) -> dict:
    """Lessons, diversity plans and judge scores: from root/teacher.json when the same settings made it,
    else through the teacher (its answers cached in root/teacher.sqlite)."""
    from slm.io import atomic_write_text
    from slm.recipes.phi.quality import judge_scores
    from slm.recipes.phi.scripted import scripted_answer
    from slm.recipes.phi.synth import diversity, generate
    from slm.teach.settings import open_teacher
    from slm.recipes.phi.topics import prompt_plan

    s, d = cfg.synthetic, cfg.diversity
    label_idx = sorted(random.Random("slm-phi-label").sample(range(len(data["raw"])), min(cfg.filter.label,
                                                                                         len(data["raw"]))))
    key = _key(asdict(cfg.teacher), asdict(s), asdict(d), cfg.corpus_files, cfg.topic_files, cfg.raw_files,
               cfg.held_out_fraction, cfg.chunk_chars, cfg.max_raw_chunks, cfg.filter.label)
    path = root / "teacher.json"
    if path.is_file() and json.loads(path.read_text()).get("key") == key:
        return json.loads(path.read_text())
    main_plan = prompt_plan(data["seeds"], s.prompts, s.audiences, s.styles, s.plan_seed)
    with open_teacher(cfg.teacher, cache=root / "teacher.sqlite", scripted=scripted_answer) as teacher:
        print(f"teacher: {len(main_plan)} lessons from {len(data['seeds'])} topic seeds", flush=True)
        lessons, cost = generate(teacher, main_plan, s.max_tokens, s.temperature, progress=True)
        plans = {}
        for n_seeds in d.topic_seeds:
            plan = prompt_plan(data["seeds"], d.texts, s.audiences, s.styles, s.plan_seed, n_seeds=n_seeds)
            records, _ = generate(teacher, plan, s.max_tokens, s.temperature)
            plans[str(n_seeds)] = diversity([r["text"] for r in records])
        t0 = time.perf_counter()
        scores = judge_scores(teacher, [data["raw"][i] for i in label_idx])
        judge_seconds = time.perf_counter() - t0
        stats = teacher.stats
        cost.update(all_prompt_tokens=stats.prompt_tokens, all_completion_tokens=stats.completion_tokens,
                    all_seconds=stats.elapsed, judge_seconds=judge_seconds, cached_answers=stats.cached)
    out = {"key": key, "lessons": lessons, "cost": cost, "diversity": plans, "label_idx": label_idx,
           "judge_scores": scores}
    atomic_write_text(path, json.dumps(out) + "\n")
    return out


def embedder(cfg: PhiRecipeConfig, raw: list[str]):
    """(model, tokenizer) whose frozen mean-pooled hidden states feed the forest; "random": a fresh nano-phi
    (seed 0) with a byte BPE of the raw text, for runs without the real model."""
    import slm

    if cfg.filter.embedder == "random":
        from slm.models import build_model, preset
        from slm.tokenizer import train_tokenizer

        tok = train_tokenizer(raw, vocab_size=cfg.vocab_size, kind="byte-bpe")
        return build_model(preset("nano-phi", vocab_size=len(tok), **cfg.model)).init_weights(0), tok
    return slm.load(cfg.filter.embedder)


def quality_filter(cfg: PhiRecipeConfig, data: dict, taught: dict, root: Path) -> dict:
    """The forest on frozen embeddings: held-out AUC, the kept raw chunks, and how enriched they are."""
    import numpy as np

    from slm.recipes.phi.quality import binary_labels, embed, fit_forest, top_fraction

    f = cfg.filter
    cache = root / f"embeddings-{_key(f.embedder, f.embed_tokens, data['raw'])}.npy"
    if cache.is_file():
        features = np.load(cache)
    else:
        model, tok = embedder(cfg, data["raw"])
        t0 = time.perf_counter()
        features = embed(data["raw"], model, tok, max_tokens=f.embed_tokens, progress=True)
        print(f"embedded {len(data['raw'])} raw chunks with {f.embedder} in {time.perf_counter() - t0:.0f}s",
              flush=True)
        np.save(cache, features)
    idx = taught["label_idx"]
    labels = binary_labels(taught["judge_scores"])
    forest, auc = fit_forest(features[idx], labels, seed=0, trees=f.trees)
    predicted = forest.predict_proba(features)[:, 1]
    kept = top_fraction(predicted, f.keep)
    # Enrichment on the held-out quarter of the judged sample (the refit forest has seen every labelled row).
    y_test, test_scores = forest.held_out_
    test_kept = top_fraction(test_scores, f.keep)
    return {"auc": auc, "keep": f.keep, "kept": kept, "positives_all": float(np.mean(y_test)),
            "positives_kept": float(np.mean(y_test[test_kept]))}


def build_sets(cfg: PhiRecipeConfig, data: dict, taught: dict, filtered: dict, root: Path) -> dict:
    """The clean lessons, the evaluation files, the tokenizer and the four training sets' shards."""
    from slm.data.sources import Document
    from slm.io import atomic_write_jsonl as write_jsonl
    from slm.recipes.phi.evaluate import textbook_questions
    from slm.recipes.phi.synth import clean
    from slm.tokenizer import save_tokenizer, train_tokenizer

    lessons = [r for r in taught["lessons"]]
    questions, q_counts = textbook_questions(data["held_out"], data["raw"] + [r["text"] for r in lessons],
                                             cfg.eval.questions)
    write_jsonl(root / "textbook-mc.jsonl", questions)
    write_jsonl(root / "heldout-raw.jsonl", [{"text": t} for t in data["heldout_raw"]])
    eval_texts = [q["question"] + " " + " ".join(q["choices"]) for q in questions] + data["heldout_raw"]
    kept, s_counts = clean(lessons, eval_texts, threshold=cfg.synthetic.dedup_threshold)
    write_jsonl(root / "synthetic.jsonl", kept)
    synthetic = [r["text"] for r in kept]
    filtered_raw = [data["raw"][i] for i in filtered["kept"]]
    if not (root / "tokenizer" / "tokenizer.json").is_file() or not (root / "sets.json").is_file() or \
            json.loads((root / "sets.json").read_text()).get("key") != _key(synthetic, data["raw"], filtered["kept"],
                                                                           cfg.vocab_size):
        save_tokenizer(train_tokenizer(data["raw"] + synthetic, vocab_size=cfg.vocab_size, kind="byte-bpe"),
                       root / "tokenizer")
        sets = {"raw": data["raw"], "filtered": filtered_raw, "synthetic": synthetic,
                "synthetic+filtered": synthetic + filtered_raw}
        tokens = {}
        for name in cfg.variants:
            docs = [Document(t, f"{name}#{i}") for i, t in enumerate(sets[name])]
            index = _prepare_with_val(docs, root / "tokenizer", root / "data" / name.replace("+", "-"),
                                      (cfg.pretrain.batch_size + 2) * (cfg.pretrain.seq_len + 1))
            tokens[name] = {s: index["splits"][s]["tokens"] for s in ("train", "val")}
        from slm.io import atomic_write_text

        atomic_write_text(root / "sets.json", json.dumps(
            {"key": _key(synthetic, data["raw"], filtered["kept"], cfg.vocab_size), "tokens": tokens}) + "\n")
    tokens = json.loads((root / "sets.json").read_text())["tokens"]
    return {"questions": q_counts, "synthetic": s_counts, "tokens": tokens}


def _prepare_with_val(docs, tokenizer: Path, out: Path, min_val_tokens: int) -> dict:
    """Shards with 5% of the documents held out for the trainer's validation loss (it needs a batch of rows).
    A set too small for that takes the next split seed, then a larger fraction (10, 20, 30%): the synthetic
    set of the default run is a few thousand tokens. The table's evaluations do not use this split."""
    from slm.data.shards import prepare
    from slm.errors import SlmError

    for fraction in (0.05, 0.1, 0.2, 0.3):
        for split_seed in range(20):
            index = prepare(docs, tokenizer, out, val_fraction=fraction, seed=split_seed, workers=1, progress=False)
            if index["splits"]["val"]["tokens"] >= min_val_tokens and index["splits"]["train"]["documents"]:
                return index
    raise SlmError(f"{out}: no split gives {min_val_tokens} validation tokens; the set is too small")


def pretrain_and_eval(cfg: PhiRecipeConfig, root: Path, variant: str, seed: int, tasks) -> dict:
    from slm.config import build
    from slm.recipes.phi.evaluate import evaluate_all
    from slm.train.pretrain import PretrainConfig, run

    p = cfg.pretrain
    recipe = build(PretrainConfig, {
        "model": {"preset": "nano-phi", "config": dict(cfg.model), "seed": seed},
        "data": {"dir": str(root / "data" / variant.replace("+", "-")), "seq_len": p.seq_len,
                 "batch_size": p.batch_size, "seed": seed},
        "train": {"max_steps": p.steps, "lr": p.lr, "min_lr": p.lr / 10, "warmup_steps": p.warmup_steps,
                  "weight_decay": 0.1, "betas": [0.9, 0.98], "eps": 1e-7, "seed": seed, "eval_batches": 4,
                  "progress": False, "log_every": max(1, p.steps // 5), "keep_last": 1},
        "out": str(root / f"seed-{seed}" / variant.replace("+", "-")),
    })
    result = run(recipe)
    scores = evaluate_all(result["model"], result["tokenizer"], tasks)
    scores["val_loss"] = float(result.get("val_loss", float("nan")))
    return scores


def run(cfg: PhiRecipeConfig) -> dict:
    import torch

    from slm.errors import ConfigError
    from slm.recipes.phi.evaluate import recipe_tasks

    unknown = set(cfg.variants) - set(VARIANTS)
    if unknown:
        raise ConfigError(f"unknown variant(s) {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    start = time.time()
    root = Path(cfg.out_dir)
    root.mkdir(parents=True, exist_ok=True)
    data = corpus(cfg)
    print(f"corpus: {len(data['seeds'])} topic seeds, {len(data['held_out'])} held-out topics, "
          f"{len(data['raw'])} raw chunks, {len(data['heldout_raw'])} held-out raw texts", flush=True)
    taught = teach(cfg, data, root)
    filtered = quality_filter(cfg, data, taught, root)
    sets = build_sets(cfg, data, taught, filtered, root)
    print(f"filter: held-out AUC {filtered['auc']:.3f}; synthetic {sets['synthetic']}; "
          f"questions {sets['questions']}", flush=True)
    tasks = recipe_tasks(root, cfg.eval.smoke_tasks, cfg.eval.heldout_docs)
    table = {v: {} for v in cfg.variants}
    for seed in cfg.seeds:
        for variant in cfg.variants:
            t0 = time.time()
            scores = pretrain_and_eval(cfg, root, variant, seed, tasks)
            for metric, value in scores.items():
                table[variant].setdefault(metric, []).append(value)
            print(f"seed {seed} {variant}: textbook MC acc {scores['mc_acc']:.3f}, held-out bpb "
                  f"{scores['heldout_bpb']:.3f} ({time.time() - t0:.0f}s)", flush=True)
    p = cfg.pretrain
    summary = {"config": asdict(cfg), "table": table, "tokens_per_run": p.steps * p.batch_size * p.seq_len,
               "filter": {k: v for k, v in filtered.items() if k != "kept"}, "generation": taught["cost"],
               "diversity": taught["diversity"], "sets": sets, "seconds": time.time() - start,
               "date": time.strftime("%Y-%m-%d"), "threads": torch.get_num_threads()}
    from slm.io import atomic_write_text

    atomic_write_text(root / "results.json", json.dumps(summary, indent=2) + "\n")
    return summary


def format_table(summary: dict) -> str:
    from slm.recipes.common import mean_sd as cell

    n = len(summary["config"]["seeds"])
    smoke = sorted({m for r in summary["table"].values() for m in r if m.startswith("smoke/")})
    lines = [f"phi: the same phi model, {summary['tokens_per_run']:,} training tokens each ({n} seed(s), mean ± sd)",
             "| training set | train tokens | textbook MC acc % | acc_norm % | held-out raw bits/byte | "
             + " | ".join(smoke) + " |",
             "|---|---|---|---|---|" + "---|" * len(smoke)]
    for variant, r in summary["table"].items():
        tokens = summary["sets"]["tokens"].get(variant, {}).get("train", 0)
        lines.append(f"| {variant} | {tokens:,} | {cell(r['mc_acc'], 100)} | {cell(r['mc_acc_norm'], 100)} | "
                     f"{cell(r['heldout_bpb'], digits=3)} | " + " | ".join(cell(r[m], digits=3) for m in smoke) + " |")
    g, f, s = summary["generation"], summary["filter"], summary["sets"]
    lines.append(f"generation: {g['requests']} lessons, {g['all_prompt_tokens']:,} prompt + "
                 f"{g['all_completion_tokens']:,} completion teacher tokens in {g['all_seconds']:.0f}s "
                 f"(judge {g['judge_seconds']:.0f}s); kept {s['synthetic']}")
    lines.append(f"filter: held-out AUC {f['auc']:.3f}; judged positives {100 * f['positives_all']:.0f}% of the "
                 f"held-out quarter of the sample, {100 * f['positives_kept']:.0f}% of its top {f.get('keep', 0.5):g}; "
                 f"questions {s['questions']}")
    lines.append("| topic seeds | lessons | distinct-2 | distinct-3 | near-duplicate rate |")
    lines.append("|---|---|---|---|---|")
    for n_seeds, d in summary["diversity"].items():
        lines.append(f"| {n_seeds} | {d['texts']} | {d['distinct_2']:.3f} | {d['distinct_3']:.3f} | "
                     f"{d['near_duplicate_rate']:.3f} |")
    return "\n".join(lines)


def register(parser: argparse.ArgumentParser) -> None:
    from slm.cli.recipe import add_recipe_options, table_recipe_main

    add_recipe_options(parser, DEFAULT_RECIPE, "seeds=[0] --set synthetic.prompts=16")
    parser.set_defaults(func=table_recipe_main(DEFAULT_RECIPE, PhiRecipeConfig, run, format_table))
