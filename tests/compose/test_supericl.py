"""SuperICL: the paper's prompt byte for byte, the explanation call only on disagreement, the ablations, context
shrinking, and the effect with a simulated LLM that follows a confident plug-in."""
import random
import re

import pytest

from slm.compose.supericl import (EXPLAIN, TASKS, Ablation, Item, Prediction, SuperICL, block, build_prompt,
                                  confidence_bins, parse_label)
from slm.teach.scripted import ScriptedTeacher

NLI = ["entailment", "neutral", "contradiction"]


def test_golden_prompts_for_every_task_kind():
    ctx = [(Item(("a cat sleeps", "an animal rests"), "entailment"), Prediction("entailment", 0.9731))]
    test = Item(("it rains", "the street is dry"))
    assert build_prompt(TASKS["nli"], ctx, test, Prediction("contradiction", 0.5)) == (
        "Premise: a cat sleeps\nHypothesis: an animal rests\n"
        "RoBERTa-Large Prediction: entailment (Confidence: 0.97)\nLabel: entailment\n\n"
        "Premise: it rains\nHypothesis: the street is dry\n"
        "RoBERTa-Large Prediction: contradiction (Confidence: 0.5)\nLabel: ")
    expected_fields = {"single": ["Sentence"], "question": ["Question", "Sentence"],
                       "pair": ["Sentence 1", "Sentence 2"], "questions": ["Question 1", "Question 2"]}
    for kind, names in expected_fields.items():
        item = Item(tuple(f"text {i}" for i in range(len(names))), "yes")
        text = block(TASKS[kind], item, Prediction("yes", 0.666), "Plug")
        assert text == "".join(f"{n}: text {i}\n" for i, n in enumerate(names)) + \
            "Plug Prediction: yes (Confidence: 0.67)\nLabel: yes\n\n"
    with pytest.raises(ValueError, match="2 text field"):
        block(TASKS["nli"], Item(("only one",)), None, "Plug")


def test_confidence_is_rounded_to_two_decimals():
    for value, shown in [(0.98765, "0.99"), (0.5, "0.5"), (0.125, "0.12"), (1.0, "1.0")]:
        assert f"(Confidence: {shown})" in block(TASKS["single"], Item(("x",), "a"), Prediction("a", value), "P")


def _scripted(labels_by_prompt):
    """A teacher answering each label call from labels_by_prompt(prompt), and explanations with 'because'."""
    calls = []

    def answer(body):
        calls.append(body)
        if body["prompt"].endswith(EXPLAIN):
            return " because the hypothesis says otherwise"
        return labels_by_prompt(body["prompt"])
    return ScriptedTeacher(answer), calls


def test_the_explanation_call_happens_only_on_disagreement():
    teacher, calls = _scripted(lambda prompt: " neutral\n")
    sicl = SuperICL(teacher, TASKS["nli"], NLI)
    agree = sicl.classify([], Item(("p", "h")), Prediction("neutral", 0.8))
    assert agree.label == "neutral" and not agree.overrode and agree.explanation is None and len(calls) == 1
    differ = sicl.classify([], Item(("p2", "h2")), Prediction("entailment", 0.8))
    assert differ.overrode and differ.explanation == "because the hypothesis says otherwise" and len(calls) == 3
    assert calls[2]["prompt"] == differ.prompt + " neutral" + EXPLAIN
    assert calls[2]["max_tokens"] == 100 and calls[2]["top_p"] == 0.95
    assert (calls[1]["max_tokens"], calls[1]["temperature"], calls[1]["top_p"]) == (10, 1.0, 0.5)


def test_ablation_flags_produce_the_ablation_prompts():
    ctx = [(Item(("good film",), "positive"), Prediction("positive", 0.91))]
    test, pred = Item(("bad film",)), Prediction("negative", 0.77)
    full = build_prompt(TASKS["single"], ctx, test, pred)
    assert full.count("Prediction:") == 2 and full.count("Confidence:") == 2
    no_test = build_prompt(TASKS["single"], ctx, test, pred, ablation=Ablation(test_prediction=False))
    assert no_test == full.replace("RoBERTa-Large Prediction: negative (Confidence: 0.77)\n", "")
    no_conf = build_prompt(TASKS["single"], ctx, test, pred, ablation=Ablation(confidence=False))
    assert no_conf == full.replace(" (Confidence: 0.91)", "").replace(" (Confidence: 0.77)", "")
    no_ctx = build_prompt(TASKS["single"], ctx, test, pred, ablation=Ablation(context=False))
    assert no_ctx == "Sentence: bad film\nRoBERTa-Large Prediction: negative (Confidence: 0.77)\nLabel: "
    icl = SuperICL(None, TASKS["single"], ["positive", "negative"], plugin=False).prompt(ctx, test, pred)[0]
    assert icl == "Sentence: good film\nLabel: positive\n\nSentence: bad film\nLabel: "


def test_context_shrinking_keeps_the_test_block():
    ctx = [(Item((f"example number {i} " * 5,), "positive"), Prediction("positive", 0.9)) for i in range(10)]
    test = Item(("the test sentence that must stay",))
    sicl = SuperICL(None, TASKS["single"], ["positive", "negative"], max_prompt_tokens=80)
    text, kept = sicl.prompt(ctx, test, Prediction("negative", 0.6))
    assert 0 < kept < 10 and len(text.split()) <= 80
    assert text.endswith("Sentence: the test sentence that must stay\n"
                         "RoBERTa-Large Prediction: negative (Confidence: 0.6)\nLabel: ")
    assert text.startswith("Sentence: example number 0")  # the first examples are the ones kept
    tiny = SuperICL(None, TASKS["single"], ["positive", "negative"], max_prompt_tokens=3)
    text, kept = tiny.prompt(ctx, test, Prediction("negative", 0.6))
    assert kept == 0 and text.startswith("Sentence: the test sentence")  # over budget even alone: still sent


def test_labels_by_exact_match_and_constrained_choice():
    assert parse_label(" Entailment\nbecause", NLI) == "entailment"
    assert parse_label("entail", NLI) is None and parse_label("", NLI) is None
    teacher, calls = _scripted(lambda prompt: "contradiction")
    SuperICL(teacher, TASKS["nli"], NLI, constrained=True).classify([], Item(("p", "h")), Prediction("neutral", 0.4))
    assert calls[0]["guided_regex"] == "(entailment|neutral|contradiction)"


def test_with_a_simulated_llm_supericl_beats_the_plugin_and_overrides_at_low_confidence():
    """The LLM follows the plug-in at confidence >= 0.7 and is otherwise right 90% of the time; the plug-in is
    right on confident items and at chance on the others. SuperICL must beat the plug-in, with its overrides in
    the low-confidence bins."""
    r = random.Random(0)
    labels = ["positive", "negative"]
    items, preds, golds = [], [], []
    for i in range(200):
        gold = r.choice(labels)
        confident = r.random() < 0.6
        conf = r.uniform(0.7, 1.0) if confident else r.uniform(0.5, 0.7)
        label = gold if confident or r.random() < 0.5 else [x for x in labels if x != gold][0]
        items.append(Item((f"review {i}",), gold))
        preds.append(Prediction(label, conf))
        golds.append(gold)
    gold_of = {it.texts[0]: it.label for it in items}
    rng = random.Random(1)

    def llm(prompt):
        test = prompt.rsplit("Sentence: ", 1)[1]
        text = test.split("\n", 1)[0]
        shown = re.search(r"Prediction: (\w+) \(Confidence: ([\d.]+)\)", test)
        if shown and float(shown.group(2)) >= 0.7:
            return shown.group(1)
        gold = gold_of[text]
        return gold if rng.random() < 0.9 else [x for x in labels if x != gold][0]

    teacher, _ = _scripted(llm)
    sicl = SuperICL(teacher, TASKS["single"], labels, explain=False)
    context = [(items[i], preds[i]) for i in range(4)]
    outcomes = [sicl.classify(context, items[i], preds[i]) for i in range(4, 200)]
    gold_test, plugin_test = golds[4:], [p.label for p in preds[4:]]
    supericl_acc = sum(o.label == g for o, g in zip(outcomes, gold_test)) / len(gold_test)
    plugin_acc = sum(p == g for p, g in zip(plugin_test, gold_test)) / len(gold_test)
    assert supericl_acc > plugin_acc + 0.05
    bins = confidence_bins(outcomes, gold_test)
    low = [b for b in bins if b["bin"].startswith("[0.50")][0]
    high = [b for b in bins if b["bin"].startswith("[0.70") or b["bin"].startswith("[0.90")]
    assert low["override_rate"] > 0.2 and all(b["override_rate"] == 0.0 for b in high)
    assert sum(b["n"] for b in bins) == len(outcomes)
