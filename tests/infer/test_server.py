"""The OpenAI-compatible server, driven by the official `openai` client against a live uvicorn on localhost."""
from __future__ import annotations

import socket
import threading

import httpx
import openai
import pytest
import torch

from slm.infer import Engine
from slm.infer.server import create_app
from server_util import live_server, wait_until

pytestmark = pytest.mark.slow


def test_health_and_models(server, client):
    assert httpx.get(server[0] + "/health").json()["status"] == "ok"
    assert [m.id for m in client.models.list().data] == ["tiny"]


def test_completion_equals_engine_greedy(client, tiny_model, tokenizer):
    expected = Engine(tiny_model, tokenizer).generate(["def main"], _greedy(12))[0]
    out = client.completions.create(model="tiny", prompt="def main", max_tokens=12, temperature=0)
    assert out.choices[0].text == expected.text
    assert out.choices[0].finish_reason == ("length" if expected.finish_reason == "length" else "stop")
    assert out.usage.completion_tokens == len(expected.token_ids)
    assert out.usage.prompt_tokens == len(tokenizer.encode("def main"))
    # Token-id prompts and the sampling extensions work too.
    ids = tokenizer.encode("def main")
    same = client.completions.create(model="tiny", prompt=ids, max_tokens=12, temperature=0,
                                     extra_body={"top_k": 5, "repetition_penalty": 1.0})
    assert same.choices[0].text == expected.text


def test_streaming_completion_concatenates_to_the_full_text(client):
    full = client.completions.create(model="tiny", prompt="import os", max_tokens=20, temperature=0.8, seed=3)
    chunks = list(client.completions.create(model="tiny", prompt="import os", max_tokens=20, temperature=0.8, seed=3,
                                            stream=True))
    assert "".join(c.choices[0].text for c in chunks) == full.choices[0].text
    assert chunks[-1].choices[0].finish_reason == full.choices[0].finish_reason


def test_chat_uses_the_template_and_streams(client, tiny_model, tokenizer):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "def main"}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    expected = Engine(tiny_model, tokenizer).generate([ids], _greedy(15))[0]
    out = client.chat.completions.create(model="tiny", messages=messages, max_tokens=15, temperature=0)
    assert out.choices[0].message.role == "assistant"
    assert out.choices[0].message.content == expected.text
    assert out.usage.prompt_tokens == len(ids)
    stream = client.chat.completions.create(model="tiny", messages=messages, max_tokens=15, temperature=0,
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected.text
    assert chunks[-1].usage.completion_tokens == out.usage.completion_tokens


@pytest.mark.parametrize("kwargs, param", [
    (dict(max_tokens=41), "max_tokens"),              # over the cap (40)
    (dict(max_tokens=0), "max_tokens"),
    (dict(temperature=-1), "temperature"),
    (dict(top_p=1.5), "top_p"),
    (dict(n=99), "n"),                               # more rows than a batch (8)
    (dict(prompt="x " * 200), "prompt"),            # longer than the context (96)
    (dict(prompt=[10_000]), "prompt"),                # token id out of range
])
def test_bad_requests_answer_400(client, kwargs, param):
    args = {"model": "tiny", "prompt": "def", "max_tokens": 5, **kwargs}
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(**args)
    body = info.value.body
    assert info.value.status_code == 400 and body["param"] == param and body["message"]


def test_unknown_model_and_malformed_chat(server, client):
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="gpt-9", prompt="def", max_tokens=2)
    r = httpx.post(server[0] + "/v1/chat/completions", json={"model": "tiny", "messages": [{"role": "robot"}]})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def test_concurrent_requests_share_a_batch(server, tiny_model, tokenizer):
    url, app = server
    prompts = ["def main", "import os", "class A", "return"]
    expected = Engine(tiny_model, tokenizer).generate(prompts, _greedy(30))
    before = app.state.scheduler.largest_batch
    results = [None] * len(prompts)
    clients = [openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0) for _ in prompts]
    barrier = threading.Barrier(len(prompts))

    def ask(i):
        barrier.wait()
        results[i] = clients[i].completions.create(model="tiny", prompt=prompts[i], max_tokens=30, temperature=0)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.choices[0].text for r in results] == [c.text for c in expected]
    assert max(before, app.state.scheduler.largest_batch) > 1


def test_a_request_joins_the_running_batch(tiny_model, tokenizer):
    """Continuous batching: a request sent while another is decoding joins its batch (no second batch)
    and gets the tokens it would get alone."""
    gated = GatedModel(tiny_model)
    app = create_app(Engine(gated, tokenizer), model_name="tiny", max_batch_size=4, max_tokens_cap=40)
    expected = Engine(tiny_model, tokenizer).generate(["import os"], _greedy(12))[0].text
    with live_server(app) as url:
        scheduler = app.state.scheduler
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        results = {}
        first = threading.Thread(target=lambda: results.update(
            first=client.completions.create(model="tiny", prompt="def main():\n    return", max_tokens=30,
                                            temperature=0)))
        first.start()
        wait_until(lambda: scheduler.running == 1 and gated.calls == 1)  # its prefill waits at the gate
        second = threading.Thread(target=lambda: results.update(
            second=client.completions.create(model="tiny", prompt="import os", max_tokens=12, temperature=0)))
        second.start()
        wait_until(lambda: scheduler.waiting.qsize() == 1)  # queued while the batch runs ...
        gated.gate.set()  # ... and taken in between two of its steps
        second.join(timeout=30)
        first.join(timeout=30)
        assert results["second"].choices[0].text == expected
        assert scheduler.batches == 1 and scheduler.admitted == 1
        assert httpx.get(url + "/health").json()["joined_running_batch"] == 1


class GatedModel(torch.nn.Module):
    """Wraps a model; each forward waits until the test opens the gate, so requests pile up deterministically."""

    def __init__(self, model):
        super().__init__()
        self.model, self.config = model, model.config
        self.gate, self.calls = threading.Event(), 0

    def new_cache(self, batch, max_len):
        return self.model.new_cache(batch, max_len)

    def forward(self, *args, **kwargs):
        self.calls += 1
        assert self.gate.wait(timeout=30)
        return self.model(*args, **kwargs)


def test_full_queue_answers_429_and_disconnect_frees_the_slot(tiny_model, tokenizer):
    gated = GatedModel(tiny_model)
    app = create_app(Engine(gated, tokenizer), model_name="tiny", max_batch_size=1, max_queue=1)
    with live_server(app) as url:
        scheduler = app.state.scheduler
        # A streaming client that goes away while its request is running.
        with httpx.Client(timeout=30) as http:
            with http.stream("POST", url + "/v1/completions",
                             json={"prompt": "def", "max_tokens": 40, "stream": True, "temperature": 0}) as r:
                assert r.status_code == 200
                wait_until(lambda: scheduler.running == 1)
            # The response is closed. A second request waits in the queue (the gate is still shut) ...
            client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
            waiter = threading.Thread(target=lambda: client.completions.create(model="tiny", prompt="def",
                                                                               max_tokens=3, temperature=0))
            waiter.start()
            wait_until(lambda: scheduler.waiting.qsize() == 1)
            # ... so a third finds the queue full.
            with pytest.raises(openai.RateLimitError) as info:
                client.completions.create(model="tiny", prompt="def", max_tokens=3)
            assert info.value.status_code == 429 and info.value.body["code"] == "queue_full"
            wait_until(lambda: scheduler.active[0].seq.cancelled)  # the server noticed the disconnect
            gated.gate.set()
            waiter.join(timeout=30)
            assert not waiter.is_alive()
        # The cancelled stream stopped early instead of decoding all 40 tokens.
        assert gated.calls < 10  # without the cancel: 40 calls for the stream + 3 for the waiter


def _greedy(n):
    from slm.infer import SamplingParams

    return SamplingParams(max_tokens=n)


def test_serve_reports_a_port_it_cannot_bind(tiny_model, tokenizer):
    from slm.errors import SlmError
    from slm.infer.server import serve

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SlmError, match=f"cannot listen on 127.0.0.1:{port}.*--port"):
            serve(Engine(tiny_model, tokenizer), port=port)  # returns instead of decoding forever
