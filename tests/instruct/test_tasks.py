"""FLAN-style tasks: deterministic rendering per (seed, template), options and CoT formats, turned-around
templates, the embedded collection's shape, and user tasks from YAML + JSONL."""
import json

import pytest

from slm.errors import ConfigError
from slm.instruct.collection import stdlib_collection
from slm.instruct.tasks import (COT_TRIGGERS, OPTION_HEADERS, Task, Template, load_user_task, render,
                                with_exemplars)


@pytest.fixture(scope="module")
def collection():
    return stdlib_collection(files=40, per_task=200)


def test_the_embedded_collection_has_six_clusters_of_three_tasks_or_more(collection):
    clusters = collection.clusters
    assert len(clusters) >= 6 and all(len(tasks) >= 3 for tasks in clusters.values())
    for task in collection.tasks.values():
        assert len(task.examples) >= 10, task.name
        assert 4 <= len(task.templates) <= 10 and sum(t.turned for t in task.templates) <= 3


def test_rendering_is_deterministic_per_seed_and_template(collection):
    task = collection.tasks["docstring_matches_code"]
    a = [render(task, i, t, seed=0) for i in range(20) for t in range(3)]
    assert a == [render(task, i, t, seed=0) for i in range(20) for t in range(3)]
    other_seed = [render(task, i, t, seed=1) for i in range(20) for t in range(3)]
    assert a != other_seed  # the option formats are drawn per (seed, task, example, template)
    assert {r.input.split("\n\n")[-1].split("\n")[0] for r in a} <= set(OPTION_HEADERS)
    assert len({r.input.split("\n\n")[-1].split("\n")[0] for r in a}) > 1


def test_classification_lists_its_options_and_the_target_is_one_of_them(collection):
    task = collection.tasks["fill_keyword"]
    for i in range(10):
        r = render(task, i, 0)
        assert r.target in r.options and all(o in r.input for o in r.options)
        assert render(task, i, 0, with_options=False).input.count("\n") < r.input.count("\n")


def test_cot_templates_end_with_the_answer_is_x(collection):
    task = collection.tasks["count_two_step"]
    for i in range(10):
        r = render(task, i, 0)
        example = task.examples[i]
        assert r.target == f"{example['cot']}\nThe answer is {example['answer']}."
        assert r.answer == example["answer"] and r.input.rstrip().endswith(COT_TRIGGERS)
        direct = render(task, i, 0, cot=False)
        assert direct.target == example["answer"]


def test_turned_around_templates_swap_input_and_target(collection):
    task = collection.tasks["function_summary"]
    turned = [i for i, t in enumerate(task.templates) if t.turned]
    assert turned and turned[0] not in task.eval_templates
    r = render(task, 0, turned[0])
    assert task.examples[0]["answer"] in r.input and r.target == task.examples[0]["code"]


def test_few_shot_prepends_other_examples_of_the_same_template(collection):
    task = collection.tasks["function_name_from_doc"]
    r = with_exemplars(task, 5, 1, shots=2, seed=0)
    assert r.exemplars == 2 and r.target == task.examples[5]["answer"]
    assert r.input.endswith(render(task, 5, 1).input) and r.input.count("Function name:") == 3


def test_user_tasks_load_from_yaml_and_jsonl_with_clear_errors(tmp_path):
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"q": f"{i}+1", "answer": str(i + 1)}) + "\n"
                                              for i in range(5)))
    (tmp_path / "t.yaml").write_text("name: plus_one\ncluster: arithmetic\nmetric: exact_match\ndata: d.jsonl\n"
                                     "templates:\n  - {input: 'What is {{q}}?'}\n  - {input: '{{q}} =', target: "
                                     "'{{answer}}'}\n")
    task = load_user_task(tmp_path / "t.yaml")
    assert render(task, 2, 0).input == "What is 2+1?" and render(task, 2, 1).target == "3"
    with pytest.raises(ConfigError, match="not found"):
        load_user_task(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("name: x\ncluster: c\nmetric: exact_match\ndata: d.jsonl\n"
                                       "templates:\n  - {input: '{{nope}}'}\n")
    with pytest.raises(ConfigError, match="nope"):
        render(load_user_task(tmp_path / "bad.yaml"), 0, 0)
    with pytest.raises(ConfigError, match="every template turns"):
        Task("t", "c", "exact_match", [{}], [Template("x", turned=True)])
    with pytest.raises(ConfigError, match="options_field"):
        Task("t", "c", "rank_classification", [{}], [Template("x")])
