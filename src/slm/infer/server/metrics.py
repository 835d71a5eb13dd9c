"""/metrics in the Prometheus text format (prometheus-client), one registry per app so tests and several
apps in one process never share counters.

    slm_requests_total{endpoint, status}     every HTTP answer, 4xx included (counted at the ASGI layer)
    slm_queue_depth, slm_running_rows        read from the scheduler when scraped
    slm_prompt_tokens_total, slm_completion_tokens_total
    slm_time_to_first_token_seconds          request arrival -> first generated token
    slm_time_per_output_token_seconds        (finish - first token) / (tokens - 1), per row with >= 2 tokens
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST  # noqa: F401  (re-exported for the endpoint)

ENDPOINTS = {"/v1/completions", "/v1/chat/completions", "/v1/embeddings", "/v1/models", "/health", "/metrics", "/"}
_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self, scheduler):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("slm_requests", "HTTP requests answered", ["endpoint", "status"], registry=r)
        Gauge("slm_queue_depth", "requests waiting for a batch", registry=r).set_function(lambda: scheduler.queued)
        Gauge("slm_running_rows", "rows being decoded", registry=r).set_function(lambda: scheduler.running)
        self.prompt_tokens = Counter("slm_prompt_tokens", "prompt tokens of finished rows", registry=r)
        self.completion_tokens = Counter("slm_completion_tokens", "generated tokens of finished rows", registry=r)
        self.ttft = Histogram("slm_time_to_first_token_seconds", "arrival to first generated token",
                              buckets=_LATENCY, registry=r)
        self.tpot = Histogram("slm_time_per_output_token_seconds", "decoding time per token after the first",
                              buckets=(0.001,) + _LATENCY[:-2], registry=r)

    def answered(self, path: str, status: int) -> None:
        self.requests.labels(path if path in ENDPOINTS else "other", str(status)).inc()

    def row_done(self, prompt_tokens: int, completion_tokens: int, arrived: float, first: float | None,
                 finished: float) -> None:
        self.prompt_tokens.inc(prompt_tokens)
        self.completion_tokens.inc(completion_tokens)
        if first is not None:
            self.ttft.observe(first - arrived)
            if completion_tokens > 1:
                self.tpot.observe((finished - first) / (completion_tokens - 1))

    def render(self) -> bytes:
        return generate_latest(self.registry)
