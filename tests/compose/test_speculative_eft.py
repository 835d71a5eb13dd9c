"""Speculative EFT samples exactly what plain EFT samples, with fewer large-model calls."""
import copy
import itertools

import pytest
import torch
from scipy.stats import chi2

from slm.compose import EFTModel, speculative_eft
from slm.infer import Engine, SamplingParams
from slm.infer.sampling import BatchSettings, probabilities

V = 8
PROMPT = [1, 2, 3]


def exact_sequence_probs(model, prompt, params, length):
    """P(y_1..y_length | prompt) for every sequence, [V ** length], under the sampler's processors."""
    probs = torch.ones(1)
    prefixes = [[]]
    with torch.no_grad():
        for _ in range(length):
            batch = torch.tensor([prompt + p for p in prefixes])
            step = probabilities(model(batch)[:, -1], BatchSettings.build([params] * len(prefixes)))
            probs = (probs[:, None] * step).flatten()
            prefixes = [p + [t] for p in prefixes for t in range(V)]
    return probs


def pooled_chi2_pvalue(counts: torch.Tensor, probs: torch.Tensor, min_expected: float = 5.0) -> float:
    """Pearson chi-square goodness of fit; cells expected below min_expected are pooled into one."""
    n = counts.sum()
    expected = probs * n
    assert counts[probs == 0].sum() == 0, "sampled a sequence of probability 0"
    big = expected >= min_expected
    obs = torch.cat([counts[big], counts[~big].sum().view(1)])
    exp = torch.cat([expected[big], expected[~big].sum().view(1)])
    stat = float(((obs - exp) ** 2 / exp.clamp_min(1e-12)).sum())
    return float(chi2.sf(stat, df=len(obs) - 1))


def sequence_index(tokens):
    return sum(t * V ** (len(tokens) - 1 - i) for i, t in enumerate(tokens))


@pytest.fixture(scope="module")
def composition(make_tiny):
    large, small, ft = make_tiny(1, n_layers=2, dim=32), make_tiny(2), make_tiny(3)
    return EFTModel(large, [(ft, 1.0)], small)


@pytest.fixture
def one_thread():
    """Thousands of tiny batch-1 forwards: one thread avoids contention overhead on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_speculative_and_plain_eft_sample_the_same_distribution(composition, one_thread):
    n, length = 2000, 3
    params = [SamplingParams(max_tokens=length, temperature=1.0, seed=i, ignore_eos=True) for i in range(n)]
    exact = exact_sequence_probs(composition, PROMPT, params[0], length)
    assert abs(float(exact.sum()) - 1) < 1e-4

    spec = speculative_eft(composition, k=2)
    spec_counts = torch.zeros(V ** length)
    for p in params:
        spec_counts[sequence_index(spec.generate(PROMPT, p).token_ids)] += 1
    plain = Engine(composition, max_batch_size=n).generate([PROMPT] * n, params)
    plain_counts = torch.bincount(torch.tensor([sequence_index(c.token_ids) for c in plain]), minlength=V ** length)

    assert pooled_chi2_pvalue(spec_counts, exact) > 1e-3
    assert pooled_chi2_pvalue(plain_counts.float(), exact) > 1e-3
    # The same test rejects the draft's (the fine-tuned model's) and the large base's own distributions.
    ft, large = composition.expert_models[0], composition.members[composition.base_slot]
    assert pooled_chi2_pvalue(spec_counts, exact_sequence_probs(ft, PROMPT, params[0], length)) < 1e-6
    assert pooled_chi2_pvalue(spec_counts, exact_sequence_probs(large, PROMPT, params[0], length)) < 1e-6
    assert 0 < spec.stats.acceptance_rate < 1  # both the accept and the residual paths ran


def count_calls(module):
    calls = []
    module.register_forward_hook(lambda *_: calls.append(1))
    return calls


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_large_model_calls_fall_when_the_draft_agrees(make_tiny, temperature):
    """When the large base is close to the small one, EFT is close to the fine-tuned drafter: most drafts are
    kept and the large model runs once per block instead of once per token. Greedy output is unchanged."""
    small, ft = make_tiny(2), make_tiny(3)
    large = copy.deepcopy(small)
    with torch.no_grad():
        for p in large.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    eft = EFTModel(large, [(ft, 1.0)], small)
    params = SamplingParams(max_tokens=30, temperature=temperature, seed=7, ignore_eos=True)

    plain_calls = count_calls(large)
    [plain] = Engine(eft).generate([PROMPT], params)
    assert len(plain_calls) == 30

    spec = speculative_eft(eft, k=4)
    spec_calls = len(plain_calls)
    out = spec.generate(PROMPT, params)
    spec_calls = len(plain_calls) - spec_calls
    assert len(out.token_ids) == 30 and spec_calls == spec.stats.target_calls
    assert spec_calls < 15 and spec.stats.acceptance_rate > 0.5
    if temperature == 0:
        assert out.token_ids == plain.token_ids


def test_drafter_with_extra_vocabulary_rows(make_tiny):
    """A drafter padded beyond the shared vocabulary drafts through its first V rows; greedy output is EFT's."""
    large, small = make_tiny(1, n_layers=2, dim=32), make_tiny(2)
    ft = make_tiny(3, vocab=V + 8)
    eft = EFTModel(large, [(ft, 1.0)], small)
    params = SamplingParams(max_tokens=12)
    [plain] = Engine(eft).generate([PROMPT], params)
    assert speculative_eft(eft, k=3).generate(PROMPT, params).token_ids == plain.token_ids
