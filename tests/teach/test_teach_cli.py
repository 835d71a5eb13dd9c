"""slm teach generate: bad input is one line with nothing written; a job killed with SIGKILL resumes exactly."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from slm.cli import main
from slm.teach import Cache
from slm.teach.local import free_port


def write_job(tmp_path, url: str, model: str = "fake", n_topics: int = 3, **extra) -> str:
    job = {"output": str(tmp_path / "out.jsonl"), "templates": [{"name": "q", "user": "Tell me about {{ topic }}."}],
           "variables": {"topic": [f"topic {i}" for i in range(n_topics)]}, "sampling": {"max_tokens": 8, "seed": 0},
           "endpoint": {"base_url": url, "model": model, "timeout": 5}, "concurrency": 2, **extra}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return str(path)


def records(tmp_path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]


def test_generate_runs_a_job(fake, tmp_path, capsys):
    assert main(["teach", "generate", write_job(tmp_path, fake.url), "--no-progress"]) == 0
    assert [r["outputs"][0]["text"] for r in records(tmp_path)] == [
        f"echo: Tell me about topic {i}. [seed 0]" for i in range(3)]
    assert "3 records written (0 failed)" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["unreachable", "wrong key", "unknown model"])
def test_bad_endpoints_are_one_line_and_write_nothing(fake, tmp_path, capsys, monkeypatch, case):
    url, model, args = fake.url, "fake", []
    if case == "unreachable":
        url = f"http://127.0.0.1:{free_port()}/v1"
    elif case == "wrong key":
        fake.key = "right"
        monkeypatch.setenv("TEACH_TEST_KEY", "wrong")
        args = ["--api-key-env", "TEACH_TEST_KEY"]
    else:
        model = "gpt-9"
    assert main(["teach", "generate", write_job(tmp_path, url, model), "--no-progress", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("slm teach: error: ")
    assert {"unreachable": "cannot reach the teacher", "wrong key": "refused the key (401",
            "unknown model": "does not serve model 'gpt-9'"}[case] in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.yaml"]
    assert fake.posts == 0


def test_a_bad_job_file_is_one_line(tmp_path, capsys):
    path = tmp_path / "job.yaml"
    path.write_text("output: o.jsonl\ntemplates: [{name: q, user: '{{ nope }}'}]\nendpoint: {base_url: 'http://x/v1'}\n")
    assert main(["teach", "generate", str(path)]) == 2
    assert "template 'q' with {}: 'nope' is undefined" in capsys.readouterr().err
    path.write_text(path.read_text().replace("{{ nope }}", "hi"))
    assert main(["teach", "generate", str(path)]) == 2
    assert "a base_url needs a model name" in capsys.readouterr().err
    assert main(["teach", "generate", str(tmp_path / "missing.yaml")]) == 2
    assert "job file not found" in capsys.readouterr().err


def test_sigkill_mid_job_then_rerun_has_every_request_once_and_resends_nothing_done(fake, tmp_path):
    fake.delay = 0.15  # 24 requests at concurrency 2: about 2 s of answering
    job = write_job(tmp_path, fake.url, n_topics=24)
    cmd = [sys.executable, "-c", "import sys; from slm.cli import main; sys.exit(main())", "teach", "generate", job,
           "--no-progress"]
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dict(os.environ))
    out = tmp_path / "out.jsonl"
    deadline = time.time() + 60
    while not (out.exists() and out.read_text().count("\n") >= 6):
        assert time.time() < deadline and child.poll() is None, child.stderr.read() if child.poll() else "too slow"
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    written_before = out.read_text().count("\n")
    assert 6 <= written_before < 24
    cache = Cache(tmp_path / "out.jsonl.cache.sqlite")
    done = {fake.canonical(body) for _, _, body in cache.requests()}
    cache.close()
    assert len(done) >= written_before
    counts_at_kill = dict(fake.counts)

    assert main(["teach", "generate", job, "--no-progress"]) == 0
    ids = [r["id"] for r in records(tmp_path)]
    assert len(ids) == 24 and len(set(ids)) == 24 and all(r["ok"] for r in records(tmp_path))
    assert [r["vars"]["topic"] for r in records(tmp_path)] == [f"topic {i}" for i in range(24)]
    assert all(fake.counts[b] == counts_at_kill[b] == 1 for b in done), "a cached request was sent again"
    # Only requests that were in flight at the kill (at most the concurrency) can have been sent twice.
    assert sum(c - 1 for c in fake.counts.values()) <= 2 and len(fake.counts) == 24


def test_a_finished_job_starts_no_teacher(fake, tmp_path, capsys):
    job = write_job(tmp_path, fake.url)
    assert main(["teach", "generate", job, "--no-progress"]) == 0
    fake.stop()  # nothing answers now: a finished job must not need it
    try:
        assert main(["teach", "generate", job, "--no-progress"]) == 0
        assert "nothing to do, all 3 records are there" in capsys.readouterr().err
        # Changing the template is still noticed before any endpoint is asked.
        text = open(job).read().replace("Tell me about", "Explain")
        open(job, "w").write(text)
        assert main(["teach", "generate", job, "--no-progress"]) == 2
        assert "was made from a different request" in capsys.readouterr().err
    finally:
        fake.start()
