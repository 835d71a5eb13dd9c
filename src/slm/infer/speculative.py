"""Speculative decoding with a draft model (Leviathan et al. 2023; Chen et al. 2023).

Each round the draft proposes k tokens one by one (distributions q_1..q_k); the target scores all of them in
one forward (p_1..p_{k+1}). Draft token d_i is accepted with probability min(1, p_i(d_i) / q_i(d_i)); at the
first rejection the next token is drawn from normalize(max(0, p_i - q_i)), and when all k are accepted a
bonus token comes from p_{k+1}. The output is distributed exactly as sampling from the target alone; with
temperature 0 both distributions are one-hot, so the output is the target's greedy output.

Rejected tokens are discarded by rolling the KV caches back (`cache.truncate`); each model is then fed the
tokens it has not yet seen (`tokens[cache.length:]`), so nothing is recomputed. The distributions p and q go
through the same sampling processors as the engine (slm.infer.sampling.probabilities).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from slm.errors import SlmError
from slm.infer.engine import Completion, model_device
from slm.infer.sampling import BatchSettings, SamplingParams, probabilities, seen_mask


@dataclass
class SpeculativeStats:
    proposed: int = 0  # draft tokens offered to the target
    accepted: int = 0
    target_calls: int = 0
    draft_calls: int = 0
    tokens: int = 0  # tokens generated

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.proposed if self.proposed else 0.0

    @property
    def tokens_per_target_call(self) -> float:
        return self.tokens / self.target_calls if self.target_calls else 0.0


def rejection_sample(p: torch.Tensor, q: torch.Tensor, drafts: torch.Tensor,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The verification step, batched over rows.

    p: [N, k+1, V] target probabilities (position i scores draft token i; the last is the bonus position);
    q: [N, k, V] draft probabilities; drafts: [N, k]. Returns (accepted count [N], next token [N]): a row keeps
    drafts[:, :n] and then the next token.
    """
    N, k = drafts.shape
    rows = torch.arange(N, device=p.device)
    if k:
        p_d = p[:, :k].gather(-1, drafts.unsqueeze(-1)).squeeze(-1)
        q_d = q.gather(-1, drafts.unsqueeze(-1)).squeeze(-1)
        u = torch.rand(N, k, generator=generator, device=p.device)
        accepted = (u * q_d < p_d).int().cumprod(-1).sum(-1)
    else:
        accepted = torch.zeros(N, dtype=torch.long, device=p.device)
    p_next = p[rows, accepted]
    q_next = torch.cat([q, torch.zeros_like(p[:, :1])], dim=1)[rows, accepted]  # zero at the bonus position
    residual = (p_next - q_next).clamp_min(0)
    mass = residual.sum(-1, keepdim=True)
    residual = torch.where(mass > 0, residual / mass.clamp_min(1e-30), p_next)
    return accepted, torch.multinomial(residual, 1, generator=generator).squeeze(-1)


class SpeculativeDecoder:
    """Batch-1 speculative generation: `generate(prompt, params) -> Completion`; `stats` accumulates."""

    def __init__(self, target, draft, tokenizer=None, k: int = 4, eos_token_ids=None):
        from slm.infer.engine import Engine

        if k < 1:
            raise SlmError("k (draft tokens per round) must be >= 1")
        self.engine = Engine(target, tokenizer, eos_token_ids=eos_token_ids)  # prompt handling and stop rules
        self.target, self.draft, self.k = self.engine.model, draft.eval() if hasattr(draft, "eval") else draft, k
        lengths = [getattr(getattr(m, "config", None), "max_seq_len", None) for m in (target, draft)]
        self.context = min((n for n in lengths if n), default=None)
        self.stats = SpeculativeStats()

    @torch.inference_mode()
    def generate(self, prompt, params: SamplingParams | None = None) -> Completion:
        params = params or SamplingParams()
        seq = self.engine.new_sequence(prompt, params)
        generator = seq.generator or torch.Generator().manual_seed(0)  # greedy draws are deterministic anyway
        device = model_device(self.target)
        tokens = list(seq.prompt_ids)
        context = self.context or len(tokens) + params.max_tokens + self.k + 1
        settings = BatchSettings.build([params] * (self.k + 1), device)
        cache_len = min(context, len(tokens) + params.max_tokens + self.k)
        target_cache = self.target.new_cache(1, cache_len)
        draft_cache = self.draft.new_cache(1, cache_len)
        stats = self.stats
        while not seq.finished:
            if len(tokens) > context:
                seq.finish("length")
                break
            k = min(self.k, params.max_tokens - len(seq.output_ids) - 1, context - len(tokens))
            drafts, qs = [], []
            for i in range(k):
                fresh = tokens[draft_cache.length:] + drafts[-1:]
                scores = self._forward(self.draft, fresh, draft_cache, 1, device)
                q = probabilities(scores, settings.select([i]), self._seen(params, tokens, drafts, 1, scores.shape[-1], device))
                drafts.append(int(torch.multinomial(q[0], 1, generator=generator)))
                qs.append(q[0])
            stats.draft_calls += k
            fresh = tokens[target_cache.length:] + drafts
            scores = self._forward(self.target, fresh, target_cache, k + 1, device)
            if k and scores.shape[-1] != qs[0].shape[-1]:
                raise SlmError("the draft and the target must share one vocabulary")
            p = probabilities(scores, settings.select(list(range(k + 1))),
                              self._seen(params, tokens, drafts, k + 1, scores.shape[-1], device))
            q = torch.stack(qs) if qs else p.new_zeros(0, p.shape[-1])
            n, nxt = rejection_sample(p[None], q[None], torch.tensor([drafts], dtype=torch.long, device=device),
                                      generator)
            n = int(n)
            stats.target_calls += 1
            stats.proposed += k
            stats.accepted += n
            target_cache.truncate(len(tokens) + n)
            draft_cache.truncate(min(draft_cache.length, len(tokens) + n))
            for token in drafts[:n] + [int(nxt)]:
                tokens.append(token)
                seq.append(token)
                stats.tokens += 1
                if seq.finished:
                    break
        return seq.completion()

    @staticmethod
    def _forward(model, fresh: list[int], cache, keep: int, device) -> torch.Tensor:
        ids = torch.tensor([fresh], dtype=torch.long, device=device)
        return model(ids, cache=cache, logits_to_keep=keep)[0]

    @staticmethod
    def _seen(params, tokens, drafts, positions, vocab_size, device):
        """Per scored position, the tokens before it (only when a repetition penalty needs them)."""
        if params.repetition_penalty == 1.0:
            return None
        start = len(drafts) + 1 - positions  # the first scored position follows drafts[:start]
        rows = [tokens + drafts[:start + j] for j in range(positions)]
        return seen_mask(rows, vocab_size, device)
