"""slm generate / chat / serve on a tiny saved model."""
import copy
import io
import json
import socket
import subprocess
import sys
import time

import httpx
import pytest

import slm
from slm.cli import main
from slm.infer import Engine, SamplingParams


@pytest.fixture(scope="module")
def model_dir(tiny_model, tokenizer, tmp_path_factory):
    # A copy: save() fills the config's special token ids from the tokenizer, which other tests must not see.
    return str(slm.save(copy.deepcopy(tiny_model), tokenizer, tmp_path_factory.mktemp("cli") / "tiny"))


def test_generate_prints_the_engine_output(model_dir, tiny_model, tokenizer, capsys):
    expected = Engine(tiny_model, tokenizer).generate(["def main", "import"], SamplingParams(max_tokens=6))
    assert main(["generate", model_dir, "--prompt", "def main", "--prompt", "import", "--max-tokens", "6",
                 "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["text"] for r in rows] == [c.text for c in expected]
    assert main(["generate", model_dir, "--prompt", "def main", "--max-tokens", "6", "--stream"]) == 0
    assert capsys.readouterr().out == "def main" + expected[0].text + "\n"


def test_generate_int8_and_speculative(model_dir, capsys):
    assert main(["generate", model_dir, "--prompt", "def", "--max-tokens", "5", "--int8", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["completion_tokens"] >= 1
    assert main(["generate", model_dir, "--prompt", "def", "--max-tokens", "5", "--draft", model_dir]) == 0
    assert "acceptance 100%" in capsys.readouterr().err


def test_generate_compiled_prints_the_same_completion(model_dir, capsys):
    args = ["generate", model_dir, "--prompt", "def main", "--max-tokens", "8", "--json"]
    assert main(args) == 0
    eager = json.loads(capsys.readouterr().out)
    assert main(args + ["--compile"]) == 0
    assert json.loads(capsys.readouterr().out) == eager
    assert main(args + ["--compile", "--int8"]) == 0  # int8 weights, compiled steps
    assert json.loads(capsys.readouterr().out)["completion_tokens"] == eager["completion_tokens"]


def test_generate_errors_exit_2(model_dir, tmp_path, capsys):
    assert main(["generate", model_dir]) == 2
    assert "--prompt" in capsys.readouterr().err
    assert main(["generate", str(tmp_path / "missing"), "--prompt", "x"]) == 2
    assert main(["generate", model_dir, "--prompt", "x", "--top-p", "0"]) == 2


def test_chat_streams_replies_and_keeps_history(model_dir, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("hello\n/reset\ndef main\n/exit\n"))
    assert main(["chat", model_dir, "--max-tokens", "5", "--temperature", "0"]) == 0
    out = capsys.readouterr().out
    assert out.count("assistant> ") == 2


def test_chat_compiled_replies_as_eager_and_inductor_warms_up(model_dir, monkeypatch, capsys):
    replies = []
    for extra in ([], ["--compile", "inductor"], ["--compile"]):  # the C++ step needs no warm-up
        monkeypatch.setattr(sys, "stdin", io.StringIO("def main\n/exit\n"))
        assert main(["chat", model_dir, "--max-tokens", "5", "--temperature", "0", *extra]) == 0
        captured = capsys.readouterr()
        replies.append(captured.out)
        warmed_up = "compiling decoding steps" in captured.err  # the warm-up bar
        assert warmed_up == (extra == ["--compile", "inductor"])
    assert replies[0] == replies[1] == replies[2]


@pytest.mark.slow
def test_serve_answers_over_http(model_dir):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "slm", "serve", model_dir, "--port", str(port), "--threads", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.time() < deadline, "slm serve did not come up"
            time.sleep(0.2)
        r = httpx.post(f"http://127.0.0.1:{port}/v1/completions", json={"prompt": "def", "max_tokens": 4})
        assert r.status_code == 200 and r.json()["model"] == "tiny"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
