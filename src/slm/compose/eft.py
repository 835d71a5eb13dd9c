"""EFT: emulated fine-tuning by log-probability arithmetic at decode time (Mitchell et al., 2023).

    model = EFTModel(base=large_base, experts=[(small_ft, 1.0)], reference=small_base)   # up-scaling
    Engine(model, tokenizer).generate(["Q: ..."])                                          # any engine works

At every step and position, with each model's scores turned into log-probabilities over the shared vocabulary:

    log p(y) = log p_base(y) + sum_i w_i (log p_expert_i(y) - log p_reference(y)) - log Z

normalised over the vocabulary (the returned scores are log-probabilities). The usual compositions:
  up-scaling       base = large base, experts = [(small fine-tuned, 1)], reference = small base
  down-scaling     base = small base, experts = [(large fine-tuned, 1)], reference = large base
  interpolation    experts = [(helpful, lam), (safe, 1 - lam)]: the reward r_lam = lam r_help + (1 - lam) r_safe
  amplified        base = small fine-tuned, experts = [(large base, beta)], reference = small base

EFTModel has the Decoder's interface (`forward(input_ids, position_ids, attention_mask, cache, logits_to_keep)`
and `new_cache`), so Engine, speculative decoding, the server and the eval scorer drive it unchanged.
Its cache bundles one KV cache per distinct member model; a model object named twice (say, reference and
base in a test) runs once. Temperature, top-k/p and penalties are applied by the sampler AFTER combining.
Members' scores may be raw logits or log-probabilities: each is log-softmaxed first, which ignores any
per-model constant. Vocabulary rows beyond the shared size (an embedding padded to a multiple of 64,
tokens added by a chat model) are dropped.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import torch
from torch import nn

from slm.errors import SlmError


class EFTCache:
    """One KV cache per distinct member model, moved together. Rows and lengths stay in step."""

    def __init__(self, caches: list):
        self.caches = caches

    @property
    def length(self) -> int:
        return self.caches[0].length

    @property
    def max_len(self) -> int:
        return min(c.max_len for c in self.caches)

    def truncate(self, length: int) -> None:
        for c in self.caches:
            c.truncate(length)

    def select(self, rows) -> None:
        for c in self.caches:
            c.select(rows)


@dataclass
class Member:
    model: nn.Module
    role: str  # "base", "reference" or "expert 0", ... (for messages)


class EFTModel(nn.Module):
    """A composition of causal LMs that behaves as one model returning normalised log-probabilities."""

    def __init__(self, base: nn.Module, experts: list[tuple[nn.Module, float]], reference: nn.Module | None = None,
                 vocab_size: int | None = None):
        super().__init__()
        if not experts:
            raise SlmError("an EFT composition needs at least one expert (fine-tuned model) with a weight")
        if reference is None:
            raise SlmError("an EFT composition needs a reference model (the base the experts were fine-tuned from)")
        self.weights = [float(w) for _, w in experts]
        # Distinct models, each run once per forward: base is index 0; slots map roles to indices.
        self.members = nn.ModuleList()
        self.base_slot = self._slot(base)
        self.reference_slot = self._slot(reference)
        self.expert_slots = [self._slot(m) for m, _ in experts]
        sizes = [_config(m, "vocab_size") for m in self.members]
        known = [s for s in sizes if s]
        self.vocab_size = vocab_size or (min(known) if known else None)
        if self.vocab_size is None:
            raise SlmError("cannot tell the shared vocabulary size: give vocab_size or members with config.vocab_size")
        too_small = [s for s in known if s < self.vocab_size]
        if too_small:
            raise SlmError(f"a member has only {min(too_small)} vocabulary rows, fewer than the shared "
                           f"vocabulary of {self.vocab_size} tokens")
        lengths = [n for n in (_config(m, "max_seq_len") for m in self.members) if n]
        base_cfg = getattr(base, "config", None)
        self.config = SimpleNamespace(
            vocab_size=self.vocab_size, max_seq_len=min(lengths) if lengths else None,
            eos_token_id=getattr(base_cfg, "eos_token_id", None), bos_token_id=getattr(base_cfg, "bos_token_id", None),
            pad_token_id=getattr(base_cfg, "pad_token_id", None))

    def _slot(self, model: nn.Module) -> int:
        for i, m in enumerate(self.members):
            if m is model:
                return i
        self.members.append(model)
        return len(self.members) - 1

    @property
    def device(self) -> torch.device:
        try:
            return next(self.members[self.base_slot].parameters()).device
        except StopIteration:
            return torch.device("cpu")

    def new_cache(self, batch_size: int, max_len: int | None = None, dtype=None) -> EFTCache:
        return EFTCache([m.new_cache(batch_size, max_len) for m in self.members])

    def member_scores(self, input_ids: torch.Tensor, position_ids=None, attention_mask=None, cache: EFTCache | None = None,
                      logits_to_keep: int = 0) -> list[torch.Tensor]:
        """Each distinct member's raw scores for these tokens, each with its own cache."""
        if cache is not None and not isinstance(cache, EFTCache):
            raise SlmError("an EFT model needs its own cache: make it with model.new_cache(batch, max_len)")
        out = []
        for i, m in enumerate(self.members):
            out.append(m(input_ids, position_ids=position_ids, attention_mask=attention_mask,
                         cache=cache.caches[i] if cache is not None else None, logits_to_keep=logits_to_keep))
        return out

    def combine(self, scores: list[torch.Tensor]) -> torch.Tensor:
        """The composition's log-probabilities from the members' scores (one tensor per distinct member)."""
        device = scores[self.base_slot].device
        logp = [torch.log_softmax(s[..., :self.vocab_size].float().to(device), dim=-1) for s in scores]
        combined = logp[self.base_slot].clone()
        for slot, w in zip(self.expert_slots, self.weights):
            if w:
                combined += w * (logp[slot] - logp[self.reference_slot])
        return torch.log_softmax(combined, dim=-1)

    def forward(self, input_ids: torch.Tensor, position_ids=None, attention_mask=None, cache: EFTCache | None = None,
                logits_to_keep: int = 0) -> torch.Tensor:
        """Normalised log-probabilities [B, T, shared vocab] (or [B, logits_to_keep, V])."""
        return self.combine(self.member_scores(input_ids, position_ids, attention_mask, cache, logits_to_keep))

    @property
    def expert_models(self) -> list[nn.Module]:
        return [self.members[s] for s in self.expert_slots]


def _config(model, name: str):
    return getattr(getattr(model, "config", None), name, None)


def shared_vocabulary(tokenizers: dict[str, object]) -> int | None:
    """The number of token ids every tokenizer agrees on, or a clear error when they do not share one.

    tokenizers: role -> tokenizer (None entries are skipped). One vocabulary may extend another (extra tokens
    appended at the end); the shared part must map every token to the same id.
    """
    named = [(role, t) for role, t in tokenizers.items() if t is not None]
    if not named:
        return None
    vocabs = [(role, t.get_vocab()) for role, t in named]
    shared = min(len(v) for _, v in vocabs)
    (ref_role, ref_vocab) = min(vocabs, key=lambda rv: len(rv[1]))
    ref_by_id = {i: tok for tok, i in ref_vocab.items()}
    for role, vocab in vocabs:
        for token, i in vocab.items():
            if i < shared and ref_by_id.get(i) != token:
                raise SlmError(f"the models must share one tokenizer: token id {i} is {token!r} for the {role} "
                               f"but {ref_by_id.get(i)!r} for the {ref_role}")
    eos = {t.eos_token_id for _, t in named}
    if len(eos) > 1:
        raise SlmError(f"the models' tokenizers disagree on the end-of-sequence token ({sorted(eos, key=str)})")
    return shared
