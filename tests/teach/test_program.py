"""Prompt programs: items, templates, parsing with new-seed retries, resuming, and what a changed template costs."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from slm.errors import ConfigError, SlmError
from slm.teach import Job, Template, load_job, run_job
from slm.teach.program import make_parser, ParseError


def job(tmp_path, **kw) -> Job:
    base = dict(templates=[Template("q", user="Write about {{ topic }} for {{ audience }}.")],
                variables={"topic": ["rust", "tea"], "audience": ["kids", "cooks", "pilots"]},
                output=tmp_path / "out.jsonl", sampling={"max_tokens": 8, "seed": 0}, concurrency=2)
    return Job(**{**base, **kw})


def lines(path) -> list[dict]:
    return [json.loads(line) for line in open(path)]


def test_items_are_rows_times_the_product_of_the_variables(tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"seed_text": "a"}\n{"seed_text": "b"}\n')
    j = job(tmp_path, rows=rows, variables={"style": ["x", "y", "z"]},
            templates=[Template("q", user="{{ seed_text }} in style {{ style }}")])
    items = j.items()
    assert len(items) == 6 and items[0] == {"seed_text": "a", "style": "x"} and items[-1] == {"seed_text": "b", "style": "z"}
    ids = [rid for rid, *_ in j.requests()]
    assert len(set(ids)) == 6 and all(i.startswith("q:") for i in ids)


def test_ids_survive_adding_values(tmp_path):
    small = {rid for rid, *_ in job(tmp_path).requests()}
    bigger = {rid for rid, *_ in job(tmp_path, variables={"topic": ["rust", "tea", "owls"],
                                                          "audience": ["kids", "cooks", "pilots"]}).requests()}
    assert small < bigger and len(bigger) == 9


def test_a_template_naming_an_unknown_variable_fails_before_anything_is_sent(tmp_path):
    j = job(tmp_path, templates=[Template("q", user="{{ topik }}")])
    with pytest.raises(ConfigError, match="template 'q'.*'topik' is undefined"):
        j.requests()


def test_run_writes_one_record_per_request_then_resumes_for_free(fake, endpoint, tmp_path):
    report = run_job(job(tmp_path), endpoint, progress=False)
    assert (report.written, report.failed, report.records, fake.posts) == (6, 0, 6, 6)
    records = lines(tmp_path / "out.jsonl")
    assert [r["vars"] for r in records][:2] == [{"topic": "rust", "audience": "kids"},
                                               {"topic": "rust", "audience": "cooks"}]
    assert records[0]["outputs"] == [{"text": "echo: Write about rust for kids. [seed 0]",
                                      "value": "echo: Write about rust for kids. [seed 0]"}]
    again = run_job(job(tmp_path), endpoint, progress=False)
    assert (again.written, again.skipped, fake.posts) == (0, 6, 6)
    # A new output for the same job costs nothing either: every answer is in the cache.
    third = run_job(job(tmp_path, output=tmp_path / "copy.jsonl", cache=tmp_path / "out.jsonl.cache.sqlite"),
                    endpoint, progress=False)
    assert third.written == 6 and third.stats.cached == 6 and fake.posts == 6


def test_a_changed_template_invalidates_only_its_entries(fake, endpoint, tmp_path):
    cache = tmp_path / "cache.sqlite"
    two = [Template("a", user="A {{ topic }}"), Template("b", user="B {{ topic }}")]
    run_job(job(tmp_path, templates=two, variables={"topic": ["x", "y", "z"]}, cache=cache), endpoint, progress=False)
    assert fake.posts == 6
    changed = [Template("a", user="A {{ topic }}"), Template("b", user="B, changed: {{ topic }}")]
    j = job(tmp_path, templates=changed, variables={"topic": ["x", "y", "z"]}, cache=cache,
            output=tmp_path / "v2.jsonl")
    report = run_job(j, endpoint, progress=False)
    assert report.stats.cached == 3 and report.stats.sent == 3 and fake.posts == 9
    assert all(c == 1 for c in fake.counts.values())
    # The old output cannot silently mix the two versions.
    with pytest.raises(SlmError, match=r"out.jsonl:4: record b:\w+ was made from a different request"):
        run_job(job(tmp_path, templates=changed, variables={"topic": ["x", "y", "z"]}, cache=cache), endpoint,
                progress=False)


def test_parse_failures_are_retried_with_a_new_seed_then_recorded(fake, endpoint, tmp_path):
    # The fake answers with its seed: seed 2 gives a number the regex accepts, seeds 0 and 1 do not.
    fake.answer = lambda body: "answer: 42" if body["seed"] == 2 else "no idea"
    t = Template("q", user="{{ topic }}", parse={"regex": r"answer: (\d+)"})
    report = run_job(job(tmp_path, templates=[t], variables={"topic": ["x"]}, retries=2), endpoint, progress=False)
    [record] = lines(tmp_path / "out.jsonl")
    assert record["ok"] and record["attempts"] == 3 and record["outputs"][0]["value"] == "42"
    assert record["errors"] == [r"no match for /answer: (\d+)/"] * 2
    assert sorted(json.loads(b)["seed"] for b in fake.counts) == [0, 1, 2]
    fake.answer = lambda body: "never"
    report = run_job(job(tmp_path, templates=[t], variables={"topic": ["y"]}, retries=1,
                         output=tmp_path / "fail.jsonl"), endpoint, progress=False)
    [record] = lines(tmp_path / "fail.jsonl")
    assert not record["ok"] and record["attempts"] == 2 and record["outputs"] == [] and len(record["errors"]) == 2
    assert report.failed == 1


def test_a_refused_request_is_a_recorded_failure_not_a_crash(fake, endpoint, tmp_path):
    fake.plan = [400]
    report = run_job(job(tmp_path, concurrency=1), endpoint, progress=False)
    records = lines(tmp_path / "out.jsonl")
    assert report.failed == 1 and not records[0]["ok"] and records[0]["errors"] == ["refused: 400: planned 400"]
    assert all(r["ok"] for r in records[1:]) and len(records) == 6


def test_n_samples_per_request_are_parsed_each(fake, endpoint, tmp_path):
    fake.allow_n = False  # a server that refuses n > 1: the client splits
    t = Template("q", user="{{ topic }}", parse="text")
    run_job(job(tmp_path, templates=[t], variables={"topic": ["x"]}, sampling={"n": 3, "seed": 0}), endpoint,
            progress=False)
    [record] = lines(tmp_path / "out.jsonl")
    assert record["ok"] and len(record["outputs"]) == 3 and len({o["text"] for o in record["outputs"]}) == 3


def test_parsers():
    assert make_parser("json")('```json\n{"a": 1}\n```') == {"a": 1}
    assert make_parser({"python": "slm.recipes.tinygsm.formats:parse_number"})("12.5") == 12.5
    with pytest.raises(ParseError):
        make_parser({"python": "slm.recipes.tinygsm.formats:parse_number"})("no number here")
    with pytest.raises(ParseError):
        make_parser("text")("  \n")
    with pytest.raises(ConfigError, match="no function nope"):
        make_parser({"python": "slm.recipes.tinygsm.formats:nope"})
    with pytest.raises(ConfigError, match="parse must be"):
        make_parser({"xml": 1})


def test_load_job_and_what_is_wrong_with_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({"output": "out/data.jsonl", "templates": [{"name": "q", "user": "{{ x }}"}],
                                    "variables": {"x": [1, 2]}, "endpoint": {"base_url": "http://h/v1", "model": "m"}}))
    j = load_job(path)
    assert j.output == Path("out/data.jsonl") and j.cache == Path("out/data.jsonl.cache.sqlite")
    assert len(j.requests()) == 2
    for bad, message in [({"templates": []}, "output"),
                         ({"output": "o.jsonl", "templates": [{"name": "q"}]}, "exactly one of user, messages or prompt"),
                         ({"output": "o.jsonl", "templates": [{"name": "q", "user": "x"}], "temprature": 1},
                          "unknown field.*temprature"),
                         ({"output": "o.jsonl", "templates": [{"name": "q", "user": "x"}],
                           "sampling": {"temp": 1}}, "sampling: unknown field.*temp"),
                         ({"output": "o.jsonl", "templates": [{"name": "q", "user": "x"}], "variables": {"x": []}},
                          "variables.x must be a non-empty list")]:
        path.write_text(yaml.safe_dump(bad))
        with pytest.raises(ConfigError, match=message):
            load_job(path)


def test_the_example_job_loads_and_runs(fake, endpoint, tmp_path):
    from slm.teach.program import job_endpoint

    root = Path(__file__).resolve().parents[2]
    j = load_job(root / "recipes/teach/textbooks.yaml", output=tmp_path / "textbooks.jsonl")
    requests = j.requests()
    assert len(requests) == 2 * 4 * 2 and j.endpoint is None
    assert requests[0][3].messages[0]["role"] == "system"
    fake.answer = lambda body: "Title: Leaves\nAnswer: sunlight"
    with job_endpoint(j, base_url=fake.url, model=fake.model) as ep:
        report = run_job(j, ep, progress=False)
    assert report.written == 16 and report.failed == 0
    values = {r["template"]: r["outputs"][0]["value"] for r in lines(tmp_path / "textbooks.jsonl")}
    assert values == {"passage": "Leaves", "quiz": "sunlight"}


def test_logprobs_and_structured_output_pass_through(fake, endpoint, tmp_path):
    extra = {"logprobs": True, "top_logprobs": 2, "response_format": {"type": "json_object"}}
    fake.answer = lambda body: '{"a": 1}'
    t = Template("q", user="{{ topic }}", parse="json")
    run_job(job(tmp_path, templates=[t], variables={"topic": ["x"]}, sampling={"seed": 0, "extra": extra}),
            endpoint, progress=False)
    [body] = [json.loads(b) for b in fake.counts]
    assert {k: body[k] for k in extra} == extra
    [record] = lines(tmp_path / "out.jsonl")
    assert record["outputs"] == [{"text": '{"a": 1}', "value": {"a": 1},
                                  "logprobs": {"content": [{"token": "{", "logprob": -0.5}]}}]
