"""UL2R at CPU scale: continue a trained causal LM for a small fraction of its training tokens on UL2R's mixture
of denoisers, against continuing it for the same tokens with plain causal LM (the control of equal compute).

    slm recipe ul2r                                    # recipes/ul2r.yaml: one base, 3 seeds of continuation
    slm recipe ul2r --config recipes/ul2r-smoke.yaml   # seconds; the numbers mean nothing

Once: a byte-level BPE and token shards of the stdlib corpus (2% held out), and a causal base: the demo's nano
pretraining (or any checkpoint given as base.checkpoint), then UL2's mode tokens and 100 sentinels added to its
vocabulary (new rows at the mean embedding), so that every row of the table reads the same vocabulary. Per seed
and per fraction f of the base's training tokens:
  1. +causal: `slm pretrain` from the base, objective causal, f x the base's tokens;
  2. +UL2R: the same steps, rows and learning rate with objective ul2 (50% S, 25% R, 25% X; a prefix LM);
  3. the three models scored on the same held-out material: next-token perplexity; the loss of held-out gap
     tokens (R(3, 15%) spans of held-out windows) in two ways: in the infilling format (both sides of each gap
     visible) and from the left context alone (plain next-token prediction of the same tokens); exact match of
     greedily filled gaps; and a 3-shot multiple-choice task on held-out stdlib files (a function's first
     parameter from its name).
"""
from __future__ import annotations

import argparse
import ast
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

DEFAULT_RECIPE = "recipes/ul2r.yaml"
VARIANTS = ("base", "causal", "ul2r")


@dataclass
class UL2RRecipeConfig:
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    out_dir: str = "runs/ul2r"
    threads: int = 0  # torch CPU threads (0: torch's choice)
    corpus_files: int = 400
    vocab_size: int = 4096
    seq_len: int = 256
    batch_size: int = 8
    # The base: pretrained here (the demo's nano run) unless `checkpoint` names a trained causal LM whose
    # tokenizer is the one this recipe trains (a run of it made earlier).
    base: dict = field(default_factory=lambda: dict(
        checkpoint=None, preset="nano", config={}, tokens=1_500_000, lr=2e-3, min_lr=2e-4, warmup_steps=30,
        compile=True))
    fractions: list[float] = field(default_factory=lambda: [0.01, 0.1, 0.3])  # of the base's training tokens
    # Both continuations hold the base's final learning rate: a restart at a higher one (1e-3 was tried) shocks
    # the converged base, and the causal control then ends worse than it started.
    continuation: dict = field(default_factory=lambda: dict(lr=2e-4, min_lr=2e-4, warmup_fraction=0.1))
    mixture: str | list = "ul2r"
    eval_windows: int = 128  # held-out windows for the gap losses
    exact_match_windows: int = 32  # of them, greedily infilled
    perplexity_batches: int = 32
    fewshot_files: int = 120  # stdlib files after the corpus's, for the few-shot task
    fewshot_docs: int = 200
    num_fewshot: int = 3


def prepare(cfg: UL2RRecipeConfig) -> Path:
    from slm.recipes.common import stdlib_shards

    return stdlib_shards(Path(cfg.out_dir), cfg.corpus_files, cfg.vocab_size, "byte-bpe")


def make_base(cfg: UL2RRecipeConfig, data: Path) -> tuple[Path, int]:
    """(the base with UL2's tokens added, the tokens it was trained on)."""
    import slm
    from slm.objectives.denoisers import add_ul2_tokens
    from slm.recipes.common import causal_base

    target = Path(cfg.out_dir) / "base"
    checkpoint, tokens = causal_base(Path(cfg.out_dir), data, cfg.base, cfg.seq_len, cfg.batch_size)
    if not (target / "config.json").is_file():
        model, tokenizer = slm.load(checkpoint)
        add_ul2_tokens(model, tokenizer)
        slm.save(model, tokenizer, target)
    return target, tokens


# ------------------------------------------------------------------------------------------------ evaluation
def heldout_gaps(cfg: UL2RRecipeConfig, data: Path, tokenizer) -> list[dict]:
    """Fixed held-out windows, each with its R(3, 15%) gaps: the infilling row and its labels, the original row,
    which of its tokens are gaps, and the infilling prompt."""
    import numpy as np

    from slm.objectives.denoisers import Denoiser, Mixture, UL2Denoising, raw_length_for, ul2_tokens
    from slm.objectives.span_corruption import RawWindowLoader, expand

    regular = Mixture((Denoiser("R", 3, 0.15),), (1.0,))
    raw = raw_length_for(cfg.seq_len, regular, "prefix_lm")
    tokens = ul2_tokens(tokenizer)
    loader = RawWindowLoader(data, "val", raw, 1, seed=12345, epochs=1)
    transform = UL2Denoising(regular, tokens, layout="prefix_lm", length=cfg.seq_len, seed=12345)
    out = []
    for batch in loader:
        row, index = batch["input_ids"][0].numpy(), int(batch["sample_index"][0])
        example = transform.example(row, 0, index)
        _, inputs, targets = example
        original, gap_mask = expand(inputs[1:], targets, tokens.sentinel_top, tokens.eos_id, tokens.n_sentinels)
        assert np.array_equal(original, row), "the held-out gaps do not reconstruct their window"
        denoised = transform.collate([example])
        out.append({"row": row, "gap_mask": gap_mask, "infill_ids": denoised["input_ids"][0],
                    "infill_labels": denoised["labels"][0], "prompt": inputs[:-1]})
        if len(out) == cfg.eval_windows:
            break
    return out


def _gap_content(labels, tokens) -> "torch.Tensor":
    """Which labelled positions of an infilling row are gap content (not a sentinel, not </s>)."""
    is_sentinel = (labels >= tokens.sentinel_top - tokens.n_sentinels) & (labels < tokens.sentinel_top)
    return (labels != -100) & ~is_sentinel & (labels != tokens.eos_id)


def gap_losses(model, gaps: list[dict], tokens) -> dict:
    """Mean NLL per gap token: seeing both sides (the infilling format) and the left context only (plain LM)."""
    import torch
    import torch.nn.functional as F

    from slm.models import make_attention_mask

    both = left = 0.0
    count = 0
    with torch.no_grad():
        for g in gaps:
            ids, labels = g["infill_ids"][None], g["infill_labels"]
            prefix = int((labels == -100).cumprod(0).sum()) + 1  # the first labelled position predicts token P
            mask = make_attention_mask(ids.shape[1], 0, prefix_lengths=torch.tensor([prefix]))
            logits = model(ids, attention_mask=mask)[0]
            keep = _gap_content(labels, tokens)
            both += F.cross_entropy(logits[keep], labels[keep], reduction="sum").item()
            row = torch.from_numpy(g["row"])[None]
            plain = model(row)[0, :-1]
            target = row[0, 1:]
            gap = torch.from_numpy(g["gap_mask"][1:])  # the first token has no left context: never a gap (T5)
            left += F.cross_entropy(plain[gap], target[gap], reduction="sum").item()
            count += int(keep.sum())
            assert int(keep.sum()) == int(gap.sum()), "the two gap-token sets differ"
    return {"gap_nll_infill": both / count, "gap_nll_left": left / count, "gap_tokens": count}


def gap_exact_match(model, gaps: list[dict], tokens, n: int) -> float:
    """Share of gaps whose greedy infill equals the held-out span exactly."""
    from slm.infer.infill import greedy_targets
    from slm.objectives.span_corruption import target_spans

    right = total = 0
    for g in gaps[:n]:
        truth = target_spans(g["infill_labels"][g["infill_labels"] != -100].tolist(), tokens.sentinel_top,
                             tokens.n_sentinels, tokens.n_sentinels, tokens.eos_id)
        spans = [s for s in truth if s]
        answer = greedy_targets(model, g["prompt"].tolist(), tokens.eos_id, max_tokens=sum(map(len, spans)) +
                                len(spans) + 1, stop_after=len(spans), sentinel_top=tokens.sentinel_top,
                                n_sentinels=tokens.n_sentinels)
        got = target_spans(answer, tokens.sentinel_top, tokens.n_sentinels, len(spans))
        right += sum(a == b for a, b in zip(got, spans))
        total += len(spans)
    return right / max(total, 1)


def perplexity(model, data: Path, cfg: UL2RRecipeConfig) -> float:
    import torch

    from slm.data.loader import PackedLoader
    from slm.train.trainer import causal_lm_loss

    loss = count = 0.0
    with torch.no_grad():
        for i, batch in enumerate(PackedLoader(data, "val", cfg.seq_len, cfg.batch_size, seed=0, epochs=1)):
            if i == cfg.perplexity_batches:
                break
            s, n = causal_lm_loss(model, {"input_ids": batch["input_ids"], "labels": batch["labels"]})
            loss, count = loss + s.item(), count + n.item()
    return math.exp(loss / count)


def fewshot_task(cfg: UL2RRecipeConfig) -> Path:
    """A multiple-choice file over stdlib files the corpus leaves out: `def name(` -> its first parameter, three
    distractors drawn from other functions' first parameters."""
    from slm.data.sources import stdlib_files
    from slm.io import atomic_write_text

    path = Path(cfg.out_dir) / "fewshot-first-parameter.jsonl"
    if path.is_file():
        return path
    pairs = []
    for file in stdlib_files(cfg.corpus_files + cfg.fewshot_files)[cfg.corpus_files:]:
        try:
            tree = ast.parse(file.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.args.args and node.args.args[0].arg not in ("self", "cls"):
                pairs.append((node.name, node.args.args[0].arg))
    rng = random.Random("slm-ul2r-fewshot")
    rng.shuffle(pairs)
    params = sorted({p for _, p in pairs})
    docs = []
    for name, param in pairs[:cfg.fewshot_docs]:
        choices = [param] + rng.sample([p for p in params if p != param], 3)
        rng.shuffle(choices)
        docs.append({"name": name, "choices": choices, "label": choices.index(param)})
    atomic_write_text(path, "".join(json.dumps(d) + "\n" for d in docs))
    return path


def fewshot_accuracy(model, tokenizer, cfg: UL2RRecipeConfig, path: Path, seed: int) -> float:
    from slm.eval.harness import evaluate
    from slm.eval.tasks import TaskSpec

    task = TaskSpec(name="first-parameter", kind="multiple_choice", data=str(path), doc_to_text="def {{name}}(",
                    doc_to_target="{{label}}", choices="choices", target_delimiter="",
                    fewshot_delimiter="):\n    pass\n\n", num_fewshot=cfg.num_fewshot)
    return evaluate(model, tokenizer, [task], batch_size=16, seed=seed)["first-parameter"]["acc"]


def score(model, tokenizer, cfg: UL2RRecipeConfig, data: Path, gaps: list[dict], fewshot: Path, seed: int) -> dict:
    from slm.objectives.denoisers import ul2_tokens

    model.eval()
    tokens = ul2_tokens(tokenizer)
    out = gap_losses(model, gaps, tokens)
    out["gap_exact_match"] = gap_exact_match(model, gaps, tokens, cfg.exact_match_windows)
    out["perplexity"] = perplexity(model, data, cfg)
    out["fewshot_acc"] = fewshot_accuracy(model, tokenizer, cfg, fewshot, seed)
    return out


# ------------------------------------------------------------------------------------------------ the run
def run(cfg: UL2RRecipeConfig) -> dict:
    import torch

    import slm
    from slm.models import flops_per_token
    from slm.objectives.denoisers import mixture_from, raw_length_for
    from slm.recipes.common import pretrain_lm

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    start = time.time()
    data = prepare(cfg)
    base, base_tokens = make_base(cfg, data)
    model, tokenizer = slm.load(base)
    gaps = heldout_gaps(cfg, data, tokenizer)
    fewshot = fewshot_task(cfg)
    rows: dict = {}
    base_scores = score(model, tokenizer, cfg, data, gaps, fewshot, seed=0)
    print(f"base: {_line(base_scores)}", flush=True)
    step_tokens = cfg.batch_size * cfg.seq_len
    raw_share = raw_length_for(cfg.seq_len, mixture_from(cfg.mixture), "prefix_lm") / cfg.seq_len
    compute = {"base_tokens": base_tokens,
               "base_flops": flops_per_token(model.config, cfg.seq_len) * base_tokens}
    for fraction in cfg.fractions:
        steps = max(1, math.ceil(fraction * base_tokens / step_tokens))
        key = f"{fraction:g}"
        rows[key] = {v: [] for v in VARIANTS}
        compute[key] = {"steps": steps, "tokens": steps * step_tokens,
                        "ul2r_raw_tokens": int(steps * step_tokens * raw_share),
                        "flops": flops_per_token(model.config, cfg.seq_len) * steps * step_tokens,
                        "fraction_of_base": steps * step_tokens / base_tokens}
        c = cfg.continuation
        for seed in cfg.seeds:
            rows[key]["base"].append(base_scores)
            for variant, objective in (("causal", "causal"), ("ul2r", "ul2")):
                t0 = time.time()
                out = Path(cfg.out_dir) / f"seed-{seed}" / f"{variant}-{key}"
                checkpoint = pretrain_lm(data, out, seq_len=cfg.seq_len, batch_size=cfg.batch_size, steps=steps,
                                         seed=seed, lr=c["lr"], min_lr=c["min_lr"],
                                         warmup=max(1, round(c["warmup_fraction"] * steps)), init_from=base,
                                         objective=objective, sections={"ul2": {"mixture": cfg.mixture, "seed": seed}})
                model, tokenizer = slm.load(checkpoint)
                scores = score(model, tokenizer, cfg, data, gaps, fewshot, seed=seed)
                rows[key][variant].append(scores)
                print(f"seed {seed} +{fraction:.0%} {variant}: {_line(scores)} ({time.time() - t0:.0f}s)", flush=True)
                _save(cfg, rows, compute, start)  # after every run: an interrupted one keeps its rows
    return _save(cfg, rows, compute, start)


def _save(cfg: UL2RRecipeConfig, rows: dict, compute: dict, start: float) -> dict:
    import torch

    from slm.io import atomic_write_text

    summary = {"config": asdict(cfg), "rows": rows, "compute": compute, "seconds": time.time() - start,
               "date": time.strftime("%Y-%m-%d"), "threads": torch.get_num_threads()}
    atomic_write_text(Path(cfg.out_dir) / "results.json", json.dumps(summary, indent=2) + "\n")
    return summary


def _line(s: dict) -> str:
    return (f"gap NLL infill {s['gap_nll_infill']:.3f} / left {s['gap_nll_left']:.3f}, gap EM "
            f"{s['gap_exact_match']:.3f}, perplexity {s['perplexity']:.2f}, few-shot {s['fewshot_acc']:.3f}")


def format_table(summary: dict) -> str:
    from slm.recipes.common import mean_sd

    n = len(summary["config"]["seeds"])
    lines = [f"UL2R against the causal control of equal compute ({n} seed(s) of continuation, mean ± sd)",
             "| extra tokens | model | gap NLL, infilling | gap NLL, left context | gap exact match % | "
             "perplexity | 3-shot acc % |", "|---|---|---|---|---|---|---|"]
    for n, (key, variants) in enumerate(summary["rows"].items()):
        c = summary["compute"][key]
        for variant, scores in variants.items():
            if variant == "base" and n:
                continue  # one base for every fraction
            def col(name, scale=1.0, digits=3):
                return mean_sd([s[name] for s in scores], scale, digits)
            extra = "-" if variant == "base" else f"{c['fraction_of_base']:.1%} ({c['tokens']:,})"
            lines.append(f"| {extra} | {variant} | {col('gap_nll_infill')} | {col('gap_nll_left')} | "
                         f"{col('gap_exact_match', 100, 1)} | {col('perplexity', digits=2)} | "
                         f"{col('fewshot_acc', 100, 1)} |")
    return "\n".join(lines)


def register(parser: argparse.ArgumentParser) -> None:
    from slm.cli.recipe import add_recipe_options, table_recipe_main

    add_recipe_options(parser, DEFAULT_RECIPE, "seeds=[0] --set fractions=[0.01]")
    parser.set_defaults(func=table_recipe_main(DEFAULT_RECIPE, UL2RRecipeConfig, run, format_table))
