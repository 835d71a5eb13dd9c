"""Pretraining from a YAML recipe: a model (preset or checkpoint), prepared token shards, the one Trainer.

    model:      {preset: nano, config: {dim: 320}}  or  {init_from: path/to/hf-dir}
    tokenizer:  path (default: the tokenizer the shards were prepared with)
    data:       {dir: runs/data, seq_len: 256, batch_size: 16}    batch_size = rows per micro-batch, all ranks
    train:      TrainConfig fields (slm.train.TrainConfig)
    out:        the run directory (checkpoints/, metrics.jsonl, loss.png)
    objective:  causal (default) | mlm | span_corruption | ul2
    mlm:        {packing: full|doc, masking: dynamic|static, copies: 10, mask_prob: 0.15, whole_word: false, ...}
                (objective mlm: an encoder preset such as roberta-tiny, a tokenizer with a <mask> token)
    span:       {noise_density: 0.15, mean_span: 3.0, seed: 0}   (objective span_corruption: T5's, for an
                encoder-decoder preset such as t5-tiny and a tokenizer with sentinels (kind t5-bpe);
                data.seq_len is then the encoder's input length)
    ul2:        {mixture: ul2r, n_sentinels: 100, seed: 0}   (objective ul2: UL2's mixture of denoisers, a name
                (ul2, ul2r) or a list of {kind, mean_span, rate, weight}; a decoder trains as a prefix LM on
                rows of data.seq_len tokens, an encoder-decoder on inputs of data.seq_len tokens; the mode tokens
                and sentinels are added to the tokenizer and the model if missing)

`slm pretrain recipes/pretrain-nano.yaml --set train.max_steps=100` runs it; `--devices N` runs it under
torchrun with N processes (each takes rows rank::N of every global batch).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from slm.config import build
from slm.errors import ConfigError
from slm.train.trainer import TrainConfig


@dataclass
class ModelSection:
    preset: str | None = "nano"  # a name from slm.models.PRESETS
    config: dict = field(default_factory=dict)  # ModelConfig fields that override the preset
    init_from: str | None = None  # continue from an HF directory instead of a fresh init
    seed: int = 0  # weight init seed (the same on every rank)


@dataclass
class DataSection:
    dir: str = "runs/data"  # a directory made by slm.data.shards.prepare (`slm data prepare`)
    seq_len: int = 512
    batch_size: int = 8  # rows per micro-batch summed over all processes
    seed: int = 0  # shuffling seed of the loader
    epochs: int | None = None  # None: loop over the data for as long as training runs
    document_mask: bool = False  # attend only within each packed document (positions restart per document);
    # False is TinyLlama's plain packing: causal attention across document boundaries, which is also faster


@dataclass
class MLMSection:
    """slm.objectives: fairseq's masking over RoBERTa's FULL-SENTENCES or DOC-SENTENCES blocks."""
    packing: Literal["full", "doc"] = "full"
    masking: Literal["dynamic", "static"] = "dynamic"
    copies: int = 10  # static masking: the data duplicated this many times, each copy masked once
    mask_prob: float = 0.15
    random_token_prob: float = 0.1
    leave_unmasked_prob: float = 0.1
    whole_word: bool = False
    seed: int = 0  # masking seed (with the epoch and the block index)


@dataclass
class SpanSection:
    """slm.objectives.span_corruption: T5's noise over raw windows sized so the inputs are data.seq_len long."""
    noise_density: float = 0.15
    mean_span: float = 3.0
    seed: int = 0


@dataclass
class UL2Section:
    """slm.objectives.denoisers: UL2R's (or UL2's, or a listed) mixture of R, X and S denoisers."""
    mixture: str | list = "ul2r"
    n_sentinels: int = 100  # added only to a tokenizer that has no <extra_id_N> yet
    seed: int = 0


@dataclass
class PretrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    train: TrainConfig = field(default_factory=TrainConfig)
    tokenizer: str | None = None
    out: str = "runs/pretrain"
    objective: Literal["causal", "mlm", "span_corruption", "ul2"] = "causal"
    mlm: MLMSection = field(default_factory=MLMSection)
    span: SpanSection = field(default_factory=SpanSection)
    ul2: UL2Section = field(default_factory=UL2Section)


def load_config(recipe: str | Path | None, overrides: list[str] | None = None) -> PretrainConfig:
    from slm.config import apply_overrides, load_recipe

    data = load_recipe(recipe, overrides) if recipe else apply_overrides({}, overrides)
    return build(PretrainConfig, data)


def build_model(section: ModelSection, vocab_size: int | None):
    from slm.models import build_model as build, load_model, preset

    if section.init_from:
        return load_model(section.init_from)
    if not section.preset:
        raise ConfigError("model: give a preset or init_from")
    overrides = dict(section.config)
    if vocab_size is not None:
        overrides.setdefault("vocab_size", vocab_size)
    return build(preset(section.preset, **overrides)).init_weights(section.seed)


def make_loaders(cfg: PretrainConfig, rank: int, world: int, pad_id: int = 1, model=None):
    from slm.data.loader import PackedLoader

    d = cfg.data
    if d.batch_size % world:
        raise ConfigError(f"data.batch_size ({d.batch_size}) must be divisible by the number of processes ({world})")
    rows = d.batch_size // world  # the loader counts rows per rank
    if cfg.objective == "mlm":
        from slm.objectives import MLMBlockLoader

        m = cfg.mlm
        common = dict(seed=d.seed, rank=rank, world_size=world, packing=m.packing, pad_id=pad_id)
        train = MLMBlockLoader(d.dir, "train", d.seq_len, rows, masking=m.masking, copies=m.copies, epochs=d.epochs,
                               **common)
        val = MLMBlockLoader(d.dir, "val", d.seq_len, rows, epochs=1, **common)  # one fixed mask per row
        return train, val
    if cfg.objective == "span_corruption":
        from slm.objectives.span_corruption import SpanCorruptionLoader

        common = dict(noise_density=cfg.span.noise_density, mean_span=cfg.span.mean_span, seed=d.seed, rank=rank,
                      world_size=world)
        train = SpanCorruptionLoader(d.dir, "train", d.seq_len, rows, epochs=d.epochs, **common)
        val = SpanCorruptionLoader(d.dir, "val", d.seq_len, rows, epochs=1, **common)
        return train, val
    if cfg.objective == "ul2":
        from slm.objectives.denoisers import mixture_from, raw_length_for
        from slm.objectives.span_corruption import RawWindowLoader

        raw = raw_length_for(d.seq_len, mixture_from(cfg.ul2.mixture), ul2_layout(model))
        common = dict(seed=d.seed, rank=rank, world_size=world)
        return (RawWindowLoader(d.dir, "train", raw, rows, epochs=d.epochs, **common),
                RawWindowLoader(d.dir, "val", raw, rows, epochs=1, **common))
    train = PackedLoader(d.dir, "train", d.seq_len, rows, seed=d.seed, rank=rank, world_size=world, epochs=d.epochs)
    val = PackedLoader(d.dir, "val", d.seq_len, rows, seed=d.seed, rank=rank, world_size=world, epochs=1)
    return train, val


def objective(cfg: PretrainConfig, model, tokenizer):
    """(batch_transform, loss_fn) for the Trainer: causal LM packing, or masked-LM masking and its loss."""
    if cfg.objective == "causal":
        return (None if cfg.data.document_mask else plain_packing), None
    if cfg.objective == "span_corruption":
        return span_corruption(cfg, model, tokenizer)
    if cfg.objective == "ul2":
        return ul2(cfg, model, tokenizer)
    from slm.objectives import MaskingConfig, MaskTokens, mlm_loss

    if getattr(model.config, "head", None) != "mlm":
        raise ConfigError("objective mlm needs a model with an MLM head (an encoder preset such as roberta-tiny)")
    m = cfg.mlm
    masking = MaskingConfig(mask_prob=m.mask_prob, random_token_prob=m.random_token_prob,
                            leave_unmasked_prob=m.leave_unmasked_prob, whole_word=m.whole_word, seed=m.seed)
    return MaskTokens(tokenizer, masking), mlm_loss


def span_corruption(cfg: PretrainConfig, model, tokenizer):
    from slm.models.registry import family_of
    from slm.models.seq2seq import seq2seq_loss
    from slm.objectives.span_corruption import SpanCorruption, SpanCorruptionConfig, lengths_for, raw_length_for

    family = family_of(model)
    if family is None or not family.seq2seq or model.config.encoder_only:
        raise ConfigError("objective span_corruption needs an encoder-decoder (a preset such as t5-tiny)")
    n_sentinels = sum(t.startswith("<extra_id_") for t in tokenizer.all_special_tokens)
    if n_sentinels == 0:
        raise ConfigError("objective span_corruption needs a tokenizer with sentinels <extra_id_N> "
                          "(train one with kind t5-bpe)")
    if tokenizer.eos_token_id != model.config.eos_token_id or tokenizer.pad_token_id != model.config.pad_token_id:
        raise ConfigError(f"the tokenizer's </s>/<pad> ids ({tokenizer.eos_token_id}, {tokenizer.pad_token_id}) are "
                          f"not the model's ({model.config.eos_token_id}, {model.config.pad_token_id}); set "
                          "model.config.eos_token_id / pad_token_id, or use a t5-bpe tokenizer")
    s = cfg.span
    targets = lengths_for(raw_length_for(cfg.data.seq_len, s.noise_density, s.mean_span), s.noise_density,
                          s.mean_span)[1]
    if targets > model.config.max_seq_len:
        raise ConfigError(f"span-corruption targets of {targets} tokens exceed the model's {model.config.max_seq_len}")
    transform = SpanCorruption(SpanCorruptionConfig(s.noise_density, s.mean_span, s.seed), sentinel_top=len(tokenizer),
                               eos_id=tokenizer.eos_token_id, n_sentinels=n_sentinels)
    return transform, seq2seq_loss


def ul2_layout(model) -> str:
    """Encoder-decoders take the denoisers as (inputs, targets); decoders as a prefix LM."""
    from slm.models.registry import family_of

    family = family_of(model)
    if family is not None and family.seq2seq and not model.config.encoder_only:
        return "seq2seq"
    if getattr(model.config, "head", None) == "mlm" or family is None or family.seq2seq:
        raise ConfigError("objective ul2 needs a decoder or an encoder-decoder")
    return "prefix_lm"


def ul2(cfg: PretrainConfig, model, tokenizer):
    from slm.models.seq2seq import seq2seq_loss
    from slm.objectives.denoisers import UL2Denoising, layout_lengths, mixture_from, raw_length_for, ul2_tokens

    layout = ul2_layout(model)
    mixture = mixture_from(cfg.ul2.mixture)
    raw = raw_length_for(cfg.data.seq_len, mixture, layout)
    targets = max(layout_lengths(raw, d, layout)[1] for d in mixture.denoisers)
    if layout == "seq2seq" and targets > model.config.max_seq_len:
        raise ConfigError(f"UL2 targets of up to {targets} tokens exceed the model's {model.config.max_seq_len}; "
                          "shorten data.seq_len")
    transform = UL2Denoising(mixture, ul2_tokens(tokenizer), layout=layout, length=cfg.data.seq_len,
                             targets_length=targets or None, seed=cfg.ul2.seed)
    return transform, (seq2seq_loss if layout == "seq2seq" else None)


def plain_packing(batch: dict) -> dict:
    """Drop the loader's per-document positions and ids: one causal sequence per row."""
    return {k: v for k, v in batch.items() if k not in ("document_ids", "position_ids")}


def run(cfg: PretrainConfig, resume: str | None = None, evaluators=()) -> dict:
    """Build tokenizer, model and loaders from `cfg`, train, and return the trainer's summary (plus `plot`)."""
    from slm.data.shards import check_tokenizer, read_index
    from slm.tokenizer import check_compatible, load_tokenizer
    from slm.train import distributed as D
    from slm.train.metrics import plot_run
    from slm.train.trainer import Trainer

    index = read_index(cfg.data.dir)
    tokenizer = load_tokenizer(cfg.tokenizer or index["tokenizer"]["name"])
    check_tokenizer(index, tokenizer, where=cfg.data.dir)
    model = build_model(cfg.model, len(tokenizer))
    if cfg.objective == "ul2":
        from slm.objectives.denoisers import add_ul2_tokens

        add_ul2_tokens(model, tokenizer, cfg.ul2.n_sentinels)
    check_compatible(model.config, tokenizer)
    if cfg.data.seq_len > model.config.max_seq_len:
        raise ConfigError(f"data.seq_len {cfg.data.seq_len} exceeds the model's max_seq_len {model.config.max_seq_len}")
    dist = D.setup(cfg.train.device)
    train, val = make_loaders(cfg, dist.rank, dist.world_size, pad_id=tokenizer.pad_token_id or 0, model=model)
    transform, loss_fn = objective(cfg, model, tokenizer)
    trainer = Trainer(model, cfg.train, train, val, out_dir=cfg.out, tokenizer=tokenizer, evaluators=evaluators,
                      batch_transform=transform, loss_fn=loss_fn)
    if dist.is_main:
        from slm.io import atomic_write_text
        import yaml

        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(cfg.out) / "recipe.yaml", yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))
        print(f"model: {model.num_parameters() / 1e6:.2f}M parameters ({cfg.model.preset or cfg.model.init_from}); "
              f"data: {cfg.data.dir}; run directory: {cfg.out}")
    result = trainer.fit(resume=resume)
    result["model"] = model
    result["tokenizer"] = tokenizer
    if dist.is_main:
        result["plot"] = str(plot_run(cfg.out))
    return result
