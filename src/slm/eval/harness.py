"""Run evaluation tasks on a live model: the engine behind `slm eval` and the trainer's in-training evaluators.

    results = evaluate(model, tokenizer, load_tasks("tasks.yaml"), batch_size=8)
    print(markdown_table(results))
    trainer = Trainer(..., evaluators=[make_evaluator(load_tasks("tasks.yaml"), tokenizer, limit=50)])

Every task kind reduces to two primitives: log-likelihoods from `Scorer` (perplexity, multiple choice,
classification) and completions from the inference engine (generate, code). Code completions run only in the
sandbox. Results are plain dicts: {task: {"kind", "n", metric: value, ...}}.
"""
from __future__ import annotations

import math
import time
from typing import Callable, Sequence

from slm.errors import SlmError
from slm.eval import metrics as M
from slm.eval.scoring import Scorer
from slm.eval.tasks import TaskSpec, render


def evaluate(model, tokenizer, tasks: Sequence[TaskSpec], batch_size: int = 8, seed: int = 0,
             num_fewshot: int | None = None, show_progress: bool = False,
             log: Callable[[str], None] | None = None) -> dict[str, dict]:
    """Run each task in-process; the model is put in eval mode and given back in the mode it came in."""
    was_training = model.training
    model.eval()
    try:
        results = {}
        for task in tasks:
            start = time.monotonic()
            run = _RUNNERS[task.kind]
            results[task.name] = {"kind": task.kind, **run(model, tokenizer, task, batch_size, seed, num_fewshot,
                                                            show_progress)}
            results[task.name]["seconds"] = round(time.monotonic() - start, 3)
            if log:
                log(f"{task.name}: " + ", ".join(f"{k} {v:.4g}" for k, v in _numbers(results[task.name]).items()))
        return results
    finally:
        model.train(was_training)


def make_evaluator(tasks: Sequence[TaskSpec], tokenizer, batch_size: int = 8, seed: int = 0,
                   num_fewshot: int | None = None, prefix: str = "eval/") -> Callable:
    """A trainer evaluator: (model) -> {"eval/<task>/<metric>": value} on the live model, no checkpoint needed."""
    tasks = list(tasks)

    def evaluator(model) -> dict[str, float]:
        results = evaluate(model, tokenizer, tasks, batch_size=batch_size, seed=seed, num_fewshot=num_fewshot)
        return {f"{prefix}{name}/{metric}": value for name, res in results.items()
                for metric, value in _numbers(res).items() if metric != "seconds"}

    return evaluator


def load_model(path, dtype=None, device="cpu"):
    """(model, tokenizer) from an HF directory, or from a composition YAML (an EFT model acts as one model)."""
    import torch

    from slm.compose.config import is_composition, load_composition

    dtype = dtype or torch.float32
    if is_composition(path):
        return load_composition(path, dtype=dtype, device=device)
    import slm

    return slm.load(path, dtype=dtype, device=device)


# ---- the task kinds ----

def _perplexity(model, tokenizer, task, batch_size, seed, num_fewshot, progress):
    docs = task.documents()
    texts = [task.text(d) for d in docs]
    scorer = Scorer(model, tokenizer, batch_size, show_progress=progress)
    logprobs, tokens = scorer.loglikelihood_rolling(texts, return_counts=True)
    out = M.perplexity_metrics(sum(logprobs), sum(tokens), sum(M.count_words(t) for t in texts),
                               sum(len(t.encode("utf-8")) for t in texts))
    return {"n": len(docs), **out}


def _choices(model, tokenizer, task, batch_size, seed, num_fewshot, progress):
    """multiple_choice and classification: score every option's log-likelihood, pick the best."""
    docs = task.documents()
    pairs, spans, golds, options_per_doc = [], [], [], []
    for i, doc in enumerate(docs):
        context = task.prompt(doc, i, seed, num_fewshot)
        if task.kind == "classification":
            options = [task.verbalize(label) for label in task.labels]
            gold = task.target(doc).strip()
            if gold not in task.labels:
                raise SlmError(f"task {task.name!r}: label {gold!r} is not one of {task.labels}")
        else:
            options = task.choice_list(doc)
            gold = task.gold_index(doc, options)
        spans.append((len(pairs), len(options)))
        pairs += [(context, task.target_delimiter + option) for option in options]
        golds.append(gold)
        options_per_doc.append(options)
    scored = Scorer(model, tokenizer, batch_size, show_progress=progress).loglikelihood(pairs)
    picks, picks_norm = [], []
    for (start, n), options in zip(spans, options_per_doc):
        lls = [scored[start + j][0] for j in range(n)]
        picks.append(M.choose(lls))
        # lm-eval's acc_norm: log-likelihood divided by the option's length in characters.
        picks_norm.append(M.choose([ll / max(1, len(o)) for ll, o in zip(lls, options)]))
    if task.kind == "classification":
        predicted = [task.labels[p] for p in picks]
        return {"n": len(docs), "acc": M.accuracy(predicted, golds), "f1": M.f1_macro(predicted, golds, task.labels)}
    return {"n": len(docs), "acc": M.accuracy(picks, golds), "acc_norm": M.accuracy(picks_norm, golds)}


def _generate(model, tokenizer, task, batch_size, seed, num_fewshot, progress):
    docs = task.documents()
    prompts = [task.prompt(doc, i, seed, num_fewshot) for i, doc in enumerate(docs)]
    completions = generate_texts(model, tokenizer, prompts, task, batch_size, seed)
    answers = [task.extract_answer(c[0]) for c in completions]
    references = [task.reference(doc) for doc in docs]
    fold = str.lower if task.ignore_case else (lambda s: s)
    hits = [a is not None and r is not None and fold(a) == fold(r) for a, r in zip(answers, references)]
    rouge = [M.rouge_l(c[0], r) for c, r in zip(completions, references) if r is not None]
    return {"n": len(docs), "exact_match": sum(hits) / len(hits) if hits else float("nan"),
            "extracted": sum(a is not None for a in answers) / len(answers) if answers else float("nan"),
            "rougeL": sum(rouge) / len(rouge) if rouge else float("nan")}


def _code(model, tokenizer, task, batch_size, seed, num_fewshot, progress):
    from slm.eval.sandbox import run_many

    docs = task.documents()
    prompts = [task.prompt(doc, i, seed, num_fewshot) for i, doc in enumerate(docs)]
    completions = generate_texts(model, tokenizer, prompts, task, batch_size, seed, n=task.samples)
    programs = [render(task.program, {**doc, "completion": c, "test": task.target(doc)}, task.name)
                for doc, samples in zip(docs, completions) for c in samples]
    runs = run_many(programs, workers=task.workers, timeout=task.timeout, memory_mb=task.memory_mb)
    out: dict = {"n": len(docs), "samples": task.samples}
    correct = [sum(r.ok for r in runs[i * task.samples:(i + 1) * task.samples]) for i in range(len(docs))]
    for k in task.pass_k:
        out[f"pass@{k}"] = sum(M.pass_at_k(task.samples, c, k) for c in correct) / len(docs) if docs else math.nan
    for status in sorted({r.status for r in runs}):
        out[f"status/{status}"] = sum(r.status == status for r in runs) / len(runs)
    return out


def _sequence_classification(model, tokenizer, task, batch_size, seed, num_fewshot, progress):
    """An encoder's classifier head on each document (no prompt, no few-shot): acc, macro-F1, MCC."""
    from slm.finetune.classify import Example, metrics, predict

    docs = task.documents()
    examples = [Example(task.text(d), task.target(d).strip(), task.pair(d), f"task {task.name!r} document {i}")
                for i, d in enumerate(docs)]
    if task.labels:
        unknown = sorted({e.label for e in examples} - set(task.labels))
        if unknown:
            raise SlmError(f"task {task.name!r}: labels {unknown} are not in the task's labels {task.labels}")
    out = predict(model, tokenizer, examples, batch_size)
    return {"n": len(docs), **metrics(out["gold"], out["pred"])}


_RUNNERS = {"perplexity": _perplexity, "multiple_choice": _choices, "classification": _choices,
            "generate": _generate, "code": _code, "sequence_classification": _sequence_classification}


def generate_texts(model, tokenizer, prompts: list[str], task: TaskSpec, batch_size: int, seed: int,
                   n: int = 1) -> list[list[str]]:
    """`n` completions per prompt from the inference engine; prompts are left-truncated to leave room."""
    from slm.infer import Engine, SamplingParams

    stop = task.stop if task.stop is not None else [task.fewshot_delimiter]
    from slm.models.registry import family_of

    family = family_of(model)
    max_len = getattr(getattr(model, "config", None), "max_seq_len", None)
    # A decoder's prompt and output share its context; an encoder-decoder's prompt has the encoder to itself.
    room = (max_len - (0 if family is not None and family.seq2seq else task.max_tokens)) if max_len else None
    if room is not None and room < 1:
        raise SlmError(f"task {task.name!r}: max_tokens {task.max_tokens} leaves no room in a {max_len}-token context")
    encoded = []
    for prompt in prompts:
        ids = tokenizer.encode(prompt)
        encoded.append(ids[-room:] if room else ids)
    engine = Engine(model, tokenizer, max_batch_size=batch_size)
    # One seed per (prompt, sample), so a completion does not depend on which batch it was drawn in.
    params = [SamplingParams(max_tokens=task.max_tokens, temperature=task.temperature, stop=[s for s in stop if s],
                             seed=seed * 1_000_003 + i * n + j)
              for i in range(len(prompts)) for j in range(n)]
    flat = engine.generate([ids for ids in encoded for _ in range(n)], params)
    return [[c.text for c in flat[i * n:(i + 1) * n]] for i in range(len(prompts))]


# ---- reports ----

def _numbers(result: dict) -> dict[str, float]:
    return {k: float(v) for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
            and k != "n"}


def markdown_table(results: dict[str, dict]) -> str:
    lines = ["| task | kind | metric | value | n |", "|---|---|---|---:|---:|"]
    for name, res in results.items():
        for metric, value in _numbers(res).items():
            if metric in ("seconds", "samples"):
                continue
            lines.append(f"| {name} | {res['kind']} | {metric} | {value:.4f} | {res.get('n', '')} |")
    return "\n".join(lines)
