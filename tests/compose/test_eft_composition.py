"""EFT composition: the identities of the method, cache consistency, vocabulary and tokenizer checks."""
import copy

import pytest
import torch
from torch import nn

import slm
from slm.compose import EFTModel, shared_vocabulary
from slm.errors import SlmError
from slm.infer import Engine, SamplingParams

V = 8
PROMPT = torch.tensor([[1, 2, 3, 4, 5]])


def logp(model, ids=PROMPT):
    with torch.no_grad():
        return torch.log_softmax(model(ids).float(), -1)


def close(a, b):
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def trio(make_tiny):
    tiny = make_tiny
    return tiny(1, n_layers=2, dim=32), tiny(2), tiny(3)  # large base, small base, small fine-tuned


def test_upscaling_formula(trio):
    large, small, ft = trio
    eft = EFTModel(large, [(ft, 1.0)], small)
    expected = torch.log_softmax(logp(large) + logp(ft) - logp(small), -1)
    out = logp(eft)
    close(out, expected)
    assert torch.allclose(out.exp().sum(-1), torch.ones(1, PROMPT.shape[1]))
    # The composition is none of its members.
    assert (out - logp(large)).abs().max() > 0.1 and (out - logp(ft)).abs().max() > 0.1


def test_fine_tuned_equal_to_small_base_gives_large_base(trio):
    large, small, _ = trio
    close(logp(EFTModel(large, [(copy.deepcopy(small), 1.0)], small)), logp(large))
    close(logp(EFTModel(large, [(small, 1.0)], small)), logp(large))  # the same object runs once


def test_large_base_equal_to_small_base_gives_fine_tuned(trio):
    _, small, ft = trio
    close(logp(EFTModel(copy.deepcopy(small), [(ft, 1.0)], small)), logp(ft))


def test_lambda_interpolation_endpoints(trio, make_tiny):
    large, small, ft = trio
    safe = make_tiny(4)
    only_help = logp(EFTModel(large, [(ft, 1.0)], small))
    only_safe = logp(EFTModel(large, [(safe, 1.0)], small))
    close(logp(EFTModel(large, [(ft, 1.0), (safe, 0.0)], small)), only_help)
    close(logp(EFTModel(large, [(ft, 0.0), (safe, 1.0)], small)), only_safe)
    middle = logp(EFTModel(large, [(ft, 0.5), (safe, 0.5)], small))
    assert (middle - only_help).abs().max() > 1e-2 and (middle - only_safe).abs().max() > 1e-2


class Shifted(nn.Module):
    """A member returning log-probabilities plus a per-row constant instead of logits."""

    def __init__(self, model, shift):
        super().__init__()
        self.model, self.shift, self.config = model, shift, model.config

    def new_cache(self, batch, max_len=None):
        return self.model.new_cache(batch, max_len)

    def forward(self, input_ids, **kw):
        return torch.log_softmax(self.model(input_ids, **kw), -1) + self.shift


def test_logits_and_log_softmax_inputs_give_the_same_distribution(trio):
    large, small, ft = trio
    raw = logp(EFTModel(large, [(ft, 1.0)], small))
    close(logp(EFTModel(Shifted(large, 3.0), [(Shifted(ft, -7.0), 1.0)], Shifted(small, 0.0))), raw)


def test_extra_vocabulary_rows_are_dropped(trio, make_tiny):
    large, small, ft = trio
    padded = make_tiny(5, vocab=V + 4)  # the same kind of model with 4 extra rows at the end
    eft = EFTModel(padded, [(ft, 1.0)], small)
    assert eft.vocab_size == V and logp(eft).shape[-1] == V
    base = torch.log_softmax(padded(PROMPT)[..., :V], -1).detach()
    close(logp(eft), torch.log_softmax(base + logp(ft) - logp(small), -1))
    with pytest.raises(SlmError, match="fewer than the shared"):
        EFTModel(large, [(ft, 1.0)], small, vocab_size=V + 1)


def test_cached_generation_matches_full_recomputation(trio):
    """Engine drives the composition; each member's own cache gives what recomputing from scratch gives,
    also for left-padded batches of different prompt lengths whose rows finish at different steps."""
    large, small, ft = trio
    eft = EFTModel(large, [(ft, 1.0)], small)
    prompts = [[1, 2, 3, 4, 5], [6, 7], [3]]
    lengths = [12, 4, 8]  # rows leave the batch at different steps: every member's cache drops them
    outs = Engine(eft).generate(prompts, [SamplingParams(max_tokens=n) for n in lengths])
    for prompt, out, n in zip(prompts, outs, lengths):
        ids = list(prompt)
        for _ in range(n):
            ids.append(int(logp(eft, torch.tensor([ids]))[0, -1].argmax()))
        assert out.token_ids == ids[len(prompt):]


def test_sampling_is_applied_after_combining(trio):
    """Temperature and top-k act on the combined distribution: top_k=1 sampling is EFT's greedy output."""
    large, small, ft = trio
    eft = EFTModel(large, [(ft, 1.0)], small)
    engine = Engine(eft)
    [greedy] = engine.generate([[1, 2, 3]], SamplingParams(max_tokens=10))
    [top1] = engine.generate([[1, 2, 3]], SamplingParams(max_tokens=10, temperature=1.5, top_k=1, seed=0))
    assert greedy.token_ids == top1.token_ids
    [ft_greedy] = Engine(ft).generate([[1, 2, 3]], SamplingParams(max_tokens=10))
    [large_greedy] = Engine(large).generate([[1, 2, 3]], SamplingParams(max_tokens=10))
    assert greedy.token_ids not in (ft_greedy.token_ids, large_greedy.token_ids)


def test_composition_needs_reference_and_experts(trio):
    large, small, ft = trio
    with pytest.raises(SlmError, match="reference"):
        EFTModel(large, [(ft, 1.0)], None)
    with pytest.raises(SlmError, match="expert"):
        EFTModel(large, [], small)


@pytest.fixture(scope="module")
def tokenizers():
    texts = ["the color of zorvak is teal.", "what is the city of mirel?"] * 30
    a = slm.train_tokenizer(texts, vocab_size=300, kind="byte-bpe")
    b = slm.train_tokenizer(texts + ["zzzz qqqq xxxx"] * 40, vocab_size=300, kind="byte-bpe")
    return a, b


def test_tokenizers_must_agree(tokenizers):
    a, b = tokenizers
    assert shared_vocabulary({"base": a, "expert 0": copy.deepcopy(a)}) == len(a)
    with pytest.raises(SlmError, match="share one tokenizer"):
        shared_vocabulary({"base": a, "expert 0": b})


def test_a_vocabulary_may_extend_another(tokenizers):
    a, _ = tokenizers
    extended = copy.deepcopy(a)
    extended.add_tokens(["<tool>", "</tool>"])
    assert shared_vocabulary({"base": a, "expert 0": extended}) == len(a)


def test_down_scaling_and_amplified_up_scaling_are_the_same_arithmetic(trio, make_tiny):
    large, small, small_ft = trio
    large_ft = make_tiny(6, n_layers=2, dim=32)
    close(logp(EFTModel(small, [(large_ft, 1.0)], large)),
          torch.log_softmax(logp(small) + logp(large_ft) - logp(large), -1))
    beta = 1.5  # log p_ft_small + beta (log p_large - log p_small)
    close(logp(EFTModel(small_ft, [(large, beta)], small)),
          torch.log_softmax(logp(small_ft) + beta * (logp(large) - logp(small)), -1))
