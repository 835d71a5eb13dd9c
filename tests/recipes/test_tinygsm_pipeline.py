"""The whole TinyGSM pipeline at smoke scale: it runs, writes what it says, and its table is consistent.

The acceptance claim (verifier@N above greedy and majority@N) is measured by `slm recipe tinygsm` with
recipes/tinygsm.yaml and reported in docs/recipes/tinygsm.md; a model trained for seconds cannot show it.
"""
import json
from pathlib import Path

import pytest

from slm.config import build, load_recipe
from slm.recipes.tinygsm.pipeline import METRICS, TinyGSMConfig, format_table, run

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_smoke_pipeline(tmp_path, capsys):
    from slm.cli import main

    rc = main(["recipe", "tinygsm", "--config", str(ROOT / "recipes/tinygsm-smoke.yaml"),
               "--out", str(tmp_path / "run")])
    assert rc == 0
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "run/results.json").read_text())
    for name in METRICS:
        assert name.replace("@N", "@4") in out
        row = summary["table"][name]
        assert 0.0 <= row["mean"] <= 1.0 and len(row["values"]) == 1
    seed = summary["seeds"][0]
    m = seed["metrics"]
    assert m["pass@N"] >= max(m["majority@N"], m["verifier@N"], m["weighted@N"], m["pass@1"])
    lines = (tmp_path / "run/seed-0/test_samples.jsonl").read_text().splitlines()
    assert len(lines) == seed["test_problems"] and len(json.loads(lines[0])["samples"]) == 4
    assert seed["template_leaks"] == 0  # no test template was trained on
    assert seed["verifier_samples"] == 2 * 2 * 2 * seed["verifier_questions"]  # checkpoints x temperatures x samples
    run_dir = tmp_path / "run/seed-0"
    from slm.recipes.tinygsm.verifier import Verifier
    import slm

    Verifier.load(run_dir / "verifier")
    model, tokenizer = slm.load(run_dir / "generator-final")
    assert tokenizer is not None and model.config.dim == 32
    # A repeated run with the same settings reuses the seed's results instead of training again.
    assert main(["recipe", "tinygsm", "--config", str(ROOT / "recipes/tinygsm-smoke.yaml"),
                 "--out", str(tmp_path / "run")]) == 0
    again = capsys.readouterr().out
    assert "reusing" in again
    assert json.loads((tmp_path / "run/results.json").read_text())["table"] == summary["table"]


def test_recipes_load_and_build():
    for path in sorted((ROOT / "recipes").glob("tinygsm*.yaml")):
        cfg = build(TinyGSMConfig, load_recipe(path))
        assert cfg.eval.n_samples >= 1
    cfg = build(TinyGSMConfig, load_recipe(ROOT / "recipes/tinygsm.yaml"))
    assert cfg.eval.n_samples >= 16 and len(cfg.seeds) >= 3  # the acceptance setting


def test_format_table():
    seeds = [{"n_samples": 16, "test_problems": 10, "metrics": dict(zip(METRICS, [.1, .2, .3, .4, .45, .5]))},
             {"n_samples": 16, "test_problems": 10, "metrics": dict(zip(METRICS, [.3, .2, .3, .6, .65, .7]))}]
    from slm.recipes.tinygsm.pipeline import summarize

    text = format_table(summarize(seeds))
    assert "verifier@16" in text and "0.500 ± 0.141" in text and "0.2 seed" not in text


@pytest.mark.slow
def test_pipeline_trains_on_a_tinygsm_file_and_evaluates_on_a_gsm8k_file(tmp_path):
    from slm.recipes.tinygsm import formats, problems

    templates = problems.all_templates()
    formats.write_jsonl(problems.generate(templates, 160, seed=11), tmp_path / "train.jsonl")
    test = problems.generate(templates, 6, seed=12)
    (tmp_path / "test.jsonl").write_text("".join(
        json.dumps({"question": p.question, "answer": f"Some reasoning.\n#### {p.answer}"}) + "\n" for p in test))
    data = load_recipe(ROOT / "recipes/tinygsm-smoke.yaml")
    data["out_dir"] = str(tmp_path / "run")
    data["data"].update(train_file=str(tmp_path / "train.jsonl"), test_file=str(tmp_path / "test.jsonl"))
    summary = run(build(TinyGSMConfig, data))
    seed = summary["seeds"][0]
    assert seed["test_problems"] == 6
    assert seed["train_problems"] + seed["filter_report"]["contaminated"] == 160
    assert seed["verifier_questions"] == 8


@pytest.mark.slow
def test_seeds_in_parallel_processes(tmp_path):
    data = load_recipe(ROOT / "recipes/tinygsm-smoke.yaml", ["seeds=[0,1]", "jobs=2", f"out_dir={tmp_path / 'run'}"])
    summary = run(build(TinyGSMConfig, data))
    assert [s["seed"] for s in summary["seeds"]] == [0, 1]
    assert all((tmp_path / f"run/seed-{k}/results.json").is_file() for k in (0, 1))
    assert len(summary["table"]["greedy"]["values"]) == 2


def test_verifier_questions_come_from_templates_neither_trained_on_nor_tested():
    from slm.recipes.tinygsm.pipeline import build_data

    small = {"train_problems": 60, "verifier_problems": 30, "test_problems": 30}
    cfg = build(TinyGSMConfig, {"data": small})
    data = build_data(cfg, seed=3)
    train, verifier, test = ({p.template for p in data[k]} for k in ("train", "verifier", "test"))
    assert verifier and test and train
    assert verifier.isdisjoint(train) and verifier.isdisjoint(test) and test.isdisjoint(train)
    assert data["template_leaks"] == 0 and data["templates"]["verifier"] > 0
    # The other choice: fresh questions from the generator's own templates.
    data = build_data(build(TinyGSMConfig, {"data": {**small, "verifier_templates": "train"}}), seed=3)
    from slm.recipes.tinygsm import problems

    generator_templates = problems.template_split(problems.all_templates(cfg.data.max_steps), 0.2, 3)[0]
    assert {p.template for p in data["verifier"]} <= {t.id for t in generator_templates}
    with pytest.raises(Exception, match="verifier_templates"):
        build(TinyGSMConfig, {"data": {"verifier_templates": "test"}})
