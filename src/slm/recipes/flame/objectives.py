"""FLAME's pre-training objectives: one sampled per batch, the target always the whole original formula.

    sampler = ObjectiveSampler(seed=0)                  # laMSP 50%, tail masking 20%, user noise 20%,
    name = sampler.choose(batch_index)                  # random noise 5%, unchanged 5%
    ids = corrupt(name, formula, tokenizer, rng)        # encoder input ids; the decoder target is encode(formula)

  lamsp      language-aware masked span prediction: T5's span noise drawn over *lexer* tokens (so BC18 or "Not
             available" is masked all or none), density 15% or 35% x mean span 2 or 6 tokens, each masked run one
             <mask>
  msp        the ablation: the same noise over the tokenizer's sub-tokens (T5's plain MSP; it splits B C 1 8)
  tail       tail masking: the last 30-70% of the characters replaced by one <mask>
  user       one user-inspired noise operator (noise.py)
  random     insert, delete or update 10% of the sub-tokens (a random token for insert / update)
  unchanged  the formula itself

Randomness: the objective of batch i comes from (seed, i); each example's noise from the rng the caller passes
(the batch source seeds it from (seed, batch, row)), so a run is reproducible and resumable.
"""
from __future__ import annotations

import random

import numpy as np

from slm.errors import ConfigError
from slm.objectives.span_corruption import noise_mask
from slm.recipes.flame.lexer import lex
from slm.recipes.flame.tokenizer import MASK

RATES = {"lamsp": 0.50, "tail": 0.20, "user": 0.20, "random": 0.05, "unchanged": 0.05}
MSP_SETTINGS = [(0.15, 2.0), (0.15, 6.0), (0.35, 2.0), (0.35, 6.0)]  # (density, mean span), crossed
OBJECTIVES = ("lamsp", "msp", "tail", "user", "random", "unchanged")


class ObjectiveSampler:
    """The objective of each batch, drawn with the given rates from (seed, batch index)."""

    def __init__(self, rates: dict[str, float] | None = None, seed: int = 0):
        rates = dict(RATES if rates is None else rates)
        unknown = set(rates) - set(OBJECTIVES)
        if unknown or not rates or any(r < 0 for r in rates.values()) or abs(sum(rates.values()) - 1) > 1e-6:
            raise ConfigError(f"objective rates must be non-negative and sum to 1 over {', '.join(OBJECTIVES)}; "
                              f"got {rates}")
        self.names, self.weights, self.seed = list(rates), list(rates.values()), seed

    def choose(self, batch_index: int) -> str:
        return random.Random(f"slm-flame-objective:{self.seed}:{batch_index}").choices(self.names, self.weights)[0]


def _numpy_rng(rng: random.Random) -> np.random.Generator:
    return np.random.default_rng(rng.getrandbits(64))


def _runs_to_masks(pieces: list, masked, mask) -> list:
    """`pieces` with each run of masked pieces replaced by one `mask`."""
    out, previous = [], False
    for piece, m in zip(pieces, masked):
        if m and not previous:
            out.append(mask)
        elif not m:
            out.append(piece)
        previous = bool(m)
    return out


def lamsp(formula: str, rng: random.Random) -> tuple[str, list[bool]]:
    """(the formula with masked runs of whole lexer tokens replaced by one <mask> each, the mask per lexer token)."""
    tokens = lex(formula)
    if len(tokens) < 2:
        return formula, [False] * len(tokens)
    density, span = rng.choice(MSP_SETTINGS)
    mask = noise_mask(len(tokens), density, span, _numpy_rng(rng)).tolist()
    return "".join(_runs_to_masks([t.text for t in tokens], mask, MASK)), mask


def tail_mask(formula: str, rng: random.Random) -> str:
    """The formula's first characters, its last 30-70% replaced by <mask>."""
    cut = len(formula) - max(1, round(rng.uniform(0.3, 0.7) * len(formula)))
    return formula[:max(cut, 0)] + MASK


def msp_ids(ids: list[int], mask_id: int, rng: random.Random) -> list[int]:
    """T5's plain span noise over sub-token ids (without </s>): each masked run becomes one mask id."""
    if len(ids) < 2:
        return list(ids)
    density, span = rng.choice(MSP_SETTINGS)
    return _runs_to_masks(ids, noise_mask(len(ids), density, span, _numpy_rng(rng)), mask_id)


def random_noise(ids: list[int], vocab: tuple[int, int], rng: random.Random, rate: float = 0.10) -> list[int]:
    """Insert, delete or update round(rate x length) (at least one) sub-tokens; new tokens drawn from vocab [lo, hi)."""
    out = list(ids)
    for _ in range(max(1, round(rate * len(ids)))):
        op = rng.choice(["insert", "delete", "update"]) if out else "insert"
        if op == "insert":
            out.insert(rng.randint(0, len(out)), rng.randrange(*vocab))
        elif op == "delete":
            del out[rng.randrange(len(out))]
        else:
            out[rng.randrange(len(out))] = rng.randrange(*vocab)
    return out


def corrupt(objective: str, formula: str, tokenizer, rng: random.Random) -> list[int]:
    """The encoder input ids (</s> last) of one formula under one objective."""
    from slm.recipes.flame.noise import apply_user_noise

    eos = tokenizer.eos_token_id
    if objective == "lamsp":
        return tokenizer.encode(lamsp(formula, rng)[0])
    if objective == "tail":
        return tokenizer.encode(tail_mask(formula, rng))
    if objective == "user":
        return tokenizer.encode(apply_user_noise(formula, rng)[0])
    if objective == "unchanged":
        return tokenizer.encode(formula)
    ids = tokenizer.encode(formula)[:-1]
    if objective == "msp":
        return msp_ids(ids, tokenizer.mask_token_id, rng) + [eos]
    if objective == "random":
        return random_noise(ids, (4, len(tokenizer)), rng) + [eos]
    raise ConfigError(f"unknown objective {objective!r}; choose from {', '.join(OBJECTIVES)}")
