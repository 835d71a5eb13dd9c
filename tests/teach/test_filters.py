"""The shared filters: n-gram decontamination (TinyGSM's, moved here) and MinHash near-duplicate removal."""
from __future__ import annotations

import pytest

from slm.errors import ConfigError
from slm.teach.filters import NgramIndex, near_duplicates, near_duplicates_removed, ngrams, shingles

STORY = ("the quick brown fox jumps over the lazy dog and then runs far away into the dark forest to hide from "
         "the farmer who keeps chickens")


def test_ngrams_ignore_case_punctuation_and_layout():
    assert ngrams("A, b\n C!", 3) == {("a", "b", "c")}
    assert ngrams("a b c", 13) == set()
    assert ngrams("costs 3.50 now", 3) == {("costs", "3.50", "now")}


def test_ngram_index_finds_a_shared_13_gram_and_only_that():
    eval_q = "Tom has 3 apples and buys 5 more at the market on Sunday, how many apples does he have now?"
    index = NgramIndex([eval_q], n=13)
    copied = "Rewritten: TOM HAS 3 apples and buys 5 more at the market on Sunday; how many does he have?"
    assert index.contaminated(copied)
    assert not index.contaminated("Tom has 3 apples and buys 5 more at the shop on Monday. How many?")
    kept, dropped = index.filter([{"q": copied}, {"q": "something else"}], key=lambda r: r["q"])
    assert kept == [{"q": "something else"}] and dropped == [{"q": copied}]
    with pytest.raises(ConfigError):
        NgramIndex([], n=0)


def test_tinygsm_decontaminates_with_the_shared_index():
    from slm.recipes.tinygsm import filters

    assert issubclass(filters.Decontaminator, NgramIndex) and filters.ngrams is ngrams


def test_near_duplicates_keep_the_first_and_the_order():
    one_word_changed = STORY.replace("chickens", "geese")  # the last shingle differs: Jaccard 21/23 = 0.91
    texts = [STORY, "an unrelated sentence about prime numbers and their many curious properties in math",
             one_word_changed, STORY.upper() + "!!", "", "  ", STORY[:60]]
    assert near_duplicates(texts, threshold=0.8) == [None, None, 0, 0, None, 4, None]
    # Raising the threshold above their similarity keeps the edited copy.
    assert near_duplicates(texts, threshold=0.95)[2] is None
    assert near_duplicates_removed(texts, threshold=0.8) == [texts[0], texts[1], "", STORY[:60]]


def test_shingles_of_short_texts():
    assert shingles("a b", 5) == {"a b"} and shingles("", 5) == set()


def test_a_bad_threshold_is_one_line():
    with pytest.raises(ConfigError, match="threshold"):
        near_duplicates(["a"], threshold=0)
