"""Speculative EFT: a small fine-tuned expert drafts a block, the composition verifies it in one pass.

    spec = speculative_eft(eft_model, tokenizer, k=4)          # drafts with the highest-weighted expert
    completion = spec.generate("Q: ...", SamplingParams(temperature=1.0, seed=0))
    spec.stats.acceptance_rate, spec.stats.target_calls       # target calls = large-model calls

The EFT distribution is the target of ordinary speculative decoding (slm.infer.speculative): draft token d is
kept with probability min(1, p_EFT(d) / p_draft(d)), and at the first rejection the next token is drawn from
normalize(max(0, p_EFT - p_draft)), so the output is distributed exactly as plain EFT sampling (greedy output
is EFT's greedy output). The draft is a cheap model; every verification pass runs all members (the large base,
the reference and the experts) once over the k drafted tokens, with their KV caches rolled back on rejection.
Up-scaling drafts well because the up-scaled distribution stays close to the small fine-tuned model's.
"""
from __future__ import annotations

from torch import nn

from slm.compose.eft import EFTModel
from slm.errors import SlmError
from slm.infer.speculative import SpeculativeDecoder


class SharedVocabulary(nn.Module):
    """A member model seen through the composition's vocabulary (its extra rows dropped), for drafting."""

    def __init__(self, model: nn.Module, vocab_size: int):
        super().__init__()
        self.model = model
        self.vocab_size = vocab_size
        self.config = getattr(model, "config", None)

    def new_cache(self, batch_size: int, max_len: int | None = None):
        return self.model.new_cache(batch_size, max_len)

    def forward(self, input_ids, position_ids=None, attention_mask=None, cache=None, logits_to_keep=0):
        return self.model(input_ids, position_ids=position_ids, attention_mask=attention_mask, cache=cache,
                          logits_to_keep=logits_to_keep)[..., :self.vocab_size]


def speculative_eft(model: EFTModel, tokenizer=None, k: int = 4, draft: nn.Module | None = None,
                    eos_token_ids=None) -> SpeculativeDecoder:
    """A batch-1 speculative decoder whose target is the EFT composition and whose draft is an expert."""
    if not isinstance(model, EFTModel):
        raise SlmError("speculative EFT needs an EFTModel (a composition) as its target")
    if draft is None:
        best = max(range(len(model.weights)), key=lambda i: model.weights[i])
        draft = model.expert_models[best]
    draft_vocab = getattr(getattr(draft, "config", None), "vocab_size", None)
    if draft_vocab is not None and draft_vocab != model.vocab_size:
        if draft_vocab < model.vocab_size:
            raise SlmError(f"the draft has {draft_vocab} vocabulary rows, fewer than the composition's {model.vocab_size}")
        draft = SharedVocabulary(draft, model.vocab_size)
    return SpeculativeDecoder(model, draft, tokenizer, k=k, eos_token_ids=eos_token_ids)
