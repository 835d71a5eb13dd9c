"""SuperICL (Xu et al. 2023): a fine-tuned small classifier's prediction and confidence inside a large model's
in-context prompt; the large model may follow the plug-in or override it (and explain why).

    sicl = SuperICL(teacher, TASKS["nli"], labels=["entailment", "neutral", "contradiction"])
    out = sicl.classify(context, test, test_prediction)   # context: [(Item, Prediction)]; out.label, .overrode

The prompt is the paper's (JetRunner/SuperICL, templates.py): one block per in-context example,

    Premise: {a}
    Hypothesis: {b}
    RoBERTa-Large Prediction: {plug-in label} (Confidence: {round(confidence, 2)})
    Label: {gold}

separated by a blank line, and the test block the same up to `Label: `. Field names per task kind are in
TASKS. The label is read by exact match of the completion's first line (the paper's scoring), or, with
`constrained`, the server is asked for one of the labels (slm serve's guided_regex). Only when the label
differs from the plug-in's is a second call made for `Explanation for overriding the prediction:` (at most 100
tokens, top_p 0.95). When the prompt is over `max_prompt_tokens`, in-context examples are dropped from the end
until it fits; the test block is always kept. `Ablation` gives the paper's three ablations, and `plugin=False`
the plain in-context-learning baseline (no prediction lines at all).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

# Field names per task kind, as the paper's templates write them.
TASKS = {
    "single": ("Sentence",),  # SST-2, CoLA
    "nli": ("Premise", "Hypothesis"),  # MNLI
    "question": ("Question", "Sentence"),  # QNLI
    "pair": ("Sentence 1", "Sentence 2"),  # MRPC, RTE
    "questions": ("Question 1", "Question 2"),  # QQP
}
EXPLAIN = "\nExplanation for overriding the prediction:"


@dataclass(frozen=True)
class Item:
    texts: tuple[str, ...]
    label: str | None = None  # the gold label (in-context examples; a test item's is only for scoring)


@dataclass(frozen=True)
class Prediction:
    label: str
    confidence: float


@dataclass(frozen=True)
class Ablation:
    test_prediction: bool = True  # False: the test block has no plug-in line
    confidence: bool = True  # False: prediction lines without "(Confidence: ...)"
    context: bool = True  # False: no in-context examples, the test block alone


@dataclass
class Outcome:
    label: str | None  # None: the completion named no label
    completion: str
    prompt: str
    plugin: Prediction | None
    n_context: int  # in-context examples in the prompt after shrinking
    explanation: str | None = None

    @property
    def overrode(self) -> bool:
        return self.plugin is not None and self.label is not None and self.label != self.plugin.label


def block(fields: tuple[str, ...], item: Item, prediction: Prediction | None, plugin_name: str,
          confidence: bool = True, gold: bool = True) -> str:
    """One example's block; `gold=False` ends at `Label: ` (the test block)."""
    if len(item.texts) != len(fields):
        raise ValueError(f"this task's items have {len(fields)} text field(s) ({', '.join(fields)}), "
                         f"got {len(item.texts)}")
    lines = [f"{name}: {text}" for name, text in zip(fields, item.texts)]
    if prediction is not None:
        shown = f" (Confidence: {round(prediction.confidence, 2)})" if confidence else ""
        lines.append(f"{plugin_name} Prediction: {prediction.label}{shown}")
    return "\n".join(lines) + "\n" + (f"Label: {item.label}\n\n" if gold else "Label: ")


def build_prompt(fields: tuple[str, ...], context: list[tuple[Item, Prediction | None]], test: Item,
                 test_prediction: Prediction | None, plugin_name: str = "RoBERTa-Large",
                 ablation: Ablation = Ablation()) -> str:
    shown = context if ablation.context else []
    return "".join(block(fields, item, pred, plugin_name, ablation.confidence) for item, pred in shown) + \
        block(fields, test, test_prediction if ablation.test_prediction else None, plugin_name,
              ablation.confidence, gold=False)


def parse_label(completion: str, labels: list[str]) -> str | None:
    """The label the completion's first line is, by exact match (case and surrounding space aside)."""
    first = completion.strip().split("\n", 1)[0].strip().rstrip(".").strip()
    return next((label for label in labels if label.lower() == first.lower()), None)


@dataclass
class SuperICL:
    """One task's SuperICL (or plain ICL with plugin=False) through any slm.teach Teacher (a served model)."""
    teacher: object  # slm.teach.Teacher
    fields: tuple[str, ...]
    labels: list[str]
    plugin_name: str = "RoBERTa-Large"
    plugin: bool = True
    ablation: Ablation = field(default_factory=Ablation)
    explain: bool = True
    constrained: bool = False  # ask the server for one of the labels (guided_regex) instead of free text
    max_prompt_tokens: int | None = None
    count_tokens: Callable[[str], int] = lambda text: len(text.split())
    # The paper's label call: text-davinci-003, temperature 1, top_p 0.5, max_tokens 10.
    temperature: float = 1.0
    top_p: float = 0.5
    seed: int | None = 0

    def prompt(self, context: list[tuple[Item, Prediction | None]], test: Item,
               test_prediction: Prediction | None) -> tuple[str, int]:
        """(the prompt, how many in-context examples it kept) after shrinking to max_prompt_tokens."""
        if not self.plugin:
            context, test_prediction = [(item, None) for item, _ in context], None
        n = len(context) if self.ablation.context else 0
        while True:
            text = build_prompt(self.fields, context[:n], test, test_prediction, self.plugin_name,
                                Ablation(self.ablation.test_prediction, self.ablation.confidence, True))
            if self.max_prompt_tokens is None or n == 0 or self.count_tokens(text) <= self.max_prompt_tokens:
                return text, n
            n -= 1

    def classify(self, context: list[tuple[Item, Prediction | None]], test: Item,
                 test_prediction: Prediction | None) -> Outcome:
        from slm.teach import Request

        text, n = self.prompt(context, test, test_prediction)
        extra = {"guided_regex": "(" + "|".join(re.escape(label) for label in self.labels) + ")"} \
            if self.constrained else {}
        answer = self.teacher.ask(Request(prompt=text, max_tokens=10, temperature=self.temperature, top_p=self.top_p,
                                          seed=self.seed, extra=extra))
        shown = test_prediction if self.plugin else None
        out = Outcome(parse_label(answer.text, self.labels), answer.text, text, shown, n)
        if self.explain and out.overrode:
            follow = self.teacher.ask(Request(prompt=text + answer.text.split("\n", 1)[0] + EXPLAIN, max_tokens=100,
                                              temperature=self.temperature, top_p=0.95, seed=self.seed))
            out.explanation = follow.text.strip()
        return out


def confidence_bins(outcomes: list[Outcome], golds: list[str], edges=(0.5, 0.7, 0.9, 1.01)) -> list[dict]:
    """Per plug-in confidence bin: items, override rate, and how often overrides and the plug-in are right."""
    rows, low = [], 0.0
    for high in edges:
        inside = [(o, g) for o, g in zip(outcomes, golds) if o.plugin is not None and low <= o.plugin.confidence < high]
        overrides = [(o, g) for o, g in inside if o.overrode]
        rows.append({"bin": f"[{low:.2f}, {min(high, 1.0):.2f}]", "n": len(inside),
                     "override_rate": len(overrides) / len(inside) if inside else 0.0,
                     "override_accuracy": sum(o.label == g for o, g in overrides) / len(overrides) if overrides else None,
                     "plugin_accuracy": sum(o.plugin.label == g for o, g in inside) / len(inside) if inside else None})
        low = high
    return rows
