"""The recipe's evaluations, all through `slm eval`'s harness: textbook-style multiple-choice questions on held-out
topics, perplexity on held-out raw text, and the smoke tasks of recipes/eval-smoke.yaml.

    questions, report = textbook_questions(held_out_topics, training_texts, n=120)
    scores = evaluate_all(model, tokenizer, root, smoke_tasks="recipes/eval-smoke.yaml")

A question names a held-out topic (a module, function or class whose module gave no raw training text and no
topic seed) and offers four one-line descriptions: its own docstring's first line and three of other held-out
topics. Checked before use: four distinct choices; the gold description does not spell the topic's own name
(that would be string matching, not knowledge); and no choice shares an 8-gram with the training texts (raw
and synthetic), so a model cannot have read the answer next to the name.
"""
from __future__ import annotations

import random
from pathlib import Path

SMOKE_TASKS = ["text-bpb", "trivia-mc", "arith-gen", "sentiment"]  # the code task's sandbox is left out


def _norm(text: str) -> str:
    from slm.teach.filters import normalized_words

    return " ".join(normalized_words(text))


def textbook_questions(held_out, training_texts: list[str], n: int, seed: str = "slm-phi-mc",
                       ngram: int = 8) -> tuple[list[dict], dict]:
    """(questions, counts of what each check removed): up to n questions {question, choices, label, topic}."""
    from slm.teach.filters import NgramIndex

    topics = sorted({t.name: t for t in held_out if t.description}.values(), key=lambda t: t.name)
    counts = {"candidates": len(topics), "too_few_choices": 0, "names_itself": 0, "contaminated": 0}
    training = NgramIndex(training_texts, n=ngram)
    questions = []
    for topic in topics:
        leaf = topic.name.rsplit(".", 1)[-1].lower()
        if leaf in _norm(topic.description).split():
            counts["names_itself"] += 1
            continue
        rng = random.Random(f"{seed}\x1f{topic.name}")
        others = [t.description for t in topics if _norm(t.description) != _norm(topic.description)]
        others = list(dict.fromkeys(others))
        if len(others) < 3:
            counts["too_few_choices"] += 1
            continue
        choices = rng.sample(others, 3)
        label = rng.randrange(4)
        choices.insert(label, topic.description)
        if len({_norm(c) for c in choices}) < 4:
            counts["too_few_choices"] += 1
            continue
        if any(training.contaminated(c) for c in choices):
            counts["contaminated"] += 1
            continue
        questions.append({"question": f"In Python, what is {topic.name}?", "choices": choices, "label": label,
                          "topic": topic.name})
    rng = random.Random(seed)
    rng.shuffle(questions)
    counts["kept"] = min(n, len(questions))
    return questions[:n], counts


def smoke_tasks_path(name: str) -> Path:
    """The smoke task file: as given, or relative to the repository the package runs from."""
    path = Path(name)
    if path.is_file() or path.is_absolute():
        return path
    return Path(__file__).resolve().parents[4] / name


def recipe_tasks(root: Path, smoke_tasks: str | None, ppl_limit: int):
    from slm.eval.tasks import TaskSpec, load_tasks

    tasks = [
        TaskSpec(name="textbook-mc", kind="multiple_choice", data=str(root / "textbook-mc.jsonl"),
                 doc_to_text="Question: {{question}}\nAnswer:", doc_to_target="{{label}}", choices="choices"),
        TaskSpec(name="heldout-raw", kind="perplexity", data=str(root / "heldout-raw.jsonl"), limit=ppl_limit),
    ]
    if smoke_tasks:
        tasks += load_tasks(smoke_tasks_path(smoke_tasks), names=SMOKE_TASKS)
    for task in tasks:
        task.validate()
    return tasks


def evaluate_all(model, tokenizer, tasks, batch_size: int = 16) -> dict:
    """{metric: value}: textbook-MC acc and acc_norm, held-out bits per byte, and each smoke task's headline."""
    from slm.eval.harness import evaluate

    res = evaluate(model, tokenizer, tasks, batch_size=batch_size)
    out = {"mc_acc": res["textbook-mc"]["acc"], "mc_acc_norm": res["textbook-mc"]["acc_norm"],
           "heldout_bpb": res["heldout-raw"]["bits_per_byte"]}
    headline = {"multiple_choice": "acc", "classification": "acc", "generate": "exact_match",
                "perplexity": "bits_per_byte"}
    for name in SMOKE_TASKS:
        if name in res:
            out[f"smoke/{name}"] = res[name][headline[res[name]["kind"]]]
    return out
