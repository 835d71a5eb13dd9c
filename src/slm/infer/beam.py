"""Beam search over the engine's models (decoders and encoder-decoders), with transformers' semantics.

    engine = Engine(model, tokenizer)
    [best] = engine.beam_search(["translate: ..."], BeamParams(num_beams=4, num_return_sequences=2))
    best[0].text, best[0].score                     # the n-best list of each prompt, best first

Every prompt keeps `num_beams` running hypotheses. Each step scores every continuation of every beam by its summed
log-probability, takes the top 2 x num_beams, sends those that end (EOS, or the length limit) to the prompt's
finished list with score sum / length ** length_penalty (length = generated tokens, EOS included), and continues
with the best num_beams that did not end. A finished candidate counts only if it ranks among the top num_beams of
the step. The search for a prompt ends when `early_stopping` is True and num_beams hypotheses have finished, or
(False) when the best running beam, normalised by its current length, cannot beat the worst finished one, or
("never") by the best length it could still reach. These are transformers' rules (generation.utils._beam_search),
so the outputs and `score`s equal its `generate(num_beams=...)`'s sequences and sequences_scores.
Caches follow their beams through `cache.select` (a gather of rows).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F

from slm.errors import SlmError

MAX_BEAMS = 64  # the cache holds prompts x beams rows; beyond this a request is a mistake, not a search
_NEG = -1.0e9


@dataclass
class BeamParams:
    num_beams: int = 4
    max_tokens: int = 64
    length_penalty: float = 1.0  # > 0 favours longer hypotheses, < 0 shorter ones
    early_stopping: bool | Literal["never"] = False
    num_return_sequences: int = 1
    stop_token_ids: list[int] = field(default_factory=list)  # besides EOS

    def __post_init__(self):
        if not isinstance(self.num_beams, int) or isinstance(self.num_beams, bool) or \
                not 1 <= self.num_beams <= MAX_BEAMS:
            raise SlmError(f"num_beams must be an integer from 1 to {MAX_BEAMS}, got {self.num_beams!r}")
        if not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise SlmError("max_tokens must be an integer >= 1")
        if not isinstance(self.num_return_sequences, int) or not 1 <= self.num_return_sequences <= self.num_beams:
            raise SlmError(f"num_return_sequences must be from 1 to num_beams ({self.num_beams}), "
                           f"got {self.num_return_sequences!r}")
        if self.early_stopping not in (True, False, "never"):
            raise SlmError(f"early_stopping must be true, false or 'never', got {self.early_stopping!r}")


@dataclass
class Hypothesis:
    token_ids: list[int]  # generated tokens, the EOS that ended it included
    score: float  # summed log-probability / len(token_ids) ** length_penalty
    text: str
    finish_reason: str  # "stop" (EOS) or "length"


def _gather(t: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows of t [B, N, ...] picked per prompt by index [B, M]."""
    return torch.take_along_dim(t, index.view(*index.shape, *([1] * (t.dim() - 2))), dim=1)


@torch.inference_mode()
def beam_search(engine, prompts, params: BeamParams) -> list[list[Hypothesis]]:
    """The n-best list of each prompt (prompts: strings or token-id lists), best first."""
    from slm.infer.sampling import SamplingParams

    seqs = engine._sequences(prompts, SamplingParams(max_tokens=params.max_tokens), track_text=False)
    B, K = len(seqs), params.num_beams
    width = max(len(s.prompt_ids) for s in seqs)
    budget = width + params.max_tokens
    cache_len = min(budget, engine.max_seq_len) if engine.max_seq_len else budget
    scores, cache, mask, last_position, padded = engine._prefill(seqs, cache_len)
    # Decoders spend the cache on the prompt; an encoder-decoder's decoder has its whole length to itself.
    max_new = min(params.max_tokens, getattr(cache, "max_len", cache_len) - cache.length + 1)
    rows = torch.arange(B, device=scores.device).repeat_interleave(K)
    cache.select(rows)
    scores, mask, last_position = scores[rows], mask[rows], last_position[rows]

    dev = scores.device
    stop_ids = torch.tensor(sorted(engine.eos_token_ids | set(params.stop_token_ids)) or [-1], device=dev)
    keep = max(2, 1 + len(stop_ids)) * K  # enough candidates that K can continue even if the best all end
    top_k_mask = torch.arange(keep, device=dev) < K
    running = torch.zeros((B, K, max_new), dtype=torch.long, device=dev)
    running_scores = torch.full((B, K), _NEG, device=dev)
    running_scores[:, 0] = 0.0  # beams start identical: only the first one's continuations count
    done = torch.zeros((B, K, max_new), dtype=torch.long, device=dev)
    done_scores = torch.full((B, K), _NEG, device=dev)
    done_lengths = torch.zeros((B, K), dtype=torch.long, device=dev)
    done_flag = torch.zeros((B, K), dtype=torch.bool, device=dev)
    may_improve = torch.ones((B, 1), dtype=torch.bool, device=dev)
    offsets = torch.arange(B, device=dev).view(-1, 1) * K

    for t in range(max_new):
        logp = F.log_softmax(scores.float(), dim=-1)
        V = logp.shape[-1]
        total = (logp.view(B, K, V) + running_scores[:, :, None]).view(B, K * V)
        cand_scores, cand = torch.topk(total, keep)
        source, token = cand // V, cand % V
        cand_seqs = _gather(running, source).clone()
        cand_seqs[:, :, t] = token
        ends = torch.isin(token, stop_ids) | (t + 1 == max_new)

        # The best K candidates that go on.
        going = cand_scores + ends.float() * _NEG
        next_index = torch.topk(going, K).indices
        running, running_scores = _gather(cand_seqs, next_index), _gather(going, next_index)
        beam_rows = (_gather(source, next_index) + offsets).view(-1)

        # Candidates that end join the finished lists if they beat what is there.
        normalised = cand_scores / (t + 1) ** params.length_penalty
        full = done_flag.all(-1, keepdim=True) & (params.early_stopping is True)
        normalised = normalised + (full | ~may_improve).float() * _NEG + (~(ends & top_k_mask)).float() * _NEG
        merged = torch.topk(torch.cat([done_scores, normalised], 1), K).indices
        done = _gather(torch.cat([done, cand_seqs], 1), merged)
        done_scores = _gather(torch.cat([done_scores, normalised], 1), merged)
        done_lengths = _gather(torch.cat([done_lengths, torch.full_like(cand, t + 1)], 1), merged)
        done_flag = _gather(torch.cat([done_flag, ends & top_k_mask], 1), merged)

        reach = max_new if (params.early_stopping == "never" and params.length_penalty > 0) else t + 1
        best_possible = running_scores[:, :1] / reach ** params.length_penalty
        worst_done = torch.where(done_flag, done_scores.min(-1, keepdim=True).values, torch.full_like(done_scores, _NEG))
        may_improve = may_improve & (best_possible > worst_done).any(-1, keepdim=True)
        all_full = bool(done_flag.all()) and params.early_stopping is True
        if not bool(may_improve.any()) or all_full or bool(ends.all()) or t + 1 == max_new:
            break

        cache.select(beam_rows)
        mask, last_position = mask[beam_rows], last_position[beam_rows]
        scores, mask, last_position = engine._decode(running[:, :, t].reshape(-1), cache, mask, last_position, padded)

    out = []
    for b in range(B):
        hyps = []
        for j in range(params.num_return_sequences):
            ids = done[b, j, :done_lengths[b, j]].tolist()
            ended = bool(ids) and ids[-1] in engine.eos_token_ids | set(params.stop_token_ids)
            text = ""
            if engine.tokenizer is not None:
                text = engine.tokenizer.decode(ids[:-1] if ended else ids, skip_special_tokens=True)
            hyps.append(Hypothesis(ids, float(done_scores[b, j]), text, "stop" if ended else "length"))
        out.append(hyps)
    return out
