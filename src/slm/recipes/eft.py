"""EFT up-scaling at CPU scale: a large base's knowledge with a small fine-tuned model's answer format.

    slm recipe eft                                   # recipes/eft.yaml: 3 seeds, prints the table
    slm recipe eft --config recipes/eft-smoke.yaml   # seconds; the numbers mean nothing

Per seed:
  1. a world of made-up entities with attributes drawn from a seeded RNG ("the color of zorvak is teal");
  2. a byte-level BPE and two bases pretrained on the SAME corpus (every fact as a statement and as a question
     answered in each of four styles, the target format being one of them): a large one that memorises most facts,
     a small one that memorises few;
  3. the small base fine-tuned (answer tokens only) on `Q: what is the color of X?\\n` -> `A: teal.` for a
     subset of entities: the target behaviour is the answer format;
  4. greedy answers to held-out entities' questions from the small base, large base, small fine-tuned and the
     up-scaled composition EFTModel(large base, [(small fine-tuned, 1)], small base); two metrics:
       format     the answer is exactly `A: <word>.`                      (the fine-tuning's behaviour)
       knowledge  the answer's last word before the first period is the true attribute value
  5. (lambdas) a second expert fine-tuned to answer tersely (`teal.`), and the interpolation between the two
     up-scaled experts: weights lam and 1 - lam, for each lam.
The models and a composition YAML (`upscaled.yaml`, usable with slm generate/serve/eval) stay in out_dir.
"""
from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

DEFAULT_RECIPE = "recipes/eft.yaml"
ROWS = ("small base", "large base", "small fine-tuned", "up-scaled (EFT)")

ATTRIBUTES = {
    "color": ["red", "blue", "green", "teal", "amber", "violet", "gray", "pink", "gold", "white", "black", "brown"],
    "city": ["paris", "lima", "oslo", "cairo", "quito", "delhi", "rome", "tokyo", "dakar", "perth", "minsk", "hanoi"],
    "pet": ["cat", "dog", "fox", "owl", "bee", "yak", "eel", "ram", "bat", "elk", "cow", "ant"],
}
SYLLABLES = ["ka", "lo", "mi", "ru", "ze", "vo", "ta", "ni", "po", "shi", "gra", "bel", "dor", "fen", "jul", "kor",
             "lum", "mar", "nox", "pel", "qua", "ris", "sol", "tir", "ul", "ven", "wix", "yar", "zan", "bri"]


@dataclass
class WorldConfig:
    entities: int = 60
    attributes: int = 2  # how many of ATTRIBUTES each entity has
    finetune_fraction: float = 0.5  # entities whose questions teach the answer format; the rest are held out

    def __post_init__(self):
        from slm.errors import ConfigError

        if not 1 <= self.attributes <= len(ATTRIBUTES):
            raise ConfigError(f"world.attributes must be between 1 and {len(ATTRIBUTES)}, got {self.attributes}")
        cut = round(self.finetune_fraction * self.entities)
        if not 0 < cut < self.entities:
            raise ConfigError("world.entities and world.finetune_fraction must leave at least one entity for "
                              f"fine-tuning and one held out (got {self.entities} and {self.finetune_fraction})")


@dataclass
class ModelSize:
    dim: int = 64
    n_layers: int = 4
    n_heads: int = 4
    ffn_dim: int = 192


@dataclass
class TrainStage:
    steps: int = 300
    lr: float = 3e-3
    batch_size: int = 8
    warmup_steps: int = 20


@dataclass
class EFTRecipeConfig:
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    out_dir: str = "runs/eft"
    threads: int = 0  # torch threads; 0 leaves torch's default
    vocab_size: int = 400
    seq_len: int = 128
    world: WorldConfig = field(default_factory=WorldConfig)
    large: ModelSize = field(default_factory=ModelSize)
    small: ModelSize = field(default_factory=lambda: ModelSize(dim=32, n_layers=1, n_heads=2, ffn_dim=64))
    pretrain_large: TrainStage = field(default_factory=TrainStage)
    pretrain_small: TrainStage = field(default_factory=lambda: TrainStage(steps=150))
    finetune: TrainStage = field(default_factory=lambda: TrainStage(steps=40, lr=1e-3, batch_size=8, warmup_steps=5))
    max_tokens: int = 16  # per generated answer
    # Interpolation between two experts, both up-scaled: expert A answers `A: teal.`, expert B answers `teal.`;
    # the composition weighs A by lam and B by 1 - lam. Empty: skip (and do not train expert B).
    lambdas: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])
    progress: bool = False

    def __post_init__(self):
        from slm.errors import ConfigError

        if not self.seeds:
            raise ConfigError("seeds must name at least one seed")
        for stage in ("pretrain_large", "pretrain_small", "finetune"):
            if getattr(self, stage).steps < 1:
                raise ConfigError(f"{stage}.steps must be at least 1")


# ---------------------------------------------------------------------------------------------- the world

@dataclass
class Fact:
    entity: str
    attribute: str
    value: str

    @property
    def question(self) -> str:
        return f"Q: what is the {self.attribute} of {self.entity}?\n"

    @property
    def statement(self) -> str:
        return f"the {self.attribute} of {self.entity} is {self.value}."

    @property
    def target_answer(self) -> str:
        return f"A: {self.value}."


def make_world(seed: int, cfg: WorldConfig) -> tuple[list[Fact], list[Fact]]:
    """(fine-tuning facts, held-out facts): every entity's attributes, entities split between the two."""
    rng = random.Random(f"slm-eft-world:{seed}")
    names: set[str] = set()
    while len(names) < cfg.entities:
        names.add("".join(rng.choice(SYLLABLES) for _ in range(rng.choice((2, 3)))))
    entities = sorted(names)
    rng.shuffle(entities)
    attributes = list(ATTRIBUTES)[:cfg.attributes]
    facts = {e: [Fact(e, a, rng.choice(ATTRIBUTES[a])) for a in attributes] for e in entities}
    cut = round(cfg.finetune_fraction * len(entities))
    return ([f for e in entities[:cut] for f in facts[e]], [f for e in entities[cut:] for f in facts[e]])


# How pretraining documents answer a question. Every fact is asked once in each style, so the bases learn
# a prior over the form of an answer (the target format is one style among several, as a base model has seen
# helpful answers among many others) and fine-tuning makes the target format the only one.
ANSWER_STYLES = ("{statement}", "it is {value}.", "{value}.", "A: {value}.")


def pretraining_documents(facts: list[Fact]) -> list[str]:
    """The bases' corpus: every fact as a statement and as a question answered in each style."""
    return [d for f in facts for d in
            [f.statement] + [f.question + s.format(statement=f.statement, value=f.value) for s in ANSWER_STYLES]]


# ------------------------------------------------------------------------------------------- scoring

ANSWER_FORMAT = re.compile(r"A: [a-z]+\.")  # the target behaviour (expert A's)
TERSE_FORMAT = re.compile(r"[a-z]+\.")  # expert B's, for the interpolation


def follows_format(text: str, pattern: re.Pattern = ANSWER_FORMAT) -> bool:
    return pattern.fullmatch(text.strip()) is not None


def stated_value(text: str) -> str | None:
    """The last word before the first period: 'A: teal.' and 'the color of x is teal.' both state 'teal'."""
    words = re.findall(r"[a-z]+", text.split(".")[0])
    return words[-1] if words else None


def score(answers: list[str], facts: list[Fact]) -> dict[str, float]:
    n = len(facts)
    return {"format": sum(follows_format(a) for a in answers) / n,
            "terse": sum(follows_format(a, TERSE_FORMAT) for a in answers) / n,
            "knowledge": sum(stated_value(a) == f.value for a, f in zip(answers, facts)) / n}


def answer_all(model, tokenizer, facts: list[Fact], max_tokens: int) -> list[str]:
    from slm.infer import Engine, SamplingParams

    engine = Engine(model, tokenizer, max_batch_size=256)
    params = SamplingParams(max_tokens=max_tokens, stop=["\n"])
    return [c.text for c in engine.generate([f.question for f in facts], params)]


# ------------------------------------------------------------------------------------------ training

def examples(tokenizer, pairs: list[tuple[str, str]]):
    """SFT examples from (prompt, target text): loss on the target and the EOS that ends it."""
    from slm.finetune import IGNORE, SFTExample

    out = []
    for prompt, target in pairs:
        p = tokenizer.encode(prompt, add_special_tokens=False) if prompt else []
        t = tokenizer.encode(target, add_special_tokens=False) + [tokenizer.eos_token_id]
        ids = p + t
        first_target = max(len(p), 1)  # labels[i] is the target of position i, i.e. ids[i + 1]
        labels = [ids[i + 1] if i + 1 >= first_target else IGNORE for i in range(len(ids) - 1)] + [IGNORE]
        out.append(SFTExample(ids, labels))
    return out


def train(model, tokenizer, data, stage: TrainStage, seq_len: int, seed: int, out_dir: Path, progress: bool):
    from slm.finetune import SFTBatches
    from slm.train import TrainConfig, Trainer

    batches = SFTBatches(data, seq_len=seq_len, batch_size=stage.batch_size, pad_id=tokenizer.pad_token_id, seed=seed)
    config = TrainConfig(max_steps=stage.steps, lr=stage.lr, min_lr=stage.lr / 10, warmup_steps=stage.warmup_steps,
                         weight_decay=0.0, seed=seed, log_every=max(stage.steps // 10, 1), keep_last=1,
                         progress=progress)
    Trainer(model, config, batches, out_dir=out_dir, tokenizer=tokenizer).fit()
    return model.eval()


def build_model(size: ModelSize, tokenizer, max_seq_len: int, seed: int):
    from slm.models import Decoder, ModelConfig

    cfg = ModelConfig(vocab_size=len(tokenizer), dim=size.dim, n_layers=size.n_layers, n_heads=size.n_heads,
                      ffn_dim=size.ffn_dim, max_seq_len=max_seq_len, eos_token_id=tokenizer.eos_token_id,
                      bos_token_id=tokenizer.bos_token_id, pad_token_id=tokenizer.pad_token_id)
    return Decoder(cfg).init_weights(seed)


# ---------------------------------------------------------------------------------------------- a run

def run_seed(cfg: EFTRecipeConfig, seed: int) -> dict:
    import torch

    import slm
    from slm.compose import EFTModel

    out = Path(cfg.out_dir) / f"seed-{seed}"
    ft_facts, held_out = make_world(seed, cfg.world)
    corpus = pretraining_documents(ft_facts + held_out)
    tokenizer = slm.train_tokenizer(corpus, vocab_size=cfg.vocab_size, kind="byte-bpe")
    pretrain_data = examples(tokenizer, [("", d) for d in corpus])
    finetune_data = examples(tokenizer, [(f.question, f.target_answer) for f in ft_facts])

    torch.manual_seed(seed)
    large = train(build_model(cfg.large, tokenizer, cfg.seq_len, seed), tokenizer, pretrain_data,
                  cfg.pretrain_large, cfg.seq_len, seed, out / "train-large", cfg.progress)
    small = train(build_model(cfg.small, tokenizer, cfg.seq_len, seed + 1000), tokenizer, pretrain_data,
                  cfg.pretrain_small, cfg.seq_len, seed, out / "train-small", cfg.progress)
    small_ft = train(_copy(small), tokenizer, finetune_data, cfg.finetune, cfg.seq_len, seed,
                     out / "train-small-ft", cfg.progress)
    upscaled = EFTModel(large, [(small_ft, 1.0)], small).eval()

    results = {}
    for row, model in zip(ROWS, (small, large, small_ft, upscaled)):
        answers = answer_all(model, tokenizer, held_out, cfg.max_tokens)
        results[row] = {**score(answers, held_out), "examples": answers[:3]}
    interpolation = {}
    if cfg.lambdas:
        terse_data = examples(tokenizer, [(f.question, f"{f.value}.") for f in ft_facts])
        small_terse = train(_copy(small), tokenizer, terse_data, cfg.finetune, cfg.seq_len, seed,
                            out / "train-small-terse", cfg.progress)
        for lam in cfg.lambdas:
            mixed = EFTModel(large, [(small_ft, lam), (small_terse, 1.0 - lam)], small).eval()
            interpolation[str(lam)] = score(answer_all(mixed, tokenizer, held_out, cfg.max_tokens), held_out)
    for name, model in (("large-base", large), ("small-base", small), ("small-ft", small_ft)):
        slm.save(model, tokenizer, out / name)
    (out / "upscaled.yaml").write_text("kind: eft\nbase: large-base\nreference: small-base\n"
                                       "experts:\n  - {model: small-ft, weight: 1.0}\n")
    return {"seed": seed, "held_out_questions": len(held_out), "finetune_questions": len(ft_facts),
            "questions": [f.question for f in held_out[:3]], "truth": [f.value for f in held_out[:3]],
            "results": results, "interpolation": interpolation}


def _copy(model):
    import copy

    return copy.deepcopy(model).train()


def run(cfg: EFTRecipeConfig) -> dict:
    import torch

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    start = time.time()
    per_seed = [run_seed(cfg, s) for s in cfg.seeds]
    table = {}
    for row in ROWS:
        table[row] = {m: [r["results"][row][m] for r in per_seed] for m in ("format", "knowledge")}
    sweep = {lam: {m: [r["interpolation"][lam][m] for r in per_seed] for m in ("format", "terse", "knowledge")}
             for lam in per_seed[0]["interpolation"]}
    summary = {"config": asdict(cfg), "seeds": per_seed, "table": table, "interpolation": sweep,
               "seconds": time.time() - start}
    path = Path(cfg.out_dir) / "results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    from slm.io import atomic_write_text

    atomic_write_text(path, json.dumps(summary, indent=2) + "\n")
    return summary


def format_table(summary: dict) -> str:
    """Mean ± standard deviation over seeds, in percent."""
    def cell(values):
        mean = 100 * statistics.fmean(values)
        spread = 100 * statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{mean:5.1f} ± {spread:4.1f}"

    n = len(summary["seeds"])
    lines = [f"EFT up-scaling on held-out questions ({n} seed(s), mean ± sd, %)",
             f"{'model':<18} {'format (target)':>16} {'knowledge':>14}"]
    for row, metrics in summary["table"].items():
        lines.append(f"{row:<18} {cell(metrics['format']):>16} {cell(metrics['knowledge']):>14}")
    if summary.get("interpolation"):
        lines += ["", "Interpolation: large base + lam (expert A - small base) + (1 - lam) (expert B - small base)",
                  f"{'lam':<18} {'A: teal. (A)':>16} {'teal. (B)':>14} {'knowledge':>14}"]
        for lam, metrics in summary["interpolation"].items():
            lines.append(f"{lam:<18} {cell(metrics['format']):>16} {cell(metrics['terse']):>14} "
                         f"{cell(metrics['knowledge']):>14}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- CLI

def register(parser: argparse.ArgumentParser) -> None:
    from slm.cli.recipe import add_recipe_options, table_recipe_main

    add_recipe_options(parser, DEFAULT_RECIPE, "seeds=[0] --set pretrain_large.steps=200")
    composition = lambda summary: f"composition: {Path(summary['config']['out_dir']) / 'seed-N' / 'upscaled.yaml'}"
    parser.set_defaults(func=table_recipe_main(DEFAULT_RECIPE, EFTRecipeConfig, run, format_table, composition))
