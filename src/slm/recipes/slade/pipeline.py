"""`slm recipe slade`: a small T5 that decompiles optimised assembly to C, judged by compiling and running.

    slm recipe slade                                     # recipes/slade.yaml: 3 seeds, the table
    slm recipe slade --config recipes/slade-smoke.yaml   # seconds; the numbers mean nothing

Once: generated functions with IO examples (slade.generator), their assembly for every (ISA, -O level) whose
compiler is installed (slade.assembly), split by function (slade.data); a byte-level BPE for assembly and C
(digits split or not: both are measured, tokens per function, and `tokenizer.split_digits` picks); each
assembly cut to `input_tokens` tokens. Per seed: one shared T5 (dropout 0) trained on (assembly -> C) pairs
of all targets through `slm finetune`, and a decoder-only model of about the same size on the same pairs as
chats; both decode every test row with beam search (`beams`, n-best = beams). Judged by slade.judge: IO
accuracy of the top-1 candidate and of the first candidate that compiles and passes, with the reference's
declarations, with none, and with type inference; edit similarity of the top-1. Baselines in the same run:
nearest-neighbour retrieval by assembly (its C, renamed; its k nearest as the n-best) and `return 0`.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

DEFAULT_RECIPE = "recipes/slade.yaml"
MODELS = ("slade", "decoder", "retrieval", "return0")


@dataclass
class SladeRecipeConfig:
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    out_dir: str = "runs/slade"
    threads: int = 1
    isas: list[str] = field(default_factory=lambda: ["x86_64", "aarch64"])
    opts: list[str] = field(default_factory=lambda: ["O0", "O3"])
    data: dict = field(default_factory=lambda: dict(functions=1200, seed=0, examples=5, families=None,
                                                    test_functions=40, user_files=[], real_functions=0,
                                                    real_test_functions=0, asm_chars=3000))
    tokenizer: dict = field(default_factory=lambda: dict(vocab_size=2000, split_digits=True))
    input_tokens: int = 320
    target_tokens: int = 160
    t5: dict = field(default_factory=lambda: dict(dim=128, n_layers=2, n_heads=4, head_dim=32, ffn_dim=256))
    decoder: dict = field(default_factory=lambda: dict(dim=128, n_layers=4, n_heads=4, n_kv_heads=4, ffn_dim=256))
    train: dict = field(default_factory=lambda: dict(steps=600, batch_size=16, lr=2e-3, warmup_steps=30))
    beams: int = 4
    models: list[str] = field(default_factory=lambda: list(MODELS))


# ------------------------------------------------------------------------------------------------ data
def targets(cfg: SladeRecipeConfig, say=print) -> tuple[list[tuple[str, str]], dict]:
    from slm.errors import ConfigError
    from slm.recipes.slade.assembly import OPT_LEVELS, available_isas

    available = available_isas()
    unknown = sorted(set(cfg.isas) - set(available)) + sorted(set(cfg.opts) - set(OPT_LEVELS))
    if unknown:
        raise ConfigError(f"unknown ISA or -O level {unknown}; ISAs: {', '.join(available)}, levels: O0, O3")
    skipped = {isa: available[isa] for isa in cfg.isas if available[isa]}
    for isa, why in skipped.items():
        say(f"slade: skipping {isa}: {why}")
    chosen = [(isa, opt) for isa in cfg.isas if isa not in skipped for opt in cfg.opts]
    if not chosen:
        raise ConfigError("no target left to compile for (every chosen ISA's compiler is missing)")
    return chosen, skipped


def tokenizers(cfg: SladeRecipeConfig, data: dict, root: Path) -> tuple[dict, dict]:
    """The T5 and decoder tokenizers (one BPE, the two layouts) and the measurement behind split_digits."""
    from slm.tokenizer import load_tokenizer, save_tokenizer, train_tokenizer

    texts = [r["asm"] for r in data["train"]] + list({r["c"] for r in data["train"]})
    sample = data["train"][:400]
    measured, chosen = {}, {}
    for split in (False, True):
        kinds = {"t5": "t5-bpe", "decoder": "byte-bpe"} if split == cfg.tokenizer["split_digits"] else {"t5": "t5-bpe"}
        for name, kind in kinds.items():
            path = root / "tokenizers" / f"{name}-{'split' if split else 'whole'}-{cfg.tokenizer['vocab_size']}"
            if not (path / "tokenizer.json").is_file():
                save_tokenizer(train_tokenizer(texts, cfg.tokenizer["vocab_size"], kind=kind, split_digits=split),
                               path)
            tok = load_tokenizer(path)
            if name == "t5":
                lengths = [len(tok(r["asm"])["input_ids"]) for r in sample]
                c_lengths = [len(tok(r["c"])["input_ids"]) for r in sample]
                measured["split_digits" if split else "whole_numbers"] = {
                    "asm_tokens_mean": statistics.fmean(lengths), "asm_tokens_max": max(lengths),
                    "c_tokens_mean": statistics.fmean(c_lengths),
                    "asm_over_input_tokens": sum(n > cfg.input_tokens for n in lengths) / len(lengths)}
            if split == cfg.tokenizer["split_digits"]:
                chosen[name] = tok
    return chosen, measured


def truncate(tok, text: str, tokens: int) -> str:
    """`text` cut to its first `tokens` tokens (special tokens left out), decoded back: both models see it."""
    ids = tok(text, add_special_tokens=False)["input_ids"]
    return text if len(ids) <= tokens else tok.decode(ids[:tokens])


# ------------------------------------------------------------------------------------------------ models
def train_model(cfg: SladeRecipeConfig, kind: str, tok, rows: list[dict], out: Path, seed: int) -> Path:
    """A fresh model of `kind` ("t5" or "decoder") fine-tuned on the (assembly -> C) rows, through slm finetune."""
    import slm
    from slm.io import atomic_write_jsonl
    from slm.models import ModelConfig, build_model, preset
    from slm.models.decoder import Decoder
    from slm.recipes.common import finetune_pairs

    if kind == "t5":
        length = max(cfg.input_tokens, cfg.target_tokens) + 8
        model = build_model(preset("t5-tiny", vocab_size=len(tok), max_seq_len=length,
                                   **dict(cfg.t5, dropout=0.0))).init_weights(seed)
        records = [{"input": r["asm"], "target": r["c"]} for r in rows]
    else:
        length = cfg.input_tokens + cfg.target_tokens + 32
        model = Decoder(ModelConfig(arch="llama", vocab_size=len(tok), max_seq_len=length, tie_embeddings=True,
                                    eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                                    **cfg.decoder)).init_weights(seed)
        records = [{"prompt": r["asm"], "completion": r["c"]} for r in rows]
    slm.save(model, tok, out / "init")
    atomic_write_jsonl(out / "train.jsonl", records)
    return finetune_pairs(out / "init", out / "train.jsonl", out, cfg.train, seed, seq2seq=kind == "t5",
                          seq_len=None if kind == "t5" else length, weight_decay=0.0, progress=True,
                          log_every=max(1, cfg.train["steps"] // 10))


def decode(cfg: SladeRecipeConfig, checkpoint: Path, kind: str, rows: list[dict], chunk: int = 8) -> list[list[str]]:
    """The n-best C of each test row, best first (beam search through the engine)."""
    import torch
    from tqdm import tqdm

    import slm
    from slm.infer.beam import BeamParams
    from slm.infer.engine import Engine

    model, tok = slm.load(checkpoint)
    engine = Engine(model, tok)
    stops = [] if kind == "t5" else [tok.convert_tokens_to_ids("<|im_end|>")]
    params = BeamParams(num_beams=cfg.beams, num_return_sequences=cfg.beams, max_tokens=cfg.target_tokens,
                        stop_token_ids=stops)
    prompts = [r["asm"] if kind == "t5" else tok.apply_chat_template(
        [{"role": "user", "content": r["asm"]}], tokenize=False, add_generation_prompt=True) for r in rows]
    out = []
    with torch.inference_mode():
        for start in tqdm(range(0, len(prompts), chunk), desc=f"slade: beam search ({kind})", unit="chunk"):
            for hyps in engine.beam_search(prompts[start:start + chunk], params):
                out.append([h.text.replace("<|im_end|>", "").strip() + "\n" for h in hyps])
    return out


# ------------------------------------------------------------------------------------------------ scoring
def score_model(judge, rows: list[dict], candidates: list[list[str]], count_rescue: bool = False) -> dict:
    """Per cell (isa/opt, and origin when real or user functions are in the test set): rates over its rows."""
    from tqdm import tqdm

    from slm.recipes.slade.judge import SETTINGS, edit_similarity

    cells: dict[str, dict] = {}
    for row, cands in tqdm(list(zip(rows, candidates)), desc="slade: judging", unit="fn", leave=False):
        verdict = judge.score(row["function"], cands, count_rescue=count_rescue)
        key = f"{row['isa']}/{row['opt']}" + ("" if row["origin"] == "generated" else f" ({row['origin']})")
        cell = cells.setdefault(key, {"n": 0, "edit_similarity": 0.0,
                                      **{f"{m}_{s}": 0.0 for s in SETTINGS for m in ("top1", "beam", "compiles")}})
        cell["n"] += 1
        cell["edit_similarity"] += edit_similarity(cands[0], row["c"]) if cands else 0.0
        for s, v in verdict.items():
            cell[f"top1_{s}"] += v.passed_top1
            cell[f"beam_{s}"] += v.passed_any
            cell[f"compiles_{s}"] += v.compiled_top1
    for cell in cells.values():
        for k in cell:
            if k != "n":
                cell[k] /= cell["n"]
    return cells


def run(cfg: SladeRecipeConfig) -> dict:
    import torch

    from slm.errors import ConfigError
    from slm.recipes.slade.data import build_dataset
    from slm.recipes.slade.judge import Judge, Retrieval, return_zero

    unknown = sorted(set(cfg.models) - set(MODELS))
    if unknown:
        raise ConfigError(f"unknown models {unknown}; choose from {', '.join(MODELS)}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    start = time.time()
    root = Path(cfg.out_dir)
    chosen, skipped = targets(cfg)
    data = build_dataset(cfg.data, root, chosen)
    toks, measured = tokenizers(cfg, data, root)
    for row in data["train"] + data["test"]:
        row["asm"] = truncate(toks["t5"], row["asm"], cfg.input_tokens)
    test = data["test"]
    judge = Judge(data["functions"])
    summary = {"config": asdict(cfg), "targets": [f"{i}/{o}" for i, o in chosen], "skipped": skipped,
               "tokenizer": measured, "n_functions": len(data["functions"]), "n_train_rows": len(data["train"]),
               "n_test_rows": len(test), "table": {m: [] for m in cfg.models}, "rescue": [], "examples": []}
    fixed = {}  # baselines that do not depend on the seed are judged once
    if "retrieval" in cfg.models:
        retrieval = Retrieval(data["train"])
        fixed["retrieval"] = score_model(judge, test, [retrieval.candidates(r, cfg.beams) for r in test])
    if "return0" in cfg.models:
        fixed["return0"] = score_model(judge, test, [[return_zero(data["functions"][r["function"]]["fn"])]
                                                     for r in test])
    for seed in cfg.seeds:
        for model in cfg.models:
            t0 = time.time()
            if model in fixed:
                cells = fixed[model]
            else:
                kind = "t5" if model == "slade" else "decoder"
                out = root / f"seed-{seed}" / model
                checkpoint = train_model(cfg, kind, toks[kind], data["train"], out, seed)
                candidates = decode(cfg, checkpoint, kind, test)
                judge.rescued = {"compile": 0, "pass": 0, "needed": 0}
                cells = score_model(judge, test, candidates, count_rescue=True)
                summary["rescue"].append({"seed": seed, "model": model, **judge.rescued})
                if seed == cfg.seeds[0]:
                    summary["examples"] += [{"model": model, "asm": r["asm"], "reference": r["c"], "top1": c[0]}
                                            for r, c in list(zip(test, candidates))[:: max(1, len(test) // 4)]]
            summary["table"][model].append({"seed": seed, "cells": cells, "seconds": time.time() - t0})
            print(f"slade seed {seed} {model}: " + ", ".join(
                f"{k} {v['beam_inferred']:.2f}" for k, v in cells.items()) + f" ({time.time() - t0:.0f}s)",
                flush=True)
            _save(summary, root, start)  # after every run: an interrupted one keeps its rows
    return _save(summary, root, start)


def _save(summary: dict, root: Path, start: float) -> dict:
    from slm.io import atomic_write_text

    summary.update(seconds=time.time() - start, date=time.strftime("%Y-%m-%d", time.gmtime()))
    atomic_write_text(root / "results.json", json.dumps(summary, indent=2) + "\n")
    return summary


def format_table(summary: dict) -> str:
    """One table per origin of the test functions (generated, then real and user ones where present)."""
    from slm.recipes.common import mean_sd

    n = len(summary["config"]["seeds"])
    metrics = [("beam_inferred", "IO beam, type inference"), ("top1_inferred", "IO top-1, type inference"),
               ("beam_none", "IO beam, no declarations"), ("beam_declarations", "IO beam, reference declarations"),
               ("compiles_inferred", "top-1 compiles (type inference)"), ("edit_similarity", "edit similarity top-1")]
    present = {c for runs in summary["table"].values() for r in runs for c in r["cells"]}
    lines = []
    for origin in ("", " (real)", " (user)"):
        cells = [t + origin for t in summary["targets"] if t + origin in present]
        if not cells:
            continue
        rows = max(r["cells"].get(cells[0], {}).get("n", 0) for runs in summary["table"].values() for r in runs)
        lines += [""] if lines else []
        lines += [f"SLaDe: IO accuracy (%; {n} seed(s), mean ± sd), {(origin.strip(' ()') or 'generated')} "
                  f"functions, {rows} test rows per target; beam = first of the n-best that compiles and passes",
                  "| model | metric | " + " | ".join(cells) + " |", "|---|---" + "|---" * len(cells) + "|"]
        for model, runs in summary["table"].items():
            for key, label in metrics:
                values = [mean_sd([r["cells"].get(c, {}).get(key, float("nan")) for r in runs], 100) for c in cells]
                lines.append(f"| {model} | {label} | " + " | ".join(values) + " |")
    for r in summary["rescue"]:
        lines.append(f"type inference, seed {r['seed']} {r['model']}: {r['needed']} top-1 candidates do not compile "
                     f"alone, {r['compile']} compile with inferred declarations, {r['pass']} of them pass IO")
    return "\n".join(lines)


def register(parser: argparse.ArgumentParser) -> None:
    from slm.cli.recipe import add_recipe_options, table_recipe_main

    add_recipe_options(parser, DEFAULT_RECIPE, "seeds=[0] --set isas=[x86_64]")
    parser.set_defaults(func=table_recipe_main(DEFAULT_RECIPE, SladeRecipeConfig, run, format_table))
