"""Scorer: lm-eval's token boundaries and windows, checked against independent computations; batch invariance."""
import random

import pytest
import torch

from slm.eval.scoring import Scorer, rolling_windows
from tiny_corpus import WORDS


def _pairs(n, seed=0):
    rng = random.Random(seed)
    words = WORDS.split()
    return [(" ".join(rng.choices(words, k=rng.randint(1, 14))), " " + " ".join(rng.choices(words, k=rng.randint(1, 6))))
            for _ in range(n)]


def _close(a: float, b: float) -> bool:
    # fp32 sums of log-probabilities: CPU matmuls round differently for different padded shapes (~1 ulp).
    return abs(a - b) <= 1e-6 * max(1.0, abs(a))


def test_loglikelihood_matches_a_direct_forward(model, tokenizer):
    scorer = Scorer(model, tokenizer, batch_size=4)
    for context, continuation in _pairs(6, seed=1):
        ctx = tokenizer.encode(context)
        whole = tokenizer.encode(context + continuation)
        cont = whole[len(ctx):]
        with torch.no_grad():
            logp = model(torch.tensor([whole])).float().log_softmax(-1)[0]
        expected = sum(float(logp[len(ctx) - 1 + j, t]) for j, t in enumerate(cont))
        greedy = all(int(logp[len(ctx) - 1 + j].argmax()) == t for j, t in enumerate(cont))
        (got, got_greedy), = scorer.loglikelihood([(context, continuation)])
        assert _close(got, expected) and got_greedy == greedy


def test_trailing_space_moves_to_the_continuation(tokenizer, model):
    scorer = Scorer(model, tokenizer)
    assert scorer.encode_pair("the cat ", "sat") == scorer.encode_pair("the cat", " sat")
    ctx, cont = scorer.encode_pair("", "the cat")
    assert ctx == [scorer.prefix_token_id] and cont == tokenizer.encode("the cat")


@pytest.mark.parametrize("n_tokens,max_length,context_len", [(1, 8, 1), (8, 8, 1), (9, 8, 1), (30, 8, 1),
                                                             (30, 8, 4), (17, 5, 5), (0, 4, 1)])
def test_rolling_windows_match_lm_eval(n_tokens, max_length, context_len):
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

    tokens = list(range(100, 100 + n_tokens))
    theirs = [make_disjoint_window(w) for w in get_rolling_token_windows(tokens, 7, max_length, context_len)]
    assert list(rolling_windows(tokens, 7, max_length, context_len)) == theirs
    # every token is predicted exactly once
    assert [t for _, cont in theirs for t in cont] == tokens


def test_rolling_equals_the_sum_of_token_logprobs_when_one_window_fits(model, tokenizer):
    text = "the cat sat on the mat . a dog ran"
    ids = tokenizer.encode(text)
    with torch.no_grad():
        logp = model(torch.tensor([[tokenizer.bos_token_id] + ids])).float().log_softmax(-1)[0]
    expected = sum(float(logp[j, t]) for j, t in enumerate(ids))
    assert _close(Scorer(model, tokenizer).loglikelihood_rolling([text])[0], expected)


def test_long_text_is_scored_in_windows_and_within_context(model, tokenizer):
    text = " ".join([WORDS] * 3)
    assert len(tokenizer.encode(text)) > 2 * model.config.max_seq_len
    total, = Scorer(model, tokenizer, max_length=model.config.max_seq_len).loglikelihood_rolling([text])
    assert total < 0 and total == total  # finite and not NaN


def test_results_do_not_depend_on_batch_size(model, tokenizer):
    pairs = _pairs(40, seed=2)
    texts = [" ".join(random.Random(i).choices(WORDS.split(), k=5 + 9 * i)) for i in range(10)]
    by_size = {bs: (Scorer(model, tokenizer, batch_size=bs).loglikelihood(pairs),
                    Scorer(model, tokenizer, batch_size=bs).loglikelihood_rolling(texts)) for bs in (1, 3, 8)}
    (ref_pairs, ref_texts) = by_size[1]
    for bs in (3, 8):
        got_pairs, got_texts = by_size[bs]
        assert [g for _, g in got_pairs] == [g for _, g in ref_pairs]
        assert all(_close(a, b) for (a, _), (b, _) in zip(got_pairs, ref_pairs))
        assert all(_close(a, b) for a, b in zip(got_texts, ref_texts))


def test_scorer_restores_training_mode(model, tokenizer):
    model.train()
    try:
        Scorer(model, tokenizer).loglikelihood([("the cat", " sat")])
        assert model.training
    finally:
        model.eval()
