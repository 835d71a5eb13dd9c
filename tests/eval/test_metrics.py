import itertools
import math

import pytest

from slm.eval import metrics as M


@pytest.mark.parametrize("n,c,k", [(5, 0, 1), (5, 1, 1), (5, 2, 3), (6, 3, 2), (4, 4, 4), (7, 2, 5), (3, 1, 3)])
def test_pass_at_k_equals_the_fraction_of_k_subsets_with_a_correct_sample(n, c, k):
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    brute = sum(any(samples[i] for i in s) for s in subsets) / len(subsets)
    assert M.pass_at_k(n, c, k) == pytest.approx(brute, abs=1e-12)


def test_pass_at_k_rejects_impossible_arguments():
    with pytest.raises(ValueError):
        M.pass_at_k(3, 4, 1)
    with pytest.raises(ValueError):
        M.pass_at_k(3, 1, 4)


def test_f1_macro_by_hand():
    golds = ["a", "a", "b", "b", "c"]
    preds = ["a", "b", "b", "b", "a"]
    # a: tp1 fp1 fn1 -> 0.5 ; b: tp2 fp1 fn0 -> 0.8 ; c: tp0 fp0 fn1 -> 0
    assert M.f1_macro(preds, golds, ["a", "b", "c"]) == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert M.accuracy(preds, golds) == pytest.approx(3 / 5)


@pytest.mark.parametrize("text,expected", [
    ("so the answer is 1,234.", "1234"), ("-3 apples then 7.50 dollars", "7.5"), ("5.0", "5"),
    ("no numbers here", None), ("#### 72", "72"), ("x = -12", "-12")])
def test_last_number(text, expected):
    assert M.last_number(text) == expected


def test_regex_extract_uses_the_first_group():
    assert M.regex_extract("The answer is (B).", r"answer is \((\w)\)") == "B"
    assert M.regex_extract("nothing", r"answer is (\w)") is None
    assert M.regex_extract("abc123", r"\d+") == "123"


def test_choose_takes_the_first_maximum():
    assert M.choose([-1.0, -0.5, -0.5]) == 1
    assert M.choose([-3.0]) == 0


def test_perplexity_metrics_definitions():
    out = M.perplexity_metrics(-20.0, tokens=10, words=4, n_bytes=16)
    assert out["token_perplexity"] == pytest.approx(math.exp(2.0))
    assert out["word_perplexity"] == pytest.approx(math.exp(5.0))
    assert out["byte_perplexity"] == pytest.approx(math.exp(20 / 16))
    assert out["bits_per_byte"] == pytest.approx(20 / 16 / math.log(2))
    assert M.count_words("a b\n c") == 3


def test_sequence_similarity_is_one_minus_normalised_levenshtein():
    from slm.eval.metrics import sequence_similarity

    assert sequence_similarity("kitten", "sitting") == pytest.approx(1 - 3 / 7)
    assert sequence_similarity(["a", "b"], ["a", "b"]) == 1.0
    assert sequence_similarity([], []) == 1.0
    assert sequence_similarity(["x"], []) == 0.0
