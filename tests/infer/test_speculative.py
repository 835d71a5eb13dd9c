"""Speculative decoding: greedy equals the target alone; sampling follows the target's distribution."""
import pytest
import torch
from torch import nn

from slm.infer import Engine, SamplingParams
from slm.infer.speculative import SpeculativeDecoder, rejection_sample
from slm.models import Decoder, KVCache, ModelConfig


# chi-square critical values at the 0.001 level (df = cells - 1)
CHI2_999 = {7: 24.322, 63: 103.442}


def chi_square(counts: torch.Tensor, probs: torch.Tensor) -> float:
    n = counts.sum()
    expected = probs * n
    keep = expected > 0
    assert counts[~keep].sum() == 0, "sampled a token the target gives probability 0"
    return float(((counts[keep] - expected[keep]) ** 2 / expected[keep]).sum())


def model(seed, vocab=8):
    cfg = ModelConfig(vocab_size=vocab, dim=16, n_layers=1, n_heads=2, n_kv_heads=1, ffn_dim=32, max_seq_len=64)
    m = Decoder(cfg).init_weights(seed)
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() == 2:
                p.mul_(6.0)  # peaked, different distributions: a weak draft gets rejected often
    return m.eval()


class ConstantDraft(nn.Module):
    """A deliberately bad draft with the Decoder's interface: always proposes token 0 with certainty."""

    def __init__(self, vocab):
        super().__init__()
        self.vocab = vocab

    def new_cache(self, batch, max_len):
        return KVCache(1, batch, 1, max_len, 1)

    def forward(self, input_ids, position_ids=None, attention_mask=None, cache=None, logits_to_keep=0):
        cache.advance(input_ids.shape[1])
        scores = torch.full((*input_ids.shape[:1], logits_to_keep or input_ids.shape[1], self.vocab), -1e9)
        scores[..., 0] = 0.0
        return scores


def test_rejection_step_matches_target_distribution():
    """The core step alone, on 200k rows at once: the next token follows p whatever q proposes."""
    g = torch.Generator().manual_seed(0)
    V, N = 8, 200_000
    p = torch.softmax(torch.randn(V, generator=g) * 2, -1)
    q = torch.softmax(torch.randn(V, generator=g) * 2, -1)
    drafts = torch.multinomial(q, N, replacement=True, generator=g).view(N, 1)
    accepted, nxt = rejection_sample(p.expand(N, 2, V), q.expand(N, 1, V), drafts, g)
    first = torch.where(accepted == 1, drafts[:, 0], nxt)
    assert chi_square(torch.bincount(first, minlength=V).float(), p) < CHI2_999[7]
    # The same statistic does reject the draft's own distribution: the test has power.
    assert chi_square(torch.bincount(drafts[:, 0], minlength=V).float(), p) > CHI2_999[7]
    assert abs(accepted.float().mean().item() - torch.minimum(p, q).sum().item()) < 0.01  # E[accept] = sum min(p, q)


def test_greedy_speculative_equals_target_alone(tiny_model, make_config):
    draft = Decoder(make_config(tiny_model.config.vocab_size, n_layers=1)).init_weights(seed=5).eval()
    prompt = [3, 4, 5, 6]
    [alone] = Engine(tiny_model).generate([prompt], SamplingParams(max_tokens=40))
    for k in (1, 3, 5):
        spec = SpeculativeDecoder(tiny_model, draft, k=k)
        out = spec.generate(prompt, SamplingParams(max_tokens=40))
        assert out.token_ids == alone.token_ids
        assert spec.stats.target_calls < 40 or spec.stats.acceptance_rate == 0
    # The target as its own draft accepts everything: k + 1 tokens per target call.
    self_spec = SpeculativeDecoder(tiny_model, tiny_model, k=4)
    assert self_spec.generate(prompt, SamplingParams(max_tokens=40)).token_ids == alone.token_ids
    assert self_spec.stats.acceptance_rate == 1.0


def exact_first_two(target, prompt, params):
    """The target's exact distribution of (token 1, token 2), [V, V], under the engine's sampling processors."""
    from slm.infer.sampling import BatchSettings, probabilities

    with torch.no_grad():
        settings = BatchSettings.build([params])
        p1 = probabilities(target(torch.tensor([prompt]))[:, -1], settings)[0]
        V = p1.shape[0]
        batch = torch.tensor([prompt + [t] for t in range(V)])
        p2 = probabilities(target(batch)[:, -1], BatchSettings.build([params] * V))
    return p1[:, None] * p2


@pytest.mark.parametrize("bad_draft", [False, True])
def test_sampled_speculative_follows_target_distribution(bad_draft):
    target = model(1)
    draft = ConstantDraft(8) if bad_draft else model(2)
    prompt = [1, 2, 3]
    params = SamplingParams(max_tokens=2, temperature=1.0, seed=0)
    joint = exact_first_two(target, prompt, params)
    spec = SpeculativeDecoder(target, draft, k=2)
    counts = torch.zeros(8, 8)
    for i in range(1200):
        params.seed = i
        a, b = spec.generate(prompt, params).token_ids
        counts[a, b] += 1
    # First token (8 cells) and the pair (64 cells) against the target's exact probabilities.
    assert chi_square(counts.sum(1), joint.sum(1)) < CHI2_999[7]
    assert chi_square(counts.flatten(), joint.flatten()) < CHI2_999[63]
    assert 0 < spec.stats.acceptance_rate < 1


def test_speculative_with_processors_and_stop(tiny_model, tokenizer, make_config):
    draft = Decoder(make_config(tiny_model.config.vocab_size, n_layers=1)).init_weights(seed=5).eval()
    spec = SpeculativeDecoder(tiny_model, draft, tokenizer, k=3)
    params = SamplingParams(max_tokens=25, temperature=0.7, top_k=20, top_p=0.9, repetition_penalty=1.2, seed=3)
    a = spec.generate("def main", params)
    b = spec.generate("def main", params)
    assert a.token_ids == b.token_ids and 1 <= len(a.token_ids) <= 25
    greedy = Engine(tiny_model, tokenizer).generate(["def main"], SamplingParams(max_tokens=20, ignore_eos=True))[0]
    stop = greedy.text[4:7]
    out = spec.generate("def main", SamplingParams(max_tokens=20, ignore_eos=True, stop=[stop]))
    assert out.text == greedy.text[:greedy.text.find(stop)] and out.finish_reason == "stop"
