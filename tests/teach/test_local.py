"""The local teacher: `slm serve` in a child process on a free loopback port, a job run through it, then stopped."""
from __future__ import annotations

import json

import httpx
import pytest

from slm.errors import SlmError
from slm.teach import Job, Request, Teacher, Template, local_endpoint, run_job

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    import torch

    import slm
    from slm.models import Decoder, ModelConfig

    texts = ["def main():\n    return 0\n", "import os\nimport sys\n", "class A:\n    pass\n"] * 20
    tokenizer = slm.train_tokenizer(texts, vocab_size=300, kind="byte-bpe")
    torch.manual_seed(0)
    config = ModelConfig(arch="llama", vocab_size=len(tokenizer), dim=32, n_layers=2, n_heads=4, n_kv_heads=2,
                         ffn_dim=64, max_seq_len=256, tie_embeddings=False)
    path = tmp_path_factory.mktemp("teach") / "tiny"
    slm.save(Decoder(config).init_weights(seed=0), tokenizer, path)
    return path


def test_a_job_through_slm_serve_on_a_tiny_model(tiny_model_dir, tmp_path):
    job = Job(templates=[Template("chat", user="def {{ name }}():"), Template("code", prompt="import {{ name }}")],
              variables={"name": ["os", "sys", "main"]}, output=tmp_path / "out.jsonl",
              sampling={"max_tokens": 6, "temperature": 0.8, "seed": 0, "n": 2}, concurrency=4)
    with local_endpoint(tiny_model_dir, options=[], max_batch_size=4) as endpoint:
        assert endpoint.model == "tiny"
        report = run_job(job, endpoint, progress=False, max_retries=1)
        # slm serve decodes n samples as rows of one batch: one request per record, two samples each.
        assert report.written == 6 and report.stats.sent == 6 and report.stats.refused == 0
        records = [json.loads(line) for line in open(tmp_path / "out.jsonl")]
        assert all(len(r["outputs"]) == 2 for r in records if r["ok"]) and sum(r["ok"] for r in records) >= 1
        assert report.stats.completion_tokens > 0
        # Greedy answers equal the server's own, through the cache on a second ask.
        teacher = Teacher(endpoint, cache=tmp_path / "c.sqlite")
        first = teacher.ask(Request(prompt="import os", max_tokens=5, temperature=0))
        again = teacher.ask(Request(prompt="import os", max_tokens=5, temperature=0))
        assert again.cached and again.text == first.text and first.completion_tokens == 5
        health = endpoint.base_url.removesuffix("/v1") + "/health"
    with pytest.raises(httpx.ConnectError):  # stopped on exit
        httpx.get(health, timeout=2)


def test_a_server_that_cannot_start_is_one_line(tmp_path):
    with pytest.raises(SlmError, match=r"the local teacher .* exited while starting: slm serve: error: .*"):
        with local_endpoint(tmp_path / "no-such-model", options=[]):
            pass


def test_the_real_model_answers_a_chat_request(real_model_dir, tmp_path):
    with local_endpoint(real_model_dir, options=[]) as endpoint:
        answer = Teacher(endpoint).ask(Request(messages=[{"role": "user", "content": "What is 2+2?"}],
                                               max_tokens=8, temperature=0))
    assert answer.completion_tokens > 0 and answer.text.strip()


def test_serve_local_prints_its_endpoint_and_stops_on_ctrl_c(tiny_model_dir):
    import signal
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "import sys; from slm.cli import main; sys.exit(main())", "teach",
                              "serve-local", "--model", str(tiny_model_dir)], stdout=subprocess.PIPE, text=True,
                             # as from a terminal: a background job of a script (CI's) inherits SIGINT ignored
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    line = child.stdout.readline()
    assert line.startswith("teacher ready: base_url http://127.0.0.1:") and "model tiny" in line
    url = line.split()[3].rstrip(",")
    assert httpx.get(url.removesuffix("/v1") + "/health", timeout=5).json()["status"] == "ok"
    child.send_signal(signal.SIGINT)  # Ctrl-C
    assert child.wait(60) == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(url.removesuffix("/v1") + "/health", timeout=2)
