"""Synthetic textbooks through the teacher, deduplicated and decontaminated, and the diversity measures.

    with open_teacher(cfg.teacher, cache=root / "teacher.sqlite", scripted=scripted_answer) as teacher:
        records = generate(teacher, prompts, max_tokens=160, temperature=0.8)    # cached: a rerun sends nothing
    kept, report = clean(records, eval_texts, threshold=0.7)                       # MinHash dedup, n-gram decon
    diversity([r["text"] for r in kept])                                           # distinct n-grams, dup rate

The teacher is `slm.teach`'s: the local real model (slm serve on SmolLM2-135M-Instruct, started and stopped
here), any OpenAI-compatible endpoint, or the scripted one (slm.recipes.phi.scripted: no model, for the smoke run and tests). Every
answer lands in the teacher's on-disk cache keyed by the request, so the seeds of a recipe, and a rerun after
a kill, reuse the generated text instead of asking again.
"""
from __future__ import annotations

import time


def lesson_request(prompt, max_tokens: int, temperature: float, index: int):
    from slm.teach import Request

    return Request(messages=prompt.messages(), max_tokens=max_tokens, temperature=temperature, top_p=0.95,
                   seed=index)


def generate(teacher, prompts, max_tokens: int, temperature: float, progress: bool = False) -> tuple[list, dict]:
    """(records, cost): one record per prompt {topic, audience, style, text, finish}, in order; cost counts
    the teacher tokens and seconds of the answers that were not cached."""
    from tqdm import tqdm

    requests = [lesson_request(p, max_tokens, temperature, i) for i, p in enumerate(prompts)]
    start = time.perf_counter()
    records = []
    bar = tqdm(total=len(requests), desc="teacher", unit="lesson", disable=not progress, dynamic_ncols=True)
    for prompt, answer in zip(prompts, teacher.map(teacher.ask, requests)):
        records.append({"topic": prompt.topic, "audience": prompt.audience, "style": prompt.style,
                        "text": answer.text.strip(), "finish": answer.finish_reasons[0], "cached": answer.cached})
        bar.update(1)
        bar.set_postfix(tok_s=f"{teacher.stats.completion_tokens / max(teacher.stats.elapsed, 1e-9):.1f}")
    bar.close()
    stats = teacher.stats
    return records, {"requests": len(requests), "cached": sum(r["cached"] for r in records),
                     "prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.completion_tokens,
                     "seconds": time.perf_counter() - start}


def clean(records: list[dict], eval_texts: list[str], threshold: float = 0.7, ngram: int = 8,
          min_words: int = 20) -> tuple[list[dict], dict]:
    """(kept, counts): records with at least `min_words` words, without MinHash near-duplicates of an earlier
    record, and sharing no `ngram`-gram with the evaluation texts."""
    from slm.teach.filters import NgramIndex, near_duplicates, normalized_words

    long_enough = [r for r in records if len(normalized_words(r["text"])) >= min_words]
    dup = near_duplicates([r["text"] for r in long_enough], threshold=threshold)
    unique = [r for r, d in zip(long_enough, dup) if d is None]
    kept, contaminated = NgramIndex(eval_texts, n=ngram).filter(unique, key=lambda r: r["text"])
    return kept, {"generated": len(records), "too_short": len(records) - len(long_enough),
                  "near_duplicates": len(long_enough) - len(unique), "contaminated": len(contaminated),
                  "kept": len(kept)}


def diversity(texts: list[str], orders: tuple[int, ...] = (2, 3), threshold: float = 0.5) -> dict:
    """distinct-n (unique n-grams / all n-grams, over all texts together) for each n, and the near-duplicate
    rate (share of texts that MinHash finds within `threshold` Jaccard of an earlier one)."""
    from slm.teach.filters import near_duplicates, normalized_words

    out = {}
    for n in orders:
        grams = [tuple(w[i:i + n]) for w in map(normalized_words, texts) for i in range(len(w) - n + 1)]
        out[f"distinct_{n}"] = len(set(grams)) / len(grams) if grams else 0.0
    dup = near_duplicates(texts, threshold=threshold) if texts else []
    out["near_duplicate_rate"] = sum(d is not None for d in dup) / len(dup) if dup else 0.0
    out["texts"] = len(texts)
    return out
