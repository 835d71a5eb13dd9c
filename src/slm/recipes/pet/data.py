"""The recipe's tasks: where the examples, the pretraining corpus and the default patterns come from.

    synthetic-sentiment  made-up reviews ("the soup was tasty and the waiter was rude"), label positive |
                         negative (the review's sentiment; each clause agrees with it 3 times in 4, so a few
                         reviews read the other way). The MLM's corpus is OTHER reviews of the same generator,
                         most followed by a verdict in one of three forms ("It was good .", "Overall : great .",
                         "I liked it ."): the spec's observable-effect setting, where pretraining ties sentiment
                         words to the words the patterns ask for, and only the patterns can use that tie.
    docstring-package    slm's embedded stdlib task (slm.finetune.classify_data): a docstring -> its package;
                         the MLM pretrains on stdlib source. Default pattern "{text} ( module : {mask} )", the
                         package names as (often multi-token) verbalizers.
    docstring-signature  the embedded pair task (match | mismatch); default pattern "{text} ? {mask} , {text_pair}".
    jsonl                the user's files: data.train / data.test (text, optional text_pair, label) and optionally
                         data.unlabeled (text, optional text_pair); patterns from a YAML file (required).
"""
from __future__ import annotations

import random

SENTIMENT_WORDS = {
    "positive": ["tasty", "lovely", "superb", "friendly", "fresh", "charming", "delightful", "tender", "brilliant",
                 "cozy", "splendid", "pleasant", "gorgeous", "crisp", "warm", "perfect"],
    "negative": ["rude", "bland", "stale", "greasy", "dirty", "soggy", "noisy", "awful", "cold", "dreadful",
                 "burnt", "slow", "sloppy", "rotten", "gloomy", "shabby"],
}
ASPECTS = ["soup", "waiter", "room", "bread", "staff", "pasta", "music", "table", "coffee", "menu", "chef", "bill",
           "salad", "view", "dessert", "service"]
ADVERBS = ["", "", "very ", "quite ", "really ", "rather "]
VERDICTS = {  # the three verdict forms the corpus uses; the default patterns ask for them
    "positive": ["It was good .", "Overall : great .", "I liked it ."],
    "negative": ["It was bad .", "Overall : terrible .", "I hated it ."],
}
SENTIMENT_PVPS = [
    {"name": "it-was", "pattern": "{text} . It was {mask} .",
     "verbalizer": {"positive": ["good"], "negative": ["bad"]}},
    {"name": "overall", "pattern": "{text} . Overall : {mask} .",
     "verbalizer": {"positive": ["great"], "negative": ["terrible"]}},
    {"name": "i-liked", "pattern": "{text} . I {mask} it .",
     "verbalizer": {"positive": ["liked"], "negative": ["hated"]}},
]
BUILTIN_PVPS = {
    "synthetic-sentiment": SENTIMENT_PVPS,
    "docstring-package": [{"name": "module", "pattern": "{text} ( module : {mask} )",
                           "verbalizer": {p: [p] for p in ("asyncio", "email", "multiprocessing", "xml",
                                                           "importlib", "http")}}],
    "docstring-signature": [{"name": "question", "pattern": "{text} ? {mask} , {text_pair}",
                             "verbalizer": {"match": ["Yes"], "mismatch": ["No"]}}],
}
TASKS = ("synthetic-sentiment", "docstring-package", "docstring-signature", "jsonl")


def review(rng: random.Random, label: str, agreement: float = 0.75) -> str:
    clauses = []
    for _ in range(rng.choice((2, 3))):
        polarity = label if rng.random() < agreement else ("negative" if label == "positive" else "positive")
        clauses.append(f"the {rng.choice(ASPECTS)} was {rng.choice(ADVERBS)}{rng.choice(SENTIMENT_WORDS[polarity])}")
    return rng.choice((" and ", " , ", " but ")).join(clauses) if len(clauses) == 2 else \
        f"{clauses[0]} , {clauses[1]} and {clauses[2]}"


def sentiment_examples(split: str, n: int, seed: int = 0, agreement: float = 0.75) -> list[dict]:
    """n reviews of one split (train / test / corpus draw from different seeds), labels balanced by chance."""
    rng = random.Random(f"pet-sentiment:{split}:{seed}")
    out = []
    for _ in range(n):
        label = rng.choice(("positive", "negative"))
        out.append({"text": review(rng, label, agreement), "label": label})
    return out


def sentiment_corpus(n: int, verdict_fraction: float = 0.8, seed: int = 0, agreement: float = 0.75) -> list[str]:
    """Pretraining documents: reviews, most followed by a verdict of a random form that matches their sentiment."""
    rng = random.Random(f"pet-sentiment-corpus:{seed}")
    docs = []
    for ex in sentiment_examples("corpus", n, seed, agreement):
        text = ex["text"] + " ."
        if rng.random() < verdict_fraction:
            text += " " + rng.choice(VERDICTS[ex["label"]])
        docs.append(text)
    return docs
