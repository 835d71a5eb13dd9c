"""FLAME at CPU scale: a small T5 for Excel formulas, pre-trained with the formula objectives, fine-tuned on
last-mile repair and completion, evaluated by beam search against the baselines and ablations of the paper.

    slm recipe flame                                     # recipes/flame.yaml: 3 seeds, the table
    slm recipe flame --config recipes/flame-smoke.yaml   # seconds; the numbers mean nothing
    slm recipe flame --eval-repair bugs.json --model runs/flame/seed-0/flame/finetune/step-...   # a user's file
    slm recipe flame --eval-completion prefixes.json --model DIR

Once per seed: generated workbooks (generator.py), split by workbook into train / test (a test workbook's
formulas never reach training); the training side sketch-deduplicated per workbook (FLAME) or globally (the
ablation); the formula tokenizer (tokenizer.py) on it. Per seed and model variant, all through `slm finetune`:
  pretrain   `pretrain_examples` (corrupted formula -> the whole formula) pairs, the objective of each group of
             `batch_size` consecutive pairs drawn by ObjectiveSampler with the paper's rates (laMSP 50%, tail 20%,
             user noise 20%, random 5%, unchanged 5%). The batcher shuffles rows, so a batch mixes objectives:
             the rates hold, the one-objective-per-batch grouping does not (a deviation, written on the docs page);
  finetune   one multi-task model on repair pairs (user noise of the test-disjoint training formulas) and
             completion pairs (a 20-80% prefix + <mask>), the paper fine-tunes per task;
  evaluate   repair top-1 / top-5 exact match (after lexer.normalise) by beam search over the test workbooks'
             noised formulas; completion exact / sketch match (top-1) from 50 / 75 / 90% prefixes; retrieval:
             a head (mean-pooled frozen encoder states + two layers) trained so the cosine of two formulas follows
             the Levenshtein similarity of their lexer tokens, Pearson correlation on test pairs.
Variants: flame (laMSP, per-workbook dedup), msp (T5's plain span corruption over sub-tokens instead of laMSP),
global-dedup (the training formulas deduplicated across workbooks), decoder (a decoder-only model of about the
same size trained on the same pairs as prompt -> completion). Repair baselines without training: identity (the
buggy input) and the rule-based bracket/quote balancer (tasks.balance).
"""
from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from slm.errors import ConfigError, SlmError

DEFAULT_RECIPE = "recipes/flame.yaml"
VARIANTS = ("flame", "msp", "global-dedup", "decoder")
# The decoder baseline's conversation: input </s> output </s> (the FLAME tokenizer has no chat tokens).
DECODER_TEMPLATE = "{% for m in messages %}{{ m['content'] }}{{ eos_token }}{% endfor %}"
# FLAME's model is T5-small's shape (slm.models.presets "t5-small": d=512, 6+6 layers, 8 heads, ffn 2048, ReLU,
# tied; 60.5M parameters with T5's 32k vocabulary, 52.2M with the paper's 16k formula vocabulary): documented, not
# run at CPU scale. `--set model='{preset: t5-small}' --set vocab_size=16000` selects it.
FLAME_60M = dict(model=dict(preset="t5-small"), vocab_size=16000)


@dataclass
class FlameRecipeConfig:
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    out_dir: str = "runs/flame"
    threads: int = 0
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    workbooks: int = 600
    test_fraction: float = 0.2
    vocab_size: int = 1000
    # a seq2seq preset's shape (default t5-tiny) and overrides; {preset: t5-small} is FLAME's size
    model: dict = field(default_factory=lambda: dict(dim=128, n_layers=2, n_heads=4, head_dim=32, ffn_dim=256))
    # the decoder baseline: 2 x n_layers layers of the same width (about the T5's parameters)
    decoder: dict = field(default_factory=lambda: dict(dim=128, n_layers=4, n_heads=4, n_kv_heads=4, ffn_dim=320))
    pretrain_examples: int = 6000
    pretrain: dict = field(default_factory=lambda: dict(steps=400, batch_size=32, lr=2e-3, warmup_steps=40))
    finetune_examples: int = 3000
    finetune: dict = field(default_factory=lambda: dict(steps=300, batch_size=32, lr=1e-3, warmup_steps=30))
    test_examples: int = 100  # per task
    beams: int = 5
    max_tokens: int = 80
    retrieval: dict = field(default_factory=lambda: dict(pairs=2000, steps=300, lr=3e-3, hidden=128))


# ------------------------------------------------------------------------------------------------ data
def split_workbooks(cfg: FlameRecipeConfig, seed: int):
    from slm.recipes.flame.generator import generate_workbooks

    books = generate_workbooks(cfg.workbooks, seed=seed)
    random.Random(f"slm-flame-split:{seed}").shuffle(books)
    n_test = max(1, round(cfg.test_fraction * len(books)))
    return books[n_test:], books[:n_test]


def _pairs_file(path: Path, pairs, decoder: bool) -> Path:
    from slm.io import atomic_write_jsonl

    key = ("prompt", "completion") if decoder else ("input", "target")
    return atomic_write_jsonl(path, [{key[0]: a, key[1]: b} for a, b in pairs])


def pretrain_pairs(formulas: list[str], tok, n: int, batch_size: int, seed: int, lamsp: bool) -> list[tuple]:
    """(encoder input, target) text pairs under the sampled objectives; msp swaps laMSP for sub-token spans."""
    from slm.recipes.flame.objectives import ObjectiveSampler, corrupt

    sampler = ObjectiveSampler(seed=seed)
    rng = random.Random(f"slm-flame-pretrain:{seed}")
    out = []
    for i in range(n):
        objective = sampler.choose(i // batch_size)
        if objective == "lamsp" and not lamsp:
            objective = "msp"
        formula = formulas[rng.randrange(len(formulas))]
        ids = corrupt(objective, formula, tok, rng)
        # As text again (the <mask> kept), so `slm finetune` reads it like any pair file.
        out.append((tok.decode(ids, skip_special_tokens=False).replace(tok.eos_token, ""), formula))
    return out


def test_sets(cfg: FlameRecipeConfig, test_formulas: list[str], tok, seed: int) -> dict:
    from slm.recipes.flame.tasks import COMPLETION_FRACTIONS, completion_at, repair_pairs

    rng = random.Random(f"slm-flame-test:{seed}")
    formulas = sorted(set(test_formulas))
    rng.shuffle(formulas)
    sets = {"repair": repair_pairs(formulas, rng)[:cfg.test_examples]}
    for fraction in COMPLETION_FRACTIONS:
        sets[f"completion-{round(fraction * 100)}"] = completion_at(formulas[:cfg.test_examples], tok, fraction)
    return sets


# ------------------------------------------------------------------------------------------------ models
def fresh(cfg: FlameRecipeConfig, tok, kind: str, seed: int, out: Path) -> Path:
    import slm
    from slm.models import build_model, preset

    if kind == "decoder":
        tok.chat_template = DECODER_TEMPLATE
        model = build_model(preset("nano", vocab_size=len(tok), max_seq_len=256, **cfg.decoder))
    else:
        shape = dict(cfg.model)
        model = build_model(preset(shape.pop("preset", "t5-tiny"), vocab_size=len(tok), **dict(shape, dropout=0.0)))
    return slm.save(model.init_weights(seed), tok, out)


def train(base: Path, data: Path, out: Path, settings: dict, seed: int, decoder: bool) -> Path:
    from slm.recipes.common import finetune_pairs

    # A decoder's packed row of 192 tokens holds about two pairs: half the rows see as many pairs as the T5.
    s = dict(settings, batch_size=max(1, settings["batch_size"] // 2)) if decoder else settings
    return finetune_pairs(base, data, out, s, seed, seq2seq=not decoder, seq_len=192 if decoder else None)


# ------------------------------------------------------------------------------------------------ scoring
def scores(ranked: list[list[str]], pairs) -> dict:
    """Top-1 / top-5 exact and sketch match of the ranked outputs against each pair's truth."""
    from slm.recipes.flame.tasks import top_k_exact, top_k_sketch

    truths = [b for _, b in pairs]
    return {"top1": top_k_exact(ranked, truths, 1), "top5": top_k_exact(ranked, truths, 5),
            "sketch1": top_k_sketch(ranked, truths, 1), "sketch5": top_k_sketch(ranked, truths, 5)}


def score_sets(model, tok, sets: dict, beams: int, max_tokens: int) -> dict:
    from slm.recipes.flame.tasks import predict

    return {name: scores(predict(model, tok, [a for a, _ in pairs], beams=beams, max_tokens=max_tokens), pairs)
            for name, pairs in sets.items()}


def score_baseline(pairs, repair) -> dict:
    return scores([[repair(a)] for a, _ in pairs], pairs)


def token_similarity(a: str, b: str) -> float:
    """1 - the Levenshtein distance of the two formulas' lexer tokens / the longer token count."""
    from slm.eval.metrics import sequence_similarity
    from slm.recipes.flame.lexer import lex

    x, y = [t.text.upper() for t in lex(a) if t.kind != "ws"], [t.text.upper() for t in lex(b) if t.kind != "ws"]
    return sequence_similarity(x, y)


def retrieval(model, tok, train_formulas: list[str], test_formulas: list[str], r: dict, seed: int) -> float:
    """Pearson correlation on test pairs between the head's cosine and the token similarity. The head is two
    layers over the frozen encoder's mean-pooled states, trained by MSE on training pairs (a few hundred steps of a
    two-layer head: a plain loop, the Trainer's checkpoints and schedules would be all overhead)."""
    import torch

    rng = random.Random(f"slm-flame-retrieval:{seed}")
    torch.manual_seed(seed)

    def pairs(formulas, n):
        out = []
        for _ in range(n):
            a = rng.choice(formulas)
            # Half the pairs share a function name, so the similarities spread over [0, 1], not all near 0.
            same = [f for f in rng.sample(formulas, min(40, len(formulas)))
                    if token_similarity(a, f) > 0.3] if rng.random() < 0.5 else []
            out.append((a, rng.choice(same) if same else rng.choice(formulas)))
        return out

    @torch.no_grad()
    def pooled(texts):
        enc = tok(texts, padding=True, return_tensors="pt", truncation=True, max_length=128)
        states = model.encode(enc["input_ids"], enc["attention_mask"])
        m = enc["attention_mask"].unsqueeze(-1).to(states.dtype)
        return (states * m).sum(1) / m.sum(1)

    def embed_pairs(ps):
        left, right = [], []
        for i in range(0, len(ps), 64):
            left.append(pooled([a for a, _ in ps[i:i + 64]]))
            right.append(pooled([b for _, b in ps[i:i + 64]]))
        return torch.cat(left), torch.cat(right), torch.tensor([token_similarity(a, b) for a, b in ps])

    model.eval()
    xa, xb, y = embed_pairs(pairs(train_formulas, r["pairs"]))
    ta, tb, ty = embed_pairs(pairs(test_formulas, max(50, r["pairs"] // 4)))
    head = torch.nn.Sequential(torch.nn.Linear(xa.shape[1], r["hidden"]), torch.nn.ReLU(),
                               torch.nn.Linear(r["hidden"], r["hidden"]))
    opt = torch.optim.Adam(head.parameters(), lr=r["lr"])
    for _ in range(r["steps"]):
        idx = torch.randint(0, len(y), (64,))
        cos = torch.nn.functional.cosine_similarity(head(xa[idx]), head(xb[idx]))
        loss = torch.nn.functional.mse_loss(cos, y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        cos = torch.nn.functional.cosine_similarity(head(ta), head(tb))
    return float(torch.corrcoef(torch.stack([cos, ty]))[0, 1])


# ------------------------------------------------------------------------------------------------ the run
def run_variant(cfg: FlameRecipeConfig, variant: str, seed: int, train_books, sets, test_formulas) -> dict:
    import slm
    from slm.recipes.flame.dedup import dedup
    from slm.recipes.flame.tasks import completion_pairs, repair_pairs
    from slm.recipes.flame.tokenizer import train_formula_tokenizer

    root = Path(cfg.out_dir) / f"seed-{seed}" / variant
    decoder = variant == "decoder"
    formulas = [f for _, f in dedup(train_books, "global" if variant == "global-dedup" else "workbook")]
    tok = train_formula_tokenizer(formulas, cfg.vocab_size)
    p = cfg.pretrain
    pre = _pairs_file(root / "pretrain.jsonl", pretrain_pairs(formulas, tok, cfg.pretrain_examples, p["batch_size"],
                                                              seed, lamsp=variant != "msp"), decoder)
    base = train(fresh(cfg, tok, "decoder" if decoder else "t5", seed, root / "init"), pre, root / "pretrain", p,
                 seed, decoder)
    rng = random.Random(f"slm-flame-finetune:{seed}")
    half = cfg.finetune_examples // 2
    tune = [rng.choice(formulas) for _ in range(cfg.finetune_examples)]
    ft = repair_pairs(tune[:half], rng) + completion_pairs(tune[half:], tok, rng)
    rng.shuffle(ft)
    tuned = train(base, _pairs_file(root / "finetune.jsonl", ft, decoder), root / "finetune", cfg.finetune, seed,
                  decoder)
    model, tok = slm.load(tuned)
    model.eval()
    result = {"checkpoint": str(tuned), "train_formulas": len(formulas),
              "parameters": sum(p.numel() for p in model.parameters()),
              "scores": score_sets(model, tok, sets, cfg.beams, cfg.max_tokens)}
    result["retrieval_pearson"] = float("nan") if decoder else retrieval(model, tok, formulas, test_formulas,
                                                                         cfg.retrieval, seed)
    return result


def run(cfg: FlameRecipeConfig) -> dict:
    import torch

    from slm.recipes.flame.tasks import balance
    from slm.recipes.flame.tokenizer import train_formula_tokenizer

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    unknown = set(cfg.variants) - set(VARIANTS)
    if unknown:
        raise ConfigError(f"unknown variant(s) {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    start = time.time()
    table: dict = {}
    for seed in cfg.seeds:
        train_books, test_books = split_workbooks(cfg, seed)
        test_formulas = [f for b in test_books for f in b.formulas]
        # The test prefixes are cut at sub-token boundaries of one tokenizer, the same for every variant.
        split_tok = train_formula_tokenizer([f for b in train_books for f in b.formulas], cfg.vocab_size)
        sets = test_sets(cfg, test_formulas, split_tok, seed)
        for name, repair in (("identity", lambda s: s), ("rule-based", balance)):
            table.setdefault(name, []).append({"scores": {"repair": score_baseline(sets["repair"], repair)}})
        for variant in cfg.variants:
            t0 = time.time()
            result = run_variant(cfg, variant, seed, train_books, sets, test_formulas)
            table.setdefault(variant, []).append(result)
            s = result["scores"]
            print(f"seed {seed} {variant}: repair top-1 {s['repair']['top1']:.3f} top-5 {s['repair']['top5']:.3f}; "
                  + ", ".join(f"{k} {v['top1']:.3f}/{v['sketch1']:.3f}" for k, v in s.items() if k != "repair")
                  + f"; retrieval r {result['retrieval_pearson']:.3f} ({time.time() - t0:.0f}s)", flush=True)
            _save(cfg, table, start)
    return _save(cfg, table, start)


def _save(cfg: FlameRecipeConfig, table: dict, start: float) -> dict:
    import torch

    from slm.io import atomic_write_text

    summary = {"config": asdict(cfg), "table": table, "seconds": time.time() - start,
               "date": time.strftime("%Y-%m-%d"), "threads": torch.get_num_threads(), "flame_60m": FLAME_60M}
    atomic_write_text(Path(cfg.out_dir) / "results.json", json.dumps(summary, indent=2) + "\n")
    return summary


def format_table(summary: dict) -> str:
    from slm.recipes.common import mean_sd

    n = len(summary["config"]["seeds"])
    lines = [f"FLAME: repair, completion (exact / sketch, top-1) and retrieval ({n} seed(s), mean ± sd, %)",
             "| model | repair top-1 | repair top-5 | compl. 50% | compl. 75% | compl. 90% | retrieval Pearson |",
             "|---|---|---|---|---|---|---|"]
    nan = float("nan")
    for name, rows in summary["table"].items():
        get = lambda task, key: [r["scores"][task][key] if task in r["scores"] else nan for r in rows]
        cells = [mean_sd(get("repair", "top1"), 100), mean_sd(get("repair", "top5"), 100)]
        for k in ("completion-50", "completion-75", "completion-90"):
            cells.append(f"{mean_sd(get(k, 'top1'), 100)} / {mean_sd(get(k, 'sketch1'), 100)}")
        cells.append(mean_sd([r.get("retrieval_pearson", nan) for r in rows], digits=3))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ files
def evaluate_file(model_dir: str, path: str, task: str, beams: int = 5, max_tokens: int = 80) -> dict:
    """Top-1 / top-5 exact and sketch match of a trained checkpoint on a user's repair or completion file."""
    import slm
    from slm.recipes.flame.tasks import read_completion_file, read_repair_file
    from slm.recipes.flame.tokenizer import check_tokenizer

    pairs = read_repair_file(path) if task == "repair" else read_completion_file(path)
    if not model_dir:
        raise SlmError(f"--eval-{task} needs --model DIR (a checkpoint `slm recipe flame` trained)")
    if not Path(model_dir).is_dir():
        raise SlmError(f"model directory not found: {model_dir}")
    model, tok = slm.load(model_dir)
    if tok is None:
        raise SlmError(f"{model_dir} has no tokenizer; use a checkpoint `slm recipe flame` trained")
    check_tokenizer(tok)
    model.eval()
    return score_sets(model, tok, {task: pairs}, beams, max_tokens)[task] | {"items": len(pairs)}


def register(parser: argparse.ArgumentParser) -> None:
    from slm.cli.recipe import add_recipe_options, table_recipe_main

    add_recipe_options(parser, DEFAULT_RECIPE, "seeds=[0] --set variants=[flame]")
    parser.add_argument("--eval-repair", metavar="FILE.json", default=None,
                        help='score --model on a JSON list of {"Buggy": ..., "GroundTruth": ...}')
    parser.add_argument("--eval-completion", metavar="FILE.json", default=None,
                        help='score --model on a JSON list of {"Masked": "PREFIX<mask>", "Completion": ...}')
    parser.add_argument("--model", default=None, help="a checkpoint the recipe trained (for --eval-*)")
    parser.add_argument("--beams", type=int, default=5, help="beam width for --eval-* (top-5 needs 5)")
    table_main = table_recipe_main(DEFAULT_RECIPE, FlameRecipeConfig, run, format_table)

    def main(args) -> int:
        if args.eval_repair and args.eval_completion:
            raise SlmError("pass one of --eval-repair and --eval-completion")
        if args.eval_repair or args.eval_completion:
            task = "repair" if args.eval_repair else "completion"
            s = evaluate_file(args.model, args.eval_repair or args.eval_completion, task, args.beams)
            print(f"{task} ({s['items']} item(s)): top-1 exact {s['top1']:.1%}, top-5 exact {s['top5']:.1%}, "
                  f"top-1 sketch {s['sketch1']:.1%}, top-5 sketch {s['sketch5']:.1%}")
            return 0
        if args.model:
            raise SlmError("--model picks the checkpoint for --eval-repair / --eval-completion")
        return table_main(args)

    parser.set_defaults(func=main)
