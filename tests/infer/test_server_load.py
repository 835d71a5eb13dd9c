"""A bounded load test on loopback: 300 requests at 32-way concurrency mixing streaming, non-streaming, n = 2,
json_schema and streams the client cuts off. 0 failures (429s are retried, a bounded number of times), and no
leaked rows: the scheduler's running count and queue return to 0."""
from __future__ import annotations

import asyncio
import json
import time

import httpx
import jsonschema
import pytest
from server_util import live_server, wait_until

from slm.infer import Engine
from slm.infer.server import create_app

pytestmark = pytest.mark.slow
REQUESTS, CONCURRENCY, RETRIES = 300, 32, 200
SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}, "n": {"type": "integer", "minimum": 0,
                                                                           "maximum": 9}}, "required": ["ok", "n"]}


def request_for(i: int) -> tuple[str, str, dict]:
    kind = ("plain", "stream", "n2", "schema", "cut")[i % 5]
    chat = {"messages": [{"role": "user", "content": f"hi {i}"}], "max_tokens": 6, "seed": i}
    if kind == "plain":
        return kind, "/v1/completions", {"prompt": f"def f{i}", "max_tokens": 6, "temperature": 0}
    if kind == "stream":
        return kind, "/v1/chat/completions", {**chat, "stream": True}
    if kind == "n2":
        return kind, "/v1/completions", {"prompt": f"import m{i}", "max_tokens": 6, "n": 2, "seed": i}
    if kind == "schema":
        return kind, "/v1/chat/completions", {**chat, "max_tokens": 20, "response_format": {
            "type": "json_schema", "json_schema": {"name": "s", "schema": SCHEMA}}}
    return kind, "/v1/completions", {"prompt": f"class C{i}", "max_tokens": 30, "stream": True}


async def one(http: httpx.AsyncClient, i: int, stats: dict) -> None:
    kind, path, body = request_for(i)
    for _ in range(RETRIES):
        if kind in ("stream", "cut"):
            async with http.stream("POST", path, json=body) as r:
                if r.status_code == 429:
                    stats["429"] += 1
                    await asyncio.sleep(0.02)
                    continue
                assert r.status_code == 200, (kind, r.status_code, await r.aread())
                events = 0
                async for line in r.aiter_lines():
                    if line.startswith("data: "):
                        events += 1
                        assert "error" not in line, line
                        if kind == "cut" and events == 2:
                            break  # the client goes away mid-stream
                assert events >= 2
            stats[kind] += 1
            return
        r = await http.post(path, json=body)
        if r.status_code == 429:
            stats["429"] += 1
            await asyncio.sleep(0.02)
            continue
        assert r.status_code == 200, (kind, r.status_code, r.text)
        choices = r.json()["choices"]
        assert len(choices) == (2 if kind == "n2" else 1)
        if kind == "schema":
            jsonschema.validate(json.loads(choices[0]["message"]["content"]), SCHEMA)
        stats[kind] += 1
        return
    raise AssertionError(f"request {i} still refused with 429 after {RETRIES} tries")


async def drive(url: str) -> dict:
    stats = {"plain": 0, "stream": 0, "n2": 0, "schema": 0, "cut": 0, "429": 0}
    limit = asyncio.Semaphore(CONCURRENCY)
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        async def bounded(i):
            async with limit:
                await one(http, i, stats)
        await asyncio.gather(*(bounded(i) for i in range(REQUESTS)))
    return stats


def test_300_mixed_requests_at_32_way_concurrency(tiny_model, tokenizer):
    app = create_app(Engine(tiny_model, tokenizer, max_batch_size=16), model_name="tiny", max_batch_size=16,
                     max_queue=8, max_tokens_cap=40)
    with live_server(app) as url:
        start = time.perf_counter()
        stats = asyncio.run(drive(url))
        elapsed = time.perf_counter() - start
        scheduler = app.state.scheduler
        wait_until(lambda: scheduler.running == 0 and scheduler.queued == 0, timeout=30)
        health = httpx.get(url + "/health").json()
        metrics = httpx.get(url + "/metrics").text
    assert sum(v for k, v in stats.items() if k != "429") == REQUESTS, stats
    assert health["running"] == 0 and health["queued"] == 0
    assert stats["429"] > 0  # the queue was full at times (max_queue 8 < 32 clients), and the retries went through
    assert 'status="500"' not in metrics
    print(f"\n{REQUESTS} requests in {elapsed:.1f} s, {stats}")
