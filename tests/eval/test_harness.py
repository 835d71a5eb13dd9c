"""Every task kind on tiny local data, with expected values computed independently of the harness."""
import json
import math

import pytest
import torch
import yaml

from slm.eval import metrics as M
from slm.eval.harness import evaluate, make_evaluator, markdown_table
from slm.eval.tasks import load_tasks

QUESTIONS = ["the cat sat on the", "one two three", "red green", "a dog ran in the", "Q: what is 2 + 3 ? A:",
             "paris london", "yes no true", "four five six"]
OPTIONS = [["mat", "sky", "dog"], ["four", "red", "paris"], ["blue", "seven"], ["park", "yes", "no", "rome"],
           ["5", "6", "the cat"], ["rome", "green", "one"], ["false", "mat"], ["seven", "blue", "cat"]]


def direct_loglikelihood(model, tokenizer, context, continuation):
    """log p(continuation | context) from one plain forward pass (no batching, no Scorer)."""
    ctx = tokenizer.encode(context)
    whole = tokenizer.encode(context + continuation)
    with torch.no_grad():
        logp = model(torch.tensor([whole])).float().log_softmax(-1)[0]
    return sum(float(logp[j - 1, whole[j]]) for j in range(len(ctx), len(whole)))


def direct_greedy(model, tokenizer, prompt, max_tokens):
    """Greedy decoding by re-running the whole sequence each step (no cache, no engine)."""
    ids = tokenizer.encode(prompt)
    out = []
    for _ in range(max_tokens):
        with torch.no_grad():
            nxt = int(model(torch.tensor([ids + out]))[0, -1].argmax())
        if nxt == tokenizer.eos_token_id:
            break
        out.append(nxt)
    return tokenizer.decode(out)


def write_task(tmp_path, docs, **spec):
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    path = tmp_path / "tasks.yaml"
    path.write_text(yaml.safe_dump({"tasks": [{"name": "t", "data": "data.jsonl", **spec}]}))
    return load_tasks(path)


def test_multiple_choice_accuracy_and_length_normalised_accuracy(model, tokenizer, tmp_path):
    docs, expect_acc, expect_norm = [], [], []
    for i, (q, options) in enumerate(zip(QUESTIONS, OPTIONS)):
        lls = [direct_loglikelihood(model, tokenizer, q, " " + o) for o in options]
        best, worst = M.choose(lls), min(range(len(lls)), key=lambda j: lls[j])
        label = best if i % 2 == 0 else worst  # half the golds are the model's pick, half its last choice
        docs.append({"question": q, "choices": options, "label": label})
        expect_acc.append(label == best)
        expect_norm.append(label == M.choose([ll / len(o) for ll, o in zip(lls, options)]))
    tasks = write_task(tmp_path, docs, kind="multiple_choice", doc_to_text="{{question}}", doc_to_target="{{label}}")
    res = evaluate(model, tokenizer, tasks, batch_size=3)["t"]
    assert res["n"] == len(docs)
    assert res["acc"] == pytest.approx(sum(expect_acc) / len(docs)) == pytest.approx(0.5)
    assert res["acc_norm"] == pytest.approx(sum(expect_norm) / len(docs))


def test_classification_accuracy_and_f1(model, tokenizer, tmp_path):
    labels, verbal = ["pos", "neg", "meh"], {"pos": "yes", "neg": "no", "meh": "blue"}
    docs, preds = [], []
    for i, q in enumerate(QUESTIONS):
        lls = [direct_loglikelihood(model, tokenizer, q + " Answer:", " " + verbal[l]) for l in labels]
        pred = labels[M.choose(lls)]
        preds.append(pred)
        docs.append({"text": q, "label": pred if i % 3 else labels[(labels.index(pred) + 1) % 3]})
    golds = [d["label"] for d in docs]
    tasks = write_task(tmp_path, docs, kind="classification", doc_to_text="{{text}} Answer:",
                       doc_to_target="{{label}}", labels=labels, verbalizers=verbal)
    res = evaluate(model, tokenizer, tasks, batch_size=2)["t"]
    assert res["acc"] == pytest.approx(M.accuracy(preds, golds))
    assert 0 < res["acc"] < 1
    assert res["f1"] == pytest.approx(M.f1_macro(preds, golds, labels))


def test_generate_exact_match(model, tokenizer, tmp_path):
    docs = []
    for i, q in enumerate(QUESTIONS[:6]):
        own = direct_greedy(model, tokenizer, q, 6)
        docs.append({"question": q, "answer": own.strip() if i < 4 else "certainly not this"})
    tasks = write_task(tmp_path, docs, kind="generate", doc_to_text="{{question}}", max_tokens=6, stop=[])
    res = evaluate(model, tokenizer, tasks, batch_size=4)["t"]
    assert res["exact_match"] == pytest.approx(4 / 6)


def test_generate_with_last_number_extraction(model, tokenizer, tmp_path):
    # The reference is "#### N"; the model's text is matched on its last number. A model that writes no
    # number scores 0 and `extracted` says how often a number was found at all.
    outputs = [direct_greedy(model, tokenizer, q, 6) for q in QUESTIONS[:4]]
    docs = [{"question": q, "answer": f"#### {M.last_number(o) or 0}"} for q, o in zip(QUESTIONS, outputs)]
    tasks = write_task(tmp_path, docs, kind="generate", doc_to_text="{{question}}", max_tokens=6, stop=[],
                       extract="last_number")
    res = evaluate(model, tokenizer, tasks)["t"]
    found = [M.last_number(o) is not None for o in outputs]
    assert res["extracted"] == pytest.approx(sum(found) / 4)
    assert res["exact_match"] == pytest.approx(sum(found) / 4)


def test_perplexity_bits_per_byte(model, tokenizer, tmp_path):
    texts = ["the cat sat on the mat .", "one two three four five", "red"]
    tasks = write_task(tmp_path, [{"text": t} for t in texts], kind="perplexity")
    res = evaluate(model, tokenizer, tasks, batch_size=2)["t"]
    total = 0.0
    for t in texts:  # every text fits the context here, so one window from the BOS token
        ids = tokenizer.encode(t)
        assert len(ids) < model.config.max_seq_len
        with torch.no_grad():
            logp = model(torch.tensor([[tokenizer.bos_token_id] + ids])).float().log_softmax(-1)[0]
        total += sum(float(logp[j, tok]) for j, tok in enumerate(ids))
    n_bytes = sum(len(t.encode()) for t in texts)
    assert res["bits_per_byte"] == pytest.approx(-total / n_bytes / math.log(2), rel=1e-6)
    assert res["word_perplexity"] == pytest.approx(math.exp(-total / sum(len(t.split()) for t in texts)), rel=1e-5)


CODE_DOCS = [
    {"solution": "def add(a, b):\n    return a + b\n", "test": "assert add(2, 3) == 5"},
    {"solution": "def add(a, b):\n    return a - b\n", "test": "assert add(2, 3) == 5"},
    {"solution": "def add(a, b):\n    while True:\n        pass\n", "test": "assert add(2, 3) == 5"},
    {"solution": "import os\ndef add(a, b):\n    os.fork()\n", "test": "assert add(2, 3) == 5"},
]


@pytest.mark.slow
def test_code_pass_at_k_through_the_sandbox(model, tokenizer, tmp_path):
    # A random model writes no working code, so the program is the document's solution with the model's
    # samples kept as a comment: the sampled text still flows through generation, rendering and the sandbox.
    tasks = write_task(tmp_path, CODE_DOCS, kind="code", doc_to_text="# write add\n", doc_to_target="{{test}}",
                       program="{{solution}}\n# {{completion | replace('\\n', ' ')}}\n{{test}}\n",
                       samples=3, pass_k=[1, 2], temperature=1.0, max_tokens=4, timeout=2.0, workers=2)
    res = evaluate(model, tokenizer, tasks)["t"]
    assert res["pass@1"] == pytest.approx(0.25) and res["pass@2"] == pytest.approx(0.25)
    assert res["status/ok"] == pytest.approx(0.25)
    assert res["status/error"] == pytest.approx(0.25)
    assert res["status/timeout"] == pytest.approx(0.25)
    assert res["status/forbidden"] == pytest.approx(0.25)


def test_fewshot_prompts_are_seeded_and_never_show_the_question(tokenizer, tmp_path):
    docs = [{"question": f"q{i}", "answer": f"a{i}"} for i in range(12)]
    task, = write_task(tmp_path, docs, kind="generate", doc_to_text="Q: {{question}}", num_fewshot=3)
    p1 = [task.prompt(d, i, seed=1) for i, d in enumerate(docs)]
    assert p1 == [task.prompt(d, i, seed=1) for i, d in enumerate(docs)]
    assert p1 != [task.prompt(d, i, seed=2) for i, d in enumerate(docs)]
    for i, prompt in enumerate(p1):
        parts = prompt.split("\n\n")
        assert len(parts) == 4 and parts[-1] == f"Q: q{i}"
        assert all(p.startswith("Q: q") and p.endswith(" a" + p.split("Q: q")[1].split(" ")[0]) for p in parts[:-1])
        assert f"Q: q{i} " not in prompt
    # --limit does not change the prompts of the documents that remain
    task.limit = 5
    assert [task.prompt(d, i, seed=1) for i, d in enumerate(task.documents())] == p1[:5]


def test_task_results_do_not_depend_on_batch_size(model, tokenizer, tmp_path):
    docs = [{"question": q, "choices": o, "label": 0} for q, o in zip(QUESTIONS, OPTIONS)]
    tasks = write_task(tmp_path, docs, kind="multiple_choice", doc_to_text="{{question}}",
                       doc_to_target="{{label}}", num_fewshot=2)
    runs = [evaluate(model, tokenizer, tasks, batch_size=bs)["t"] for bs in (1, 3, 8)]
    for r in runs[1:]:
        assert (r["acc"], r["acc_norm"]) == (runs[0]["acc"], runs[0]["acc_norm"])


def test_make_evaluator_runs_on_the_live_model_and_restores_training_mode(model, tokenizer, tmp_path):
    docs = [{"question": q, "choices": o, "label": 0} for q, o in zip(QUESTIONS, OPTIONS)]
    tasks = write_task(tmp_path, docs, kind="multiple_choice", doc_to_text="{{question}}", doc_to_target="{{label}}")
    evaluator = make_evaluator(tasks, tokenizer, batch_size=4)
    model.train()
    try:
        out = evaluator(model)
        assert model.training
    finally:
        model.eval()
    assert set(out) == {"eval/t/acc", "eval/t/acc_norm"}
    assert out["eval/t/acc"] == evaluate(model, tokenizer, tasks)["t"]["acc"]


def test_bad_task_files_fail_with_one_line_errors(tmp_path):
    from slm.errors import SlmError

    (tmp_path / "a.yaml").write_text("tasks:\n  - name: x\n    kind: multiple_choice\n    data: a.jsonl\n    bogus: 1\n")
    with pytest.raises(SlmError, match="unknown key"):
        load_tasks(tmp_path / "a.yaml")
    (tmp_path / "b.yaml").write_text("tasks:\n  - name: x\n    kind: translation\n    data: a.jsonl\n")
    with pytest.raises(SlmError, match="not one of"):
        load_tasks(tmp_path / "b.yaml")
    (tmp_path / "c.yaml").write_text("tasks:\n  - name: x\n    kind: perplexity\n    data: missing.jsonl\n")
    with pytest.raises(SlmError, match="not found"):
        load_tasks(tmp_path / "c.yaml")[0].documents()


def test_markdown_table_lists_every_metric():
    table = markdown_table({"t": {"kind": "multiple_choice", "n": 3, "acc": 0.5, "acc_norm": 0.25, "seconds": 1.0}})
    lines = table.splitlines()
    assert lines[0].startswith("| task |") and len(lines) == 4
    assert "| t | multiple_choice | acc | 0.5000 | 3 |" in lines
