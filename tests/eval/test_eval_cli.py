import json

import yaml

from slm.cli import main


def _tasks_file(tmp_path):
    docs = [{"question": "the cat sat on the", "choices": ["mat", "sky"], "label": 0},
            {"question": "one two", "choices": ["three", "red"], "label": 0},
            {"question": "red green", "choices": ["blue", "seven"], "label": 1}]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    spec = {"tasks": [
        {"name": "mc", "kind": "multiple_choice", "data": "d.jsonl", "doc_to_text": "{{question}}",
         "doc_to_target": "{{label}}", "num_fewshot": 1},
        {"name": "ppl", "kind": "perplexity", "data": "d.jsonl", "doc_to_text": "{{question}}"},
    ]}
    path = tmp_path / "tasks.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_slm_eval_prints_a_table_and_writes_json(model_dir, tmp_path, capsys):
    from slm.eval import evaluate, load_tasks
    import slm

    tasks = _tasks_file(tmp_path)
    out = tmp_path / "results.json"
    rc = main(["eval", str(model_dir), "--tasks", str(tasks), "--limit", "2", "--batch-size", "3",
               "--output", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| mc | multiple_choice | acc |" in printed and "| ppl | perplexity | bits_per_byte |" in printed
    report = json.loads(out.read_text())
    assert report["limit"] == 2 and set(report["results"]) == {"mc", "ppl"}
    model, tokenizer = slm.load(model_dir)
    direct = evaluate(model, tokenizer, load_tasks(tasks, limit=2), batch_size=1)
    for name in ("mc", "ppl"):
        assert report["results"][name]["n"] == 2
        for metric, value in direct[name].items():
            if metric != "seconds":
                assert report["results"][name][metric] == value or abs(report["results"][name][metric] - value) <= 1e-6 * abs(value)


def test_slm_eval_task_selection_and_errors(model_dir, tmp_path, capsys):
    tasks = _tasks_file(tmp_path)
    assert main(["eval", str(model_dir), "--tasks", str(tasks), "--task", "ppl"]) == 0
    printed = capsys.readouterr().out
    assert "| ppl |" in printed and "| mc |" not in printed
    assert main(["eval", str(model_dir), "--tasks", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err
    assert "task file not found" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["eval", str(model_dir), "--tasks", str(tasks), "--task", "nope"]) == 2
    assert "no task named" in capsys.readouterr().err


def test_slm_eval_accepts_a_composition_file(model_dir, tmp_path, capsys):
    # base = reference = expert: the EFT composition's log-probabilities are the model's own, so are the metrics.
    tasks = _tasks_file(tmp_path)
    comp = tmp_path / "same.yaml"
    comp.write_text(yaml.safe_dump({"kind": "eft", "base": str(model_dir), "reference": str(model_dir),
                                    "experts": [{"model": str(model_dir), "weight": 1.0}]}))
    out_dir, out_comp = tmp_path / "dir.json", tmp_path / "comp.json"
    assert main(["eval", str(model_dir), "--tasks", str(tasks), "--output", str(out_dir)]) == 0
    assert main(["eval", str(comp), "--tasks", str(tasks), "--output", str(out_comp)]) == 0
    direct, composed = (json.loads(p.read_text())["results"] for p in (out_dir, out_comp))
    assert direct["mc"]["acc"] == composed["mc"]["acc"] and direct["mc"]["acc_norm"] == composed["mc"]["acc_norm"]
    assert abs(direct["ppl"]["bits_per_byte"] - composed["ppl"]["bits_per_byte"]) <= 1e-6 * direct["ppl"]["bits_per_byte"]
