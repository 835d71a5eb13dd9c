"""phi-1's quality filter: a judge labels a sample for educational value; a random forest on frozen embeddings
labels the rest; the top fraction is kept.

    scores = judge_scores(teacher, sample)                  # log P(Yes) - log P(No) from the teacher
    labels = binary_labels(scores)                          # the top half of the sample is "educational"
    X = embed(texts, "smollm2-135m-instruct")               # mean-pooled final hidden states, frozen
    forest, auc = fit_forest(X[sample_idx], labels, seed=0) # held-out AUC on a quarter of the labelled sample
    kept = top_fraction(forest.predict_proba(X)[:, 1], 0.5)

The judge reads the teacher's top log-probabilities for the first answer token (Yes/No, any case), so a small
teacher gives a graded score rather than a coin of its sampled word; a teacher that sends no log-probabilities
is scored by the word it answered. Labels are relative (above the sample's median): a 135M judge's absolute
yes-rate says little, its ranking is what the filter learns.
"""
from __future__ import annotations

import math

import numpy as np

from slm.errors import ConfigError

JUDGE_PROMPT = ("Does the following text have high educational value for a student whose goal is to learn "
                "basic coding concepts? Answer Yes or No.\n\nText:\n{text}")
JUDGE_CHARS = 1000  # the part of a text the judge reads


def judge_request(text: str):
    from slm.teach import Request

    return Request(messages=[{"role": "user", "content": JUDGE_PROMPT.format(text=text[:JUDGE_CHARS])}],
                   max_tokens=1, temperature=0.0, seed=0, extra={"logprobs": True, "top_logprobs": 10})


def _logsumexp(values: list[float]) -> float:
    if not values:
        return -math.inf
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def judge_score(answer) -> float:
    """log P(yes) - log P(no) over the first token's top log-probabilities (clipped to +-20 when one is absent);
    without log-probabilities, +1 for an answer starting with yes, -1 otherwise."""
    content = ((answer.logprobs[0] or {}).get("content") or []) if answer.logprobs else []
    if content:
        tops = content[0].get("top_logprobs") or [content[0]]
        yes = [t["logprob"] for t in tops if t["token"].strip().lower() == "yes"]
        no = [t["logprob"] for t in tops if t["token"].strip().lower() == "no"]
        return max(-20.0, min(20.0, _logsumexp(yes) - _logsumexp(no))) if (yes or no) else 0.0
    return 1.0 if answer.text.strip().lower().startswith("yes") else -1.0


def judge_scores(teacher, texts: list[str]) -> list[float]:
    return [judge_score(a) for a in teacher.map(teacher.ask, [judge_request(t) for t in texts])]


def binary_labels(scores: list[float]) -> np.ndarray:
    """1 for the scores above the median, 0 for the others."""
    scores = np.asarray(scores, dtype=float)
    return (scores > np.median(scores)).astype(int)


def embed(texts: list[str], model, tokenizer, max_tokens: int = 128, batch_size: int = 8,
          progress: bool = False) -> np.ndarray:
    """[len(texts), dim] float32: each text's first `max_tokens` tokens through the frozen model, the final
    hidden states averaged over the real tokens (padding masked out)."""
    import torch
    from tqdm import tqdm

    model.eval()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    rows = []
    with torch.no_grad():
        for start in tqdm(range(0, len(texts), batch_size), desc="embedding", disable=not progress):
            ids = [tokenizer.encode(t, add_special_tokens=False)[:max_tokens] or [pad]
                   for t in texts[start:start + batch_size]]
            width = max(map(len, ids))
            batch = torch.full((len(ids), width), pad, dtype=torch.long)
            mask = torch.zeros((len(ids), width), dtype=torch.long)
            for i, row in enumerate(ids):
                batch[i, :len(row)] = torch.tensor(row)
                mask[i, :len(row)] = 1
            hidden = model.hidden_states(batch, attention_mask=mask).float()
            weights = mask.unsqueeze(-1).float()
            rows.append(((hidden * weights).sum(1) / weights.sum(1)).numpy())
    return np.concatenate(rows).astype(np.float32) if rows else np.zeros((0, 0), np.float32)


def fit_forest(features: np.ndarray, labels: np.ndarray, seed: int = 0, trees: int = 200,
               test_fraction: float = 0.25):
    """(forest refit on every labelled row, AUC of a forest fit on the rest and scored on a held-out
    stratified `test_fraction` of the rows). `forest.held_out_` keeps (labels, scores) of those rows."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    labels = np.asarray(labels)
    if len(set(labels.tolist())) < 2 or min(np.bincount(labels)) < 2:
        raise ConfigError("the judged sample needs at least two texts of each label; label more (filter.label)")
    x_fit, x_test, y_fit, y_test = train_test_split(features, labels, test_size=test_fraction, random_state=seed,
                                                    stratify=labels)
    probe = RandomForestClassifier(n_estimators=trees, random_state=seed, n_jobs=1).fit(x_fit, y_fit)
    test_scores = probe.predict_proba(x_test)[:, 1]
    auc = float(roc_auc_score(y_test, test_scores))
    forest = RandomForestClassifier(n_estimators=trees, random_state=seed, n_jobs=1).fit(features, labels)
    forest.held_out_ = (y_test, test_scores)  # for enrichment measured on rows the probe did not see
    return forest, auc


def top_fraction(scores, fraction: float) -> list[int]:
    """Indices of the highest `fraction` of the scores (at least one), in their original order."""
    if not 0 < fraction <= 1:
        raise ConfigError(f"filter.keep must be in (0, 1], got {fraction}")
    scores = np.asarray(scores, dtype=float)
    k = max(1, int(round(fraction * len(scores))))
    return sorted(np.argsort(-scores, kind="stable")[:k].tolist())
