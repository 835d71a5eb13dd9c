"""Requests as clients send them (content parts, n > 1, stop, max_completion_tokens, seeds, unknown fields), the
malformed ones (raw HTTP: always 4xx with an OpenAI-style body, the server healthy after), and keys and limits."""
from __future__ import annotations

import threading

import httpx
import openai
import pytest
from server_util import live_server, wait_until

from slm.infer import Engine, SamplingParams
from slm.infer.server import create_app

pytestmark = pytest.mark.slow


def chat_ids(tokenizer, messages):
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_content_parts_are_joined_and_unknown_fields_ignored(client, tiny_model, tokenizer):
    plain = [{"role": "user", "content": "def main():"}]
    parts = [{"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
             {"role": "user", "content": [{"type": "text", "text": "def "}, {"type": "text", "text": "main():"}]}]
    out = client.chat.completions.create(model="tiny", messages=parts, max_completion_tokens=8, temperature=0,
                                         user="someone", metadata={"run": "1"}, extra_body={"unknown_field": [1]})
    with_system = [{"role": "system", "content": "Be brief."}, plain[0]]
    expected = Engine(tiny_model, tokenizer).generate([chat_ids(tokenizer, with_system)],
                                                      SamplingParams(max_tokens=8))[0]
    assert out.choices[0].message.content == expected.text
    assert out.usage.completion_tokens == len(expected.token_ids) <= 8  # max_completion_tokens is the cap


def test_image_parts_are_refused_until_a_vision_model_is_served(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="tiny", max_tokens=2, messages=[{"role": "user", "content": [
            {"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": "data:,"}}]}])
    assert info.value.body["code"] == "unsupported_content" and "vision" in info.value.body["message"]
    assert info.value.body["param"] == "messages.0.content.1"


def test_n_samples_share_a_prefill_and_follow_the_seed(client, tiny_model, tokenizer):
    out = client.completions.create(model="tiny", prompt="def main", max_tokens=10, temperature=1.0, n=3, seed=7)
    assert sorted(c.index for c in out.choices) == [0, 1, 2]
    again = client.completions.create(model="tiny", prompt="def main", max_tokens=10, temperature=1.0, n=3, seed=7)
    assert [c.text for c in again.choices] == [c.text for c in out.choices]  # reproducible per choice
    # Choice j is the engine's sample with seed + j, and the first equals a plain n=1 request's.
    engine = Engine(tiny_model, tokenizer)
    for j, choice in enumerate(out.choices):
        [alone] = engine.generate(["def main"], SamplingParams(max_tokens=10, temperature=1.0, seed=7 + j))
        assert choice.text == alone.text
    assert len({c.text for c in out.choices}) > 1
    assert out.usage.prompt_tokens == len(tokenizer.encode("def main"))


def test_n_streams_interleave_choices(client):
    chunks = list(client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}],
                                                 max_tokens=6, n=2, seed=1, stream=True))
    texts = {0: "", 1: ""}
    for c in chunks:
        for ch in c.choices:
            texts[ch.index] += ch.delta.content or ""
    full = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}],
                                          max_tokens=6, n=2, seed=1)
    assert texts == {c.index: c.message.content for c in full.choices}


def test_stop_strings_and_seed_range(client):
    free = client.completions.create(model="tiny", prompt="def main", max_tokens=20, temperature=0).choices[0].text
    stop = free[3:5]
    cut = client.completions.create(model="tiny", prompt="def main", max_tokens=20, temperature=0, stop=[stop, "zzz"])
    assert cut.choices[0].text == free[:free.index(stop)] and cut.choices[0].finish_reason == "stop"
    for seed in (2**64 - 1, -(2**63)):
        assert client.completions.create(model="tiny", prompt="def", max_tokens=2, seed=seed).choices
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="tiny", prompt="def", max_tokens=2, seed=2**80)
    assert info.value.body["param"] == "seed"
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="tiny", prompt="def", max_tokens=2, stop=["a", "b", "c", "d", "e"])
    assert info.value.body["param"] == "stop"


def test_models_lists_what_is_served(client):
    [model] = client.models.list().data
    assert model.id == "tiny" and model.owned_by == "slm"


RAW = [  # (path, body bytes or JSON, expected status, expected param or code)
    ("/v1/completions", b"{not json", 400, "invalid_json"),
    ("/v1/completions", b"", 400, None),
    ("/v1/completions", [1, 2], 400, None),
    ("/v1/completions", {"prompt": 5}, 400, "prompt"),
    ("/v1/completions", {"prompt": []}, 400, "prompt"),
    ("/v1/completions", {"prompt": [[]]}, 400, "prompt"),
    ("/v1/completions", {"prompt": "x", "max_tokens": "5"}, 400, "max_tokens"),
    ("/v1/completions", {"prompt": "x", "max_tokens": 1e30}, 400, "max_tokens"),
    ("/v1/completions", {"prompt": "x", "max_tokens": 0}, 400, "max_tokens"),
    ("/v1/completions", {"prompt": "x", "temperature": 3}, 400, "temperature"),
    ("/v1/completions", {"prompt": "x", "top_p": 0}, 400, "top_p"),
    ("/v1/completions", {"prompt": "x", "seed": 2**80}, 400, "seed"),
    ("/v1/completions", {"prompt": "x", "seed": "1"}, 400, "seed"),
    ("/v1/completions", {"prompt": "x", "n": 0}, 400, "n"),
    ("/v1/completions", {"prompt": "x", "stop": [""]}, 400, "stop"),
    ("/v1/completions", {"prompt": "x", "stream": "yes"}, 400, "stream"),
    ("/v1/completions", {"prompt": "x", "logprobs": 21}, 400, "logprobs"),
    ("/v1/completions", {"prompt": [-1]}, 400, "prompt"),
    ("/v1/completions", {"prompt": "x", "model": "gpt-9"}, 404, "model"),
    ("/v1/completions", {"prompt": "x", "response_format": {"type": "xml"}}, 400, "response_format.type"),
    ("/v1/chat/completions", {"messages": []}, 400, "messages"),
    ("/v1/chat/completions", {"messages": [{"role": "robot", "content": "x"}]}, 400, "messages.0.role"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": [{"type": "audio"}]}]}, 400, None),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": 3}]}, 400, None),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2}, 400,
     "top_logprobs"),
    ("/v1/embeddings", {"input": []}, 400, "input"),
    ("/v1/embeddings", {"input": "x", "dimensions": 3}, 400, "dimensions"),
    ("/v1/nowhere", {}, 404, "not_found"),
]


@pytest.mark.parametrize("path, body, status, where", RAW)
def test_malformed_requests_get_4xx_with_an_openai_body(server, path, body, status, where):
    url = server[0]
    content = body if isinstance(body, bytes) else __import__("json").dumps(body).encode()
    r = httpx.post(url + path, content=content, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["message"] and error["type"]
    if where is not None:
        assert where in (error["param"], error["code"]), error
    assert httpx.get(url + "/health").json()["status"] == "ok"


def test_wrong_method_is_405_with_an_openai_body(server):
    r = httpx.get(server[0] + "/v1/completions")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


@pytest.fixture(scope="module")
def keyed(tiny_model, tokenizer):
    app = create_app(Engine(tiny_model, tokenizer), model_name="tiny", api_key="sk-test", max_body_bytes=2000,
                     request_timeout_s=5)
    with live_server(app) as url:
        yield url


def test_api_key_is_required_except_on_health(keyed):
    bad = openai.OpenAI(base_url=keyed + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        bad.models.list()
    assert info.value.status_code == 401 and info.value.body["code"] == "invalid_api_key"
    for headers in ({}, {"Authorization": "sk-test"}, {"Authorization": "Bearer sk-tes"}):  # none, no scheme, prefix
        r = httpx.post(keyed + "/v1/completions", json={"prompt": "x"}, headers=headers)
        assert r.status_code == 401 and r.json()["error"]["type"] == "invalid_request_error"
    assert httpx.get(keyed + "/metrics").status_code == 401
    assert httpx.get(keyed + "/health").status_code == 200
    good = openai.OpenAI(base_url=keyed + "/v1", api_key="sk-test", max_retries=0)
    assert good.completions.create(model="tiny", prompt="def", max_tokens=2).choices


def test_body_size_cap(keyed):
    headers = {"Authorization": "Bearer sk-test"}
    r = httpx.post(keyed + "/v1/completions", json={"prompt": "x" * 5000}, headers=headers)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"

    def chunked():  # no Content-Length: the cap still holds
        yield b'{"prompt": "'
        for _ in range(10):
            yield b"x" * 500
        yield b'"}'
    r = httpx.post(keyed + "/v1/completions", content=chunked(), headers=headers)
    assert r.status_code == 413
    assert httpx.get(keyed + "/health").status_code == 200


def test_request_timeout_and_max_concurrent(tiny_model, tokenizer):
    from test_server import GatedModel

    gated = GatedModel(tiny_model)
    app = create_app(Engine(gated, tokenizer), model_name="tiny", max_batch_size=1, request_timeout_s=1.0,
                     max_concurrent=1)
    with live_server(app) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        errors = {}

        def slow():
            try:
                client.completions.create(model="tiny", prompt="def", max_tokens=5)
            except openai.APIStatusError as e:
                errors["slow"] = e
        thread = threading.Thread(target=slow)
        thread.start()
        wait_until(lambda: app.state.scheduler.running == 1)
        with pytest.raises(openai.RateLimitError) as info:  # one in flight already
            client.completions.create(model="tiny", prompt="def", max_tokens=5)
        assert info.value.body["code"] == "too_many_requests"
        thread.join(timeout=10)
        assert errors["slow"].status_code == 408 and errors["slow"].body["code"] == "request_timeout"
        gated.gate.set()
        wait_until(lambda: app.state.scheduler.running == 0)
        assert client.completions.create(model="tiny", prompt="def", max_tokens=2).choices


def test_nulls_for_optional_fields_read_as_unset(server):
    """Some clients send every field, unset ones as null."""
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "stream": None,
            "logprobs": None, "top_logprobs": None, "temperature": None, "top_p": None, "seed": None, "stop": None,
            "max_completion_tokens": None, "response_format": None, "stream_options": None}
    r = httpx.post(server[0] + "/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["logprobs"] is None


def test_slm_serve_passes_key_and_limits_to_the_server(monkeypatch, tmp_path):
    """`slm serve --api-key` (or SLM_API_KEY), --max-body-bytes, --request-timeout, --max-concurrent reach serve()."""
    import slm.cli.generate
    import slm.infer.server
    from slm.cli import build_parser

    seen = {}
    monkeypatch.setattr(slm.cli.generate, "load_engine", lambda args, **kw: "engine")
    monkeypatch.setattr(slm.infer.server, "serve", lambda engine, **kw: seen.update(kw))
    monkeypatch.setenv("SLM_API_KEY", "sk-env")
    args = build_parser().parse_args(["serve", str(tmp_path), "--max-body-bytes", "100", "--request-timeout", "5",
                                      "--max-concurrent", "3"])
    assert args.func(args) == 0
    assert seen["api_key"] == "sk-env" and seen["max_body_bytes"] == 100 and seen["request_timeout_s"] == 5
    assert seen["max_concurrent"] == 3
    args = build_parser().parse_args(["serve", str(tmp_path), "--api-key", "sk-flag"])
    args.func(args)
    assert seen["api_key"] == "sk-flag"
