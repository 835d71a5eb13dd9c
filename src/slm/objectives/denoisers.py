"""UL2's mixture of denoisers, and UL2R's: continued training on it, for decoders (as a prefix LM) and
encoder-decoders (as input/target pairs).

    mixture = UL2R                                    # 50% S, 25% R (3, 15%), 25% X
    ul2 = UL2Denoising(mixture, tokens, layout="prefix_lm", length=256, seed=0)   # tokens: ul2_token_ids(tok)
    Trainer(model, cfg, RawWindowLoader(dir, "train", raw_length_for(256, mixture, "prefix_lm"), 16),
            batch_transform=ul2).fit()                # loss: the Trainer's causal LM loss (labels on targets only)

A denoiser is SpanCorrupt(mean span, rate): R (regular, T5's), X (extreme: long spans or a high rate) and S
(sequential: a prefix of the row is the input, the rest the target, about `rate` of it). Each prepends its mode
token, [NLU] for R, [NLG] for X and [S2S] for S, as the released UL2 checkpoints do. Each row draws its denoiser,
then its noise, from a generator seeded by (seed, epoch, window index): the same rows give the same examples
whatever the batching or resumption (the objectives' contract).

Layouts:
  seq2seq    inputs  [mode] kept text with sentinels </s>      targets  sentinel span ... </s>   (S: prefix </s>,
             suffix </s>); both padded to the mixture's longest, labels -100 on padding.
  prefix_lm  one row [mode] inputs targets, padded at the end; the attention sees the inputs bidirectionally and
             the rest causally (slm.models.make_attention_mask(prefix_lengths=...)), and the labels are the
             targets only. R/X inputs drop their </s> (the first sentinel of the targets marks the switch);
             S's target is the plain continuation of the text. The model stays a causal LM: the prefix is only a
             mask at training time.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from slm.errors import ConfigError, SlmError
from slm.objectives.span_corruption import _counts, corrupt, keyed_rows, noise_mask

MODE_TOKENS = {"R": "[NLU]", "X": "[NLG]", "S": "[S2S]"}
Layout = Literal["seq2seq", "prefix_lm"]


@dataclass(frozen=True)
class Denoiser:
    kind: Literal["R", "X", "S"]
    mean_span: float = 3.0  # R/X only
    rate: float = 0.15  # R/X: the corrupted share of the row; S: the target's expected share

    def __post_init__(self):
        if self.kind not in MODE_TOKENS:
            raise ConfigError(f"denoiser kind must be R, X or S, got {self.kind!r}")
        if not 0 < self.rate < 1:
            raise ConfigError(f"denoiser rate must be in (0, 1), got {self.rate}")
        if self.mean_span < 1:
            raise ConfigError(f"denoiser mean_span must be >= 1, got {self.mean_span}")

    @property
    def mode(self) -> str:
        return MODE_TOKENS[self.kind]

    @property
    def name(self) -> str:
        return "S" if self.kind == "S" else f"{self.kind}({self.mean_span:g}, {self.rate:.0%})"

    def spans(self, length: int) -> int:
        return 0 if self.kind == "S" else _counts(length, self.rate, self.mean_span)[1]


@dataclass(frozen=True)
class Mixture:
    denoisers: tuple[Denoiser, ...]
    weights: tuple[float, ...]

    def __post_init__(self):
        if not self.denoisers or len(self.denoisers) != len(self.weights):
            raise ConfigError("a denoiser mixture needs one weight per denoiser")
        if min(self.weights) < 0 or sum(self.weights) <= 0:
            raise ConfigError("denoiser weights must be non-negative and not all zero")

    @property
    def probabilities(self) -> np.ndarray:
        w = np.asarray(self.weights, dtype=np.float64)
        return w / w.sum()

    def pick(self, rng: np.random.Generator) -> Denoiser:
        return self.denoisers[int(rng.choice(len(self.denoisers), p=self.probabilities))]


def _r(mu, r):
    return Denoiser("R", mu, r)


def _x(mu, r):
    return Denoiser("X", mu, r)


# UL2 (Tay et al. 2023): R (3, 15%), (8, 15%); X (3, 50%), (8, 50%), (64, 15%), (64, 50%); S 20%, the rest uniform.
UL2 = Mixture((_r(3, .15), _r(8, .15), _x(3, .5), _x(8, .5), _x(64, .15), _x(64, .5), Denoiser("S", rate=.25)),
              (0.8 / 6,) * 6 + (0.2,))
# UL2R / U-PaLM: 50% S, 25% R (3, 15%), 25% X (mean span 32 or rate 50%: the two halves of that quarter).
UL2R = Mixture((Denoiser("S", rate=.25), _r(3, .15), _x(32, .15), _x(3, .5)), (0.5, 0.25, 0.125, 0.125))
MIXTURES = {"ul2": UL2, "ul2r": UL2R}


def mixture_from(spec: str | list[dict]) -> Mixture:
    """A named mixture (ul2, ul2r) or a list of {kind, mean_span, rate, weight} (a recipe's YAML)."""
    if isinstance(spec, str):
        if spec not in MIXTURES:
            raise ConfigError(f"unknown denoiser mixture {spec!r}; known: {', '.join(MIXTURES)}, or a list of "
                              "{kind, mean_span, rate, weight}")
        return MIXTURES[spec]
    try:
        items = [dict(d) for d in spec]
        weights = tuple(float(d.pop("weight", 1.0)) for d in items)
        return Mixture(tuple(Denoiser(**d) for d in items), weights)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"bad denoiser list ({e}); each item is {{kind, mean_span, rate, weight}}") from None


def prefix_length_bounds(length: int, rate: float) -> tuple[int, int]:
    """S's shortest and longest input: a uniform draw between them leaves about `rate` of the row as target, at
    least one token on each side (T5's random_prefix_noise_mask)."""
    most = length - 1
    return min(most, max(1, round((1 - rate) * length * 2) - most)), most


def prefix_length(length: int, rate: float, rng: np.random.Generator) -> int:
    least, most = prefix_length_bounds(length, rate)
    return int(rng.integers(least, most + 1))


def denoise(tokens: np.ndarray, denoiser: Denoiser, rng: np.random.Generator, *, sentinel_top: int,
            eos_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets) of one row, without the mode token; both end with </s> (the seq2seq layout)."""
    if denoiser.kind == "S":
        cut = prefix_length(len(tokens), denoiser.rate, rng)
        return np.append(tokens[:cut], eos_id), np.append(tokens[cut:], eos_id)
    mask = noise_mask(len(tokens), denoiser.rate, denoiser.mean_span, rng)
    return corrupt(tokens, mask, sentinel_top, eos_id)


def layout_lengths(length: int, denoiser: Denoiser, layout: Layout) -> tuple[int, int]:
    """The longest (inputs, targets) that a raw row of `length` tokens gives, the mode token included; in the
    prefix_lm layout, (the one row's length, 0)."""
    if denoiser.kind == "S":
        if layout == "prefix_lm":
            return 1 + length, 0
        least, most = prefix_length_bounds(length, denoiser.rate)
        return 1 + most + 1, length - least + 1
    noise, spans = _counts(length, denoiser.rate, denoiser.mean_span)
    inputs, targets = 1 + length - noise + spans + 1, noise + spans + 1
    if layout == "prefix_lm":
        return inputs - 1 + targets, 0  # the inputs' </s> is dropped
    return inputs, targets


def raw_length_for(length: int, mixture: Mixture, layout: Layout) -> int:
    """The longest raw row whose every denoiser fits: prefix_lm rows of `length` tokens, or seq2seq inputs of
    `length` tokens."""
    def fits(raw):
        return all(layout_lengths(raw, d, layout)[0] <= length for d in mixture.denoisers)
    if not fits(2):
        raise SlmError(f"rows of {length} tokens are too short for this denoiser mixture")
    raw = 2
    while fits(raw + 1):
        raw += 1
    return raw


@dataclass(frozen=True)
class UL2Tokens:
    """The ids a denoiser needs: the mode tokens, the sentinels (<extra_id_0> = sentinel_top - 1, counting down),
    </s> (the decoder's end-of-text) and padding."""
    modes: dict[str, int]
    sentinel_top: int
    n_sentinels: int
    eos_id: int
    pad_id: int


class UL2Denoising:
    """The batch transform: raw rows [B, L] with `sample_index` and `noise_epoch` (slm.objectives.RawWindowLoader)
    -> a seq2seq batch (input_ids, attention_mask, labels) or a prefix-LM batch (input_ids, a boolean attention
    mask, labels shifted for the causal LM loss, -100 outside the targets)."""

    def __init__(self, mixture: Mixture, tokens: UL2Tokens, *, layout: Layout, length: int,
                 targets_length: int | None = None, seed: int = 0):
        self.mixture, self.tokens, self.layout, self.length, self.seed = mixture, tokens, layout, length, seed
        self.targets_length = targets_length

    def example(self, row: np.ndarray, epoch: int, index: int) -> tuple[Denoiser, np.ndarray, np.ndarray]:
        """(denoiser, inputs with the mode token, targets) in the seq2seq layout."""
        rng = np.random.default_rng([self.seed, epoch, index])
        denoiser = self.mixture.pick(rng)
        t = self.tokens
        if denoiser.spans(len(row)) > t.n_sentinels:
            raise SlmError(f"{denoiser.name} on rows of {len(row)} tokens needs more than the tokenizer's "
                           f"{t.n_sentinels} sentinels: shorten the rows")
        inputs, targets = denoise(row, denoiser, rng, sentinel_top=t.sentinel_top, eos_id=t.eos_id)
        return denoiser, np.concatenate([[t.modes[denoiser.kind]], inputs]), targets

    def __call__(self, batch: dict) -> dict:
        return self.collate([self.example(row, epoch, index) for row, epoch, index in keyed_rows(batch, "UL2")])

    def collate(self, examples: list[tuple[Denoiser, np.ndarray, np.ndarray]]) -> dict:
        """The batch of examples (from `example`) in this transform's layout."""
        if self.layout == "seq2seq":
            return self._seq2seq(examples)
        return self._prefix_lm(examples)

    def _seq2seq(self, examples) -> dict:
        pad = self.tokens.pad_id
        inputs = _pad([e[1] for e in examples], self.length, pad)
        labels = _pad([e[2] for e in examples], self.targets_length or max(len(e[2]) for e in examples), -100)
        return {"input_ids": inputs, "attention_mask": (inputs != pad).long(), "labels": labels}

    def _prefix_lm(self, examples) -> dict:
        from slm.models import make_attention_mask

        rows, prefixes = [], []
        for denoiser, inputs, targets in examples:
            inputs = inputs[:-1]  # no </s> inside a row: R/X targets open with a sentinel, S's continue the text
            if denoiser.kind == "S":
                targets = targets[:-1]  # a window of running text does not end where it is cut
            rows.append(np.concatenate([inputs, targets]))
            prefixes.append(len(inputs))
        input_ids = _pad(rows, self.length, self.tokens.pad_id)
        prefix = torch.tensor(prefixes)
        position = torch.arange(self.length)
        lengths = torch.tensor([len(r) for r in rows])
        # labels[t] is the token at t + 1, kept where t + 1 is a target token
        target = (position[None, 1:] >= prefix[:, None]) & (position[None, 1:] < lengths[:, None])
        labels = torch.full_like(input_ids, -100)
        labels[:, :-1] = torch.where(target, input_ids[:, 1:], -100)
        # Padding sits at the end, where causal attention already keeps it out of every real token's view.
        mask = make_attention_mask(self.length, 0, prefix_lengths=prefix)
        return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def _pad(rows: list[np.ndarray], length: int, value: int) -> torch.Tensor:
    if max(len(r) for r in rows) > length:
        raise SlmError(f"a denoised row of {max(len(r) for r in rows)} tokens exceeds the {length} allowed; the "
                       "loader's raw length does not fit this mixture (use slm.objectives.denoisers.raw_length_for)")
    out = np.full((len(rows), length), value, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return torch.from_numpy(out)



def sentinel_range(tokenizer) -> tuple[int, int]:
    """(sentinel_top, count): <extra_id_k> at id sentinel_top - 1 - k for k < count (T5's layout); (0, 0) if none."""
    vocab = tokenizer.get_vocab()
    top = vocab.get("<extra_id_0>")
    if top is None:
        return 0, 0
    count = 0
    while vocab.get(f"<extra_id_{count}>") == top - count:
        count += 1
    return top + 1, count


def ul2_tokens(tokenizer) -> UL2Tokens:
    """The mode tokens and sentinels of a tokenizer that has them (add_ul2_tokens adds them)."""
    vocab = tokenizer.get_vocab()
    missing = [m for m in MODE_TOKENS.values() if m not in vocab]
    top, count = sentinel_range(tokenizer)
    if missing or not count:
        what = ", ".join(missing + ([] if count else ["the sentinels <extra_id_N>"]))
        raise ConfigError(f"the tokenizer lacks UL2's {what}: add them with slm.objectives.denoisers.add_ul2_tokens "
                          "(the ul2 objective does so itself)")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return UL2Tokens({k: vocab[m] for k, m in MODE_TOKENS.items()}, top, count, tokenizer.eos_token_id, pad)


def add_ul2_tokens(model, tokenizer, n_sentinels: int = 100) -> int:
    """Give a tokenizer UL2's mode tokens and (if it has none) n_sentinels sentinels, and grow the model's
    vocabulary to match (new rows start at the mean of the old ones). Returns the number of tokens added."""
    from tokenizers import AddedToken

    from slm.models.layers import resize_vocabulary

    vocab = tokenizer.get_vocab()
    new = [m for m in MODE_TOKENS.values() if m not in vocab]
    if not sentinel_range(tokenizer)[1]:
        new += [f"<extra_id_{k}>" for k in reversed(range(n_sentinels))]  # <extra_id_0> on top, as T5 has them
    if new:
        tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in new], special_tokens=True)
    if len(tokenizer) > model.config.vocab_size:
        resize_vocabulary(model, len(tokenizer))
    return len(new)
