"""T5's span corruption: drop random spans of a row into the targets, each replaced by one sentinel in the inputs.

    loader = SpanCorruptionLoader("runs/data", "train", inputs_length=128, batch_size=16)
    corrupt = SpanCorruption(SpanCorruptionConfig(noise_density=0.15, mean_span=3.0), sentinel_top=len(tok), eos_id=1)
    Trainer(model, cfg, loader, batch_transform=corrupt, loss_fn=seq2seq_loss).fit()

    original  The cute dog walks in the park          (noise: "cute dog", "the")
    inputs    The <X> walks in <Y> park </s>          targets  <X> cute dog <Y> the </s>

As T5's `random_spans_noise_mask` defines it: a row of L tokens has round(L x density) noise tokens (at least 1, at
most L - 1) in round(noise / mean_span) spans (at least 1); noise and non-noise tokens are each cut into that many
non-empty segments uniformly at random, and the row alternates non-noise, noise, ..., so it starts with kept text
and ends with a noise span. Sentinels count down from the top of the vocabulary (<extra_id_0> = sentinel_top - 1).
Inputs and targets then have fixed lengths for a given L (`lengths_for`), so rows batch without padding; the loader
reads raw windows of the L that makes the inputs exactly `inputs_length` long, as T5's
compute_input_and_target_lengths does. Randomness comes from (seed, epoch, window index), as the objectives'
contract requires.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from slm.data.loader import PackedLoader
from slm.errors import SlmError


@dataclass
class SpanCorruptionConfig:
    noise_density: float = 0.15
    mean_span: float = 3.0
    seed: int = 0

    def __post_init__(self):
        if not 0 < self.noise_density < 1:
            raise SlmError(f"noise_density must be in (0, 1), got {self.noise_density}")
        if self.mean_span < 1:
            raise SlmError(f"mean_span must be >= 1, got {self.mean_span}")


def _counts(length: int, density: float, mean_span: float) -> tuple[int, int]:
    noise = min(max(int(round(length * density)), 1), length - 1)
    spans = max(int(round(min(noise, length - noise) / mean_span)), 1)
    return noise, spans


def _segments(items: int, segments: int, rng: np.random.Generator) -> np.ndarray:
    """Lengths of `segments` non-empty pieces of `items`, every split equally likely."""
    cut = np.zeros(items - 1, dtype=bool)
    cut[:segments - 1] = True
    rng.shuffle(cut)
    return np.bincount(np.cumsum(np.concatenate([[0], cut])), minlength=segments)


def noise_mask(length: int, density: float, mean_span: float, rng: np.random.Generator) -> np.ndarray:
    """A boolean [length]: True at the tokens that go to the targets."""
    if length < 2:
        raise SlmError("span corruption needs rows of at least 2 tokens")
    noise, spans = _counts(length, density, mean_span)
    noise_lengths = _segments(noise, spans, rng)
    kept_lengths = _segments(length - noise, spans, rng)
    span_lengths = np.stack([kept_lengths, noise_lengths], axis=1).reshape(-1)  # kept, noise, kept, noise, ...
    return np.repeat(np.arange(2 * spans) % 2 == 1, span_lengths)


def lengths_for(length: int, density: float, mean_span: float) -> tuple[int, int]:
    """(inputs, targets) lengths after corrupting a row of `length` tokens, EOS included."""
    noise, spans = _counts(length, density, mean_span)
    return length - noise + spans + 1, noise + spans + 1


def raw_length_for(inputs_length: int, density: float, mean_span: float) -> int:
    """The longest raw row whose corrupted inputs fit in inputs_length (T5's compute_input_and_target_lengths)."""
    length = inputs_length
    while lengths_for(length + 1, density, mean_span)[0] <= inputs_length:
        length += 1
    return length


def _squeeze(tokens: np.ndarray, mask: np.ndarray, sentinel_top: int, eos_id: int) -> np.ndarray:
    """tokens outside `mask`, each masked span replaced by its sentinel, then EOS."""
    starts = mask & ~np.concatenate([[False], mask[:-1]])
    sentinels = sentinel_top - np.cumsum(starts)
    out = np.where(starts, sentinels, tokens)[~mask | starts]
    return np.append(out, eos_id)


def corrupt(tokens: np.ndarray, mask: np.ndarray, sentinel_top: int, eos_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets) of one row: kept text with a sentinel per noise span; each sentinel and its span."""
    inputs = _squeeze(tokens, mask, sentinel_top, eos_id)
    # The targets are the same operation on the complement: kept spans become sentinels, noise stays.
    targets = _squeeze(tokens, ~mask, sentinel_top, eos_id)
    return inputs, targets


def target_spans(ids, sentinel_top: int, n_sentinels: int, count: int,
                 eos_id: int | None = None) -> list[list[int]]:
    """The spans of a target sequence `<extra_id_0> a <extra_id_1> b ... </s>`, span k the one after sentinel k,
    for k < count (a missing one empty); reading stops at eos_id."""
    spans: dict[int, list[int]] = {}
    current = None
    for t in ids:
        t = int(t)
        if t == eos_id:
            break
        if sentinel_top - n_sentinels <= t < sentinel_top:
            current = sentinel_top - 1 - t
            spans.setdefault(current, [])
        elif current is not None:
            spans[current].append(t)
    return [spans.get(k, []) for k in range(count)]


def expand(inputs: np.ndarray, targets: np.ndarray, sentinel_top: int, eos_id: int,
           n_sentinels: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """(the original row, its noise mask) from inputs and targets: each sentinel in the inputs replaced by its
    span, whose tokens are the noise."""
    spans = target_spans(targets, sentinel_top, n_sentinels, n_sentinels, eos_id)
    row, noise = [], []
    for t in inputs[:-1]:  # the EOS ends the inputs
        k = sentinel_top - 1 - int(t)
        piece = spans[k] if 0 <= k < n_sentinels else [int(t)]
        row += piece
        noise += [0 <= k < n_sentinels] * len(piece)
    return np.array(row, dtype=np.int64), np.array(noise, dtype=bool)


def reconstruct(inputs: np.ndarray, targets: np.ndarray, sentinel_top: int, eos_id: int,
                n_sentinels: int = 100) -> np.ndarray:
    """The original row from inputs and targets (each sentinel in the inputs replaced by its span)."""
    return expand(inputs, targets, sentinel_top, eos_id, n_sentinels)[0]


def keyed_rows(batch: dict, what: str) -> list[tuple[np.ndarray, int, int]]:
    """(row, noise epoch, window index) for each row of a RawWindowLoader batch: what a noising transform seeds
    each row by."""
    if "sample_index" not in batch or "noise_epoch" not in batch:
        raise SlmError(f"{what} batches need sample_index and noise_epoch (slm.objectives.RawWindowLoader)")
    ids = batch["input_ids"].numpy()
    return [(ids[r], e, i) for r, (i, e) in enumerate(zip(batch["sample_index"].tolist(),
                                                          batch["noise_epoch"].tolist()))]


class SpanCorruption:
    """The batch transform: raw rows [B, L] plus `sample_index` and `noise_epoch` -> input_ids [B, inputs] and
    labels [B, targets] (the seq2seq loss shifts the labels into decoder inputs)."""

    def __init__(self, config: SpanCorruptionConfig | None = None, *, sentinel_top: int, eos_id: int,
                 n_sentinels: int = 100):
        self.config = config or SpanCorruptionConfig()
        self.sentinel_top, self.eos_id, self.n_sentinels = sentinel_top, eos_id, n_sentinels

    def row(self, tokens: np.ndarray, epoch: int, index: int) -> tuple[np.ndarray, np.ndarray]:
        c = self.config
        if _counts(len(tokens), c.noise_density, c.mean_span)[1] > self.n_sentinels:
            raise SlmError(f"a row of {len(tokens)} tokens needs more than the tokenizer's {self.n_sentinels} "
                           "sentinels: shorten the rows or raise mean_span")
        mask = noise_mask(len(tokens), c.noise_density, c.mean_span, np.random.default_rng([c.seed, epoch, index]))
        return corrupt(tokens, mask, self.sentinel_top, self.eos_id)

    def __call__(self, batch: dict) -> dict:
        pairs = [self.row(row, epoch, index) for row, epoch, index in keyed_rows(batch, "span-corruption")]
        return {"input_ids": torch.from_numpy(np.stack([p[0] for p in pairs])),
                "labels": torch.from_numpy(np.stack([p[1] for p in pairs]))}


class RawWindowLoader(PackedLoader):
    """Raw windows of `raw_length` tokens of the token stream (documents run together, as T5 packs C4), with the
    keys a noising transform seeds each row by: `sample_index` (the window) and `noise_epoch`."""

    def __init__(self, data_dir: str | Path, split: str = "train", raw_length: int | None = None,
                 batch_size: int | None = None, **kwargs):
        self.raw_length = raw_length
        super().__init__(data_dir, split, raw_length, batch_size, **kwargs)

    def _window_order(self, start: int, count: int) -> np.ndarray:
        self._epochs_of_order = (start + np.arange(count)) // self.n_windows
        return super()._window_order(start, count)

    def _batch(self, windows: np.ndarray) -> dict:
        epochs = self._epochs_of_order[self.rank::self.world_size][:len(windows)]
        L = self.raw_length
        rows = np.stack([self._read(int(w) * L, L) for w in windows]).astype(np.int64)
        return {"input_ids": torch.from_numpy(rows), "sample_index": torch.from_numpy(windows.astype(np.int64)),
                "noise_epoch": torch.from_numpy(epochs.astype(np.int64))}


class SpanCorruptionLoader(RawWindowLoader):
    """Raw windows long enough that their corrupted inputs are `inputs_length` tokens."""

    def __init__(self, data_dir: str | Path, split: str = "train", inputs_length: int | None = None,
                 batch_size: int | None = None, *, noise_density: float = 0.15, mean_span: float = 3.0, **kwargs):
        if inputs_length is None or inputs_length < 4:
            raise SlmError("span corruption needs inputs_length >= 4")
        self.inputs_length = inputs_length
        raw_length = raw_length_for(inputs_length, noise_density, mean_span)
        self.targets_length = lengths_for(raw_length, noise_density, mean_span)[1]
        super().__init__(data_dir, split, raw_length, batch_size, **kwargs)
