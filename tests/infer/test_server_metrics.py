"""/metrics: the Prometheus text format, parsed back with prometheus-client's own parser."""
from __future__ import annotations

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families
from server_util import live_server

from slm.infer import Engine
from slm.infer.server import create_app

pytestmark = pytest.mark.slow


def scrape(url) -> dict:
    r = httpx.get(url + "/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def test_metrics_count_requests_tokens_and_latencies(tiny_model, tokenizer):
    app = create_app(Engine(tiny_model, tokenizer), model_name="tiny", max_tokens_cap=40)
    with live_server(app) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        a = client.completions.create(model="tiny", prompt="def main", max_tokens=6, temperature=0, n=2)
        list(client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=4,
                                            stream=True))
        with pytest.raises(openai.BadRequestError):
            client.completions.create(model="tiny", prompt="def", max_tokens=99)
        m = scrape(url)
    ok = ("slm_requests_total", (("endpoint", "/v1/completions"), ("status", "200")))
    assert m[ok] == 1 and m[("slm_requests_total", (("endpoint", "/v1/completions"), ("status", "400")))] == 1
    assert m[("slm_requests_total", (("endpoint", "/v1/chat/completions"), ("status", "200")))] == 1
    assert m[("slm_prompt_tokens_total", ())] >= 2 * a.usage.prompt_tokens
    assert m[("slm_completion_tokens_total", ())] >= a.usage.completion_tokens + 1
    assert m[("slm_time_to_first_token_seconds_count", ())] == 3  # one per row: 2 + 1
    assert m[("slm_time_per_output_token_seconds_count", ())] >= 2
    assert m[("slm_queue_depth", ())] == 0 and m[("slm_running_rows", ())] == 0
