"""The teacher client against a fake server: the cache, retries and back-off, stalls, refusals, n, concurrency."""
from __future__ import annotations

import pytest

from slm.errors import SlmError
from slm.teach import Endpoint, Request, RequestRefused, Teacher
from slm.teach.client import derived_seed, request_key


def chat(text: str, **kw) -> Request:
    return Request(messages=[{"role": "user", "content": text}], max_tokens=8, **kw)


def test_answer_then_cache_serves_it_without_a_request(fake, endpoint, tmp_path):
    with Teacher(endpoint, cache=tmp_path / "c.sqlite") as t:
        a = t.ask(chat("hi", seed=1))
        assert (a.text, a.cached, a.prompt_tokens, a.completion_tokens) == ("echo: hi [seed 1]", False, 3, 2)
    with Teacher(endpoint, cache=tmp_path / "c.sqlite") as t:  # a new process would see the same file
        b = t.ask(chat("hi", seed=1))
        assert (b.text, b.cached) == (a.text, True)
        assert t.stats.sent == 0 and t.stats.cached == 1
        c = t.ask(chat("hi", seed=2))  # another seed is another request
        assert not c.cached and c.text.endswith("[seed 2]")
    assert fake.posts == 2


def test_the_key_is_the_whole_request_but_not_the_address():
    base = chat("x", seed=0)
    keys = {request_key(r.kind, r.body("m")) for r in
            [base, chat("y", seed=0), chat("x", seed=1), chat("x", seed=0, temperature=0.5),
             chat("x", seed=0, extra={"logprobs": True}), Request(prompt="x", max_tokens=8, seed=0)]}
    assert len(keys) == 6
    assert base.key("m") != base.key("other-model")
    assert base.key("m") == chat("x", seed=0).key("m")


def test_completion_requests_and_completion_text(fake, endpoint):
    with Teacher(endpoint) as t:
        assert t.ask(Request(prompt="def f(", max_tokens=4, seed=0)).text == "echo: def f( [seed 0]"


@pytest.fixture
def waits(monkeypatch):
    """The back-off's waits, recorded instead of slept."""
    recorded = []
    monkeypatch.setattr("slm.teach.client._wait", lambda stopping, seconds: recorded.append(seconds))
    return recorded


def test_5xx_and_429_are_retried_with_exponential_back_off(fake, endpoint, waits):
    fake.plan = [503, 500, 429, 502]
    with Teacher(endpoint, backoff=0.1, max_backoff=0.35) as t:
        assert t.ask(chat("a")).text.startswith("echo: a")
    assert fake.posts == 5 and t.stats.retries == 4 and t.stats.sent == 5
    # 0.1 x 2^attempt with jitter in [0.5, 1), capped at max_backoff.
    assert [0.05 <= waits[0] < 0.1, 0.1 <= waits[1] < 0.2, 0.2 <= waits[2] < 0.4, waits[3] == 0.35] == [True] * 4


def test_retry_after_is_honoured(fake, endpoint, waits):
    fake.plan, fake.retry_after = [429], "7"
    with Teacher(endpoint, backoff=0.01, max_backoff=60) as t:
        t.ask(chat("a"))
    assert waits == [7.0] and fake.posts == 2


def test_a_stalled_request_times_out_and_is_retried(fake):
    fake.plan, fake.stall_s = ["stall"], 3.0
    with Teacher(Endpoint(fake.url, fake.model, timeout=0.5), backoff=0.01) as t:
        assert t.ask(chat("a")).text.startswith("echo: a")
    assert fake.posts == 2 and t.stats.retries == 1


def test_giving_up_is_one_line_that_says_to_rerun(fake, endpoint, waits):
    fake.plan = [503] * 10
    with Teacher(endpoint, max_retries=2, backoff=0.01) as t, pytest.raises(SlmError) as e:
        t.ask(chat("a"))
    assert fake.posts == 3
    assert "failed 3 times in a row (last: 503: planned 503)" in str(e.value) and "\n" not in str(e.value)


def test_a_refused_request_raises_request_refused_and_is_not_retried(fake, endpoint):
    fake.plan = [400]
    with Teacher(endpoint) as t, pytest.raises(RequestRefused, match="400: planned 400"):
        t.ask(chat("a"))
    assert fake.posts == 1 and t.stats.refused == 1


def test_check_finds_a_wrong_key_a_missing_model_and_no_server(fake, monkeypatch):
    from slm.teach.local import free_port

    fake.key = "sekrit"
    monkeypatch.setenv("MY_KEY", "wrong")
    with pytest.raises(SlmError, match=r"refused the key \(401: Incorrect API key provided\); check \$MY_KEY"):
        Teacher(Endpoint(fake.url, fake.model, api_key_env="MY_KEY")).check()
    monkeypatch.setenv("MY_KEY", "sekrit")
    Teacher(Endpoint(fake.url, fake.model, api_key_env="MY_KEY")).check()  # the right key passes
    with pytest.raises(SlmError, match=r"does not serve model 'gpt-9' \(it serves: fake\)"):
        Teacher(Endpoint(fake.url, "gpt-9", api_key_env="MY_KEY")).check()
    with pytest.raises(SlmError, match=r"cannot reach the teacher at http://127.0.0.1:\d+/v1: .*refused"):
        Teacher(Endpoint(f"http://127.0.0.1:{free_port()}/v1", fake.model, timeout=2)).check()


def test_a_missing_key_variable_is_one_line():
    with pytest.raises(SlmError, match=r"read from \$SLM_TEST_NO_SUCH_VAR, which is not set"):
        Endpoint("http://127.0.0.1:9/v1", "m", api_key_env="SLM_TEST_NO_SUCH_VAR").api_key()


def test_n_samples_in_one_request_or_split_when_the_server_refuses_n(fake, endpoint):
    with Teacher(endpoint) as t:
        a = t.ask(chat("a", n=3, seed=5))
    assert a.texts == ["echo: a [seed 5]", "echo: a [seed 5] #1", "echo: a [seed 5] #2"] and fake.posts == 1
    fake.allow_n = False
    with Teacher(endpoint) as t:
        b = t.ask(chat("b", n=3, seed=5))
        assert len(b.texts) == 3 and b.completion_tokens == 6
        assert b.texts == [f"echo: b [seed {derived_seed(5, i)}]" for i in range(3)]
        assert len(set(b.texts)) == 3
        t.ask(chat("c", n=2, seed=5))  # once refused, later requests are split at once
    assert fake.posts == 1 + 1 + 3 + 2


def test_map_keeps_input_order_and_bounds_concurrency(fake, endpoint):
    fake.delay = 0.05
    with Teacher(endpoint, concurrency=3) as t:
        texts = [a.text for a in t.map(t.ask, [chat(str(i)) for i in range(12)])]
    assert texts == [f"echo: {i} [seed None]" for i in range(12)]
    assert fake.max_in_flight == 3


def test_an_error_in_map_stops_it(fake, endpoint):
    fake.plan = [401]  # mid-job 401: the key stopped working
    with Teacher(endpoint, concurrency=1) as t, pytest.raises(SlmError, match="refused the key"):
        list(t.map(t.ask, [chat(str(i)) for i in range(5)]))
    assert fake.posts < 5
