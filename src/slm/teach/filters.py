"""Shared data filters for generated text: n-gram decontamination and MinHash near-duplicate removal.

    decon = NgramIndex(eval_questions, n=13)            # the evaluation set's n-grams of normalised words
    kept = [r for r in records if not decon.contaminated(r["question"])]
    kept = near_duplicates_removed(kept, key=lambda r: r["text"], threshold=0.8)

Contract: both filters are pure functions of their inputs (MinHash is seeded), keep the first of each group
of near-duplicates and the order of the rest, and never look at anything but the text `key` returns.
Words are normalised the same way for both: lower case, runs of letters and digits, punctuation and layout
ignored. TinyGSM's 13-gram decontamination (slm.recipes.tinygsm.filters) is `NgramIndex` with n=13.
"""
from __future__ import annotations

import re
from typing import Callable, Iterable, Sequence, TypeVar

T = TypeVar("T")

_WORD = re.compile(r"[a-z0-9]+(?:[.,][0-9]+)*")


def normalized_words(text: str) -> list[str]:
    """Lower-case words and numbers; punctuation and layout do not count."""
    return _WORD.findall(text.lower())


def ngrams(text: str, n: int = 13) -> set[tuple[str, ...]]:
    """The set of n-grams of `text`'s normalised words (empty when it has fewer than n words)."""
    words = normalized_words(text)
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


class NgramIndex:
    """Remembers the n-grams of reference texts (an evaluation set); `contaminated(t)` says whether t shares one."""

    def __init__(self, texts: Iterable[str], n: int = 13):
        if n < 1:
            from slm.errors import ConfigError

            raise ConfigError(f"the n-gram length must be at least 1, got {n}")
        self.n = n
        self.index: set[tuple[str, ...]] = set()
        for t in texts:
            self.index |= ngrams(t, n)

    def contaminated(self, text: str) -> bool:
        return not self.index.isdisjoint(ngrams(text, self.n))

    def filter(self, items: Iterable[T], key: Callable[[T], str] = str) -> tuple[list[T], list[T]]:
        """(kept, dropped): the items whose text shares no n-gram with the index, and the others."""
        kept, dropped = [], []
        for item in items:
            (dropped if self.contaminated(key(item)) else kept).append(item)
        return kept, dropped


def shingles(text: str, n: int = 5) -> set[str]:
    """Word n-grams as strings (MinHash's features); a text shorter than n words is one shingle."""
    words = normalized_words(text)
    if len(words) < n:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i:i + n]) for i in range(len(words) - n + 1)}


def near_duplicates(texts: Sequence[str], threshold: float = 0.8, num_perm: int = 128, shingle: int = 5,
                    seed: int = 1) -> list[int | None]:
    """For each text, the index of the earlier text it nearly duplicates (estimated Jaccard similarity of
    its word `shingle`-grams >= threshold, found by datasketch's MinHash LSH), or None for a first of its kind.
    Empty texts are duplicates of the first empty text."""
    from datasketch import MinHash, MinHashLSH

    if not 0 < threshold <= 1:
        from slm.errors import ConfigError

        raise ConfigError(f"the similarity threshold must be in (0, 1], got {threshold}")
    # Weighted against false negatives: a candidate LSH proposes wrongly is caught by the check below.
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=(0.1, 0.9))
    kept: dict[int, "MinHash"] = {}  # the first text of each group and its signature
    out: list[int | None] = []
    first_empty = None
    for i, text in enumerate(texts):
        feats = shingles(text, shingle)
        if not feats:
            out.append(first_empty)
            if first_empty is None:
                first_empty = i
            continue
        m = MinHash(num_perm=num_perm, seed=seed)
        m.update_batch([f.encode("utf-8") for f in feats])
        # LSH proposes candidates; the estimated similarity decides (LSH alone has false positives).
        hits = [j for j in lsh.query(m) if m.jaccard(kept[j]) >= threshold]
        if hits:
            out.append(min(hits))
        else:
            out.append(None)
            lsh.insert(i, m)
            kept[i] = m
    return out


def near_duplicates_removed(items: Sequence[T], key: Callable[[T], str] = str, threshold: float = 0.8,
                            **options) -> list[T]:
    """The items without near-duplicates of an earlier item (see `near_duplicates`), in their order."""
    dup = near_duplicates([key(x) for x in items], threshold, **options)
    return [x for x, d in zip(items, dup) if d is None]
