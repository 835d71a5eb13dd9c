"""Sampling: the request parameters and the logits processors, all in one place.

Processors run in this order on the logits of the last position, one row per sequence:

    1. repetition_penalty  on the raw scores of every token already in the row (prompt and output), as HF does:
                           positive scores are divided by the penalty, negative ones multiplied
    2. greedy rows         (temperature == 0) take the argmax here; nothing below changes them
    3. temperature         scores / temperature
    4. top_k               keep the k highest scores (0 = off)
    5. top_p               keep the smallest set of tokens whose probability reaches p (1.0 = off)
    6. min_p               drop tokens whose probability is below min_p x the top probability (0 = off)
    7. sample              one draw per row from the softmax, with the row's own torch.Generator

Every processor is a small function over a [rows, vocab] tensor and a [rows] tensor of per-row settings, so
one batch may mix requests with different settings. `probabilities` (steps 1, 3-6) is what speculative
decoding compares between draft and target.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from slm.errors import SlmError


@dataclass
class SamplingParams:
    max_tokens: int = 64
    temperature: float = 0.0  # 0 = greedy
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    stop: list[str] = field(default_factory=list)  # the text ends before the first stop string
    seed: int | None = None  # None: drawn from torch's global generator
    stop_token_ids: list[int] = field(default_factory=list)  # besides the tokenizer's / model's EOS
    ignore_eos: bool = False
    # Log-probabilities of the model's own distribution (before penalties, temperature and masks), as vLLM
    # reports them: None = off; k >= 0 = each generated (or, for prompt_logprobs, prompt) token's and the k best.
    logprobs: int | None = None
    prompt_logprobs: int | None = None

    def __post_init__(self):
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        self.validate()

    def validate(self) -> None:
        checks = [
            (isinstance(self.max_tokens, int) and self.max_tokens >= 1, "max_tokens must be an integer >= 1"),
            (self.temperature >= 0, "temperature must be >= 0"),
            (isinstance(self.top_k, int) and self.top_k >= 0, "top_k must be an integer >= 0 (0 = off)"),
            (0 < self.top_p <= 1, "top_p must be in (0, 1]"),
            (0 <= self.min_p <= 1, "min_p must be in [0, 1]"),
            (self.repetition_penalty > 0, "repetition_penalty must be > 0"),
            (all(isinstance(s, str) and s for s in self.stop), "stop strings must be non-empty strings"),
            (all(k is None or (isinstance(k, int) and k >= 0) for k in (self.logprobs, self.prompt_logprobs)),
             "logprobs and prompt_logprobs must be None or an integer >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise SlmError(message)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def make_generator(self, device="cpu") -> torch.Generator:
        g = torch.Generator(device=device)
        seed = self.seed if self.seed is not None else int(torch.randint(0, 2**62, (1,)).item())
        return g.manual_seed(seed)


# ---- processors: each takes scores [N, V] and per-row settings [N], returns new scores ----

def apply_repetition_penalty(scores: torch.Tensor, seen: torch.Tensor, penalty: torch.Tensor) -> torch.Tensor:
    """seen: [N, V] bool, tokens already in the row; penalty: [N]."""
    penalty = penalty.view(-1, 1)
    penalized = torch.where(scores > 0, scores / penalty, scores * penalty)
    return torch.where(seen, penalized, scores)


def apply_temperature(scores: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    return scores / temperature.clamp_min(1e-6).view(-1, 1)


def apply_top_k(scores: torch.Tensor, top_k: torch.Tensor) -> torch.Tensor:
    V = scores.shape[-1]
    k = torch.where(top_k > 0, top_k.clamp_max(V), torch.full_like(top_k, V))
    kth = scores.sort(dim=-1, descending=True).values.gather(-1, (k - 1).view(-1, 1))
    return scores.masked_fill(scores < kth, float("-inf"))


def apply_top_p(scores: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    sorted_scores, order = scores.sort(dim=-1, descending=True)
    probs = sorted_scores.softmax(-1)
    # A token stays when the mass before it is still below p; the top token always stays.
    before = probs.cumsum(-1) - probs
    drop_sorted = before >= top_p.view(-1, 1)
    drop_sorted[:, 0] = False
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return scores.masked_fill(drop, float("-inf"))


def apply_min_p(scores: torch.Tensor, min_p: torch.Tensor) -> torch.Tensor:
    probs = scores.softmax(-1)
    threshold = probs.max(-1, keepdim=True).values * min_p.view(-1, 1)
    return scores.masked_fill(probs < threshold, float("-inf"))


# ---- the pipeline ----

@dataclass
class BatchSettings:
    """The per-row settings of a batch as tensors, built once per batch (rows drop out with `select`)."""

    params: list[SamplingParams]
    temperature: torch.Tensor
    top_k: torch.Tensor
    top_p: torch.Tensor
    min_p: torch.Tensor
    penalty: torch.Tensor

    @classmethod
    def build(cls, params: list[SamplingParams], device="cpu") -> "BatchSettings":
        f = lambda name, dtype=torch.float32: torch.tensor([getattr(p, name) for p in params], dtype=dtype, device=device)
        return cls(params, f("temperature"), f("top_k", torch.long), f("top_p"), f("min_p"), f("repetition_penalty"))

    def select(self, rows: list[int]) -> "BatchSettings":
        idx = torch.tensor(rows, dtype=torch.long, device=self.temperature.device)
        return BatchSettings([self.params[i] for i in rows], *(t[idx] for t in
                             (self.temperature, self.top_k, self.top_p, self.min_p, self.penalty)))

    @property
    def all_greedy(self) -> bool:
        return all(p.greedy for p in self.params)

    @property
    def any_penalty(self) -> bool:
        return any(p.repetition_penalty != 1.0 for p in self.params)

    @property
    def any_filter(self) -> tuple[bool, bool, bool]:
        return (any(p.top_k > 0 for p in self.params), any(p.top_p < 1 for p in self.params),
                any(p.min_p > 0 for p in self.params))


def penalized_scores(scores: torch.Tensor, settings: BatchSettings, seen: torch.Tensor | None) -> torch.Tensor:
    """Step 1 (only when some row asks for it; `seen` may be None otherwise)."""
    scores = scores.float()
    if settings.any_penalty and seen is not None:
        scores = apply_repetition_penalty(scores, seen, settings.penalty)
    return scores


def probabilities(scores: torch.Tensor, settings: BatchSettings, seen: torch.Tensor | None = None) -> torch.Tensor:
    """Steps 1 and 3-6: the distribution a row samples from, [N, V]. Greedy rows get a one-hot at the argmax."""
    scores = penalized_scores(scores, settings, seen)
    scaled = apply_temperature(scores, settings.temperature)
    use_k, use_p, use_min_p = settings.any_filter
    if use_k:
        scaled = apply_top_k(scaled, settings.top_k)
    if use_p:
        scaled = apply_top_p(scaled, settings.top_p)
    if use_min_p:
        scaled = apply_min_p(scaled, settings.min_p)
    probs = scaled.softmax(-1)
    greedy = settings.temperature == 0
    if greedy.any():
        one_hot = torch.zeros_like(probs).scatter_(-1, scores.argmax(-1, keepdim=True), 1.0)
        probs = torch.where(greedy.view(-1, 1), one_hot, probs)
    return probs


def draw(probs: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
    """Step 7: one token per row, each row from its own generator (so a seeded request is reproducible
    whatever else shares its batch)."""
    return torch.cat([torch.multinomial(probs[i], 1, generator=g) for i, g in enumerate(generators)])


def sample(scores: torch.Tensor, settings: BatchSettings, generators: list[torch.Generator],
           seen: torch.Tensor | None = None) -> torch.Tensor:
    """Next token per row [N] from the last-position scores [N, V]."""
    if settings.all_greedy:
        return penalized_scores(scores, settings, seen).argmax(-1)
    return draw(probabilities(scores, settings, seen), generators)


def token_logprobs(scores: torch.Tensor, tokens: torch.Tensor, k: int) -> list[tuple[float, dict[int, float]]]:
    """Per row: the log-probability of `tokens` under softmax(scores) and the k most likely tokens' ({id: lp})."""
    logp = scores.float().log_softmax(-1)
    chosen = logp.gather(-1, tokens.view(-1, 1)).view(-1).tolist()
    if k <= 0:
        return [(lp, {}) for lp in chosen]
    top = logp.topk(min(k, logp.shape[-1]), dim=-1)
    return [(lp, dict(zip(ids, vals))) for lp, ids, vals in zip(chosen, top.indices.tolist(), top.values.tolist())]


def seen_mask(token_rows: list[list[int]], vocab_size: int, device="cpu") -> torch.Tensor:
    """[N, V] bool: which tokens each row already contains (for the repetition penalty)."""
    seen = torch.zeros(len(token_rows), vocab_size, dtype=torch.bool, device=device)
    for i, row in enumerate(token_rows):
        if row:
            seen[i, torch.tensor(row, dtype=torch.long, device=device)] = True
    return seen
