"""A fake OpenAI-compatible server on a loopback port: it answers deterministically, counts every request by its
body, and can be told to fail (5xx), rate-limit (429), stall, demand a key, or refuse n > 1."""
from __future__ import annotations

import collections
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


def canonical(body: dict) -> str:
    return json.dumps(body, sort_keys=True)


class FakeTeacher:
    def __init__(self, model: str = "fake", key: str | None = None, delay: float = 0.0, allow_n: bool = True):
        self.model, self.key, self.delay, self.allow_n = model, key, delay, allow_n
        self.counts: collections.Counter = collections.Counter()  # canonical body -> times received
        self.posts = 0
        self.plan: list = []  # actions for the next POSTs, in order: int status, "stall", or "ok"
        self.stall_s = 2.0
        self.retry_after: str | None = None
        self.answer = lambda body: "echo: " + (body["messages"][-1]["content"] if "messages" in body
                                              else body["prompt"]) + f" [seed {body.get('seed')}]"
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        self.server = None

    canonical = staticmethod(canonical)  # how `counts` keys a body

    # the HTTP side

    def handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, status: int, body: dict, headers: dict | None = None):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def error(self, status: int, message: str, param=None, headers=None):
                self.reply(status, {"error": {"message": message, "type": "x", "param": param, "code": None}}, headers)

            def authorised(self) -> bool:
                if fake.key and self.headers.get("Authorization") != f"Bearer {fake.key}":
                    self.error(401, "Incorrect API key provided")
                    return False
                return True

            def do_GET(self):
                if not self.authorised():
                    return
                if self.path == "/v1/models":
                    self.reply(200, {"object": "list", "data": [{"id": fake.model, "object": "model"}]})
                else:
                    self.error(404, "no such path")

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if not self.authorised():
                    return
                with fake.lock:
                    fake.posts += 1
                    fake.counts[canonical(body)] += 1
                    action = fake.plan.pop(0) if fake.plan else "ok"
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    if action == "stall":
                        time.sleep(fake.stall_s)
                        return
                    if isinstance(action, int):
                        headers = {"Retry-After": fake.retry_after} if action == 429 and fake.retry_after else None
                        return self.error(action, f"planned {action}", headers=headers)
                    if body.get("model") != fake.model:
                        return self.error(404, f"The model {body.get('model')} does not exist", param="model")
                    if body.get("n", 1) > 1 and not fake.allow_n:
                        return self.error(400, "n: Input should be less than or equal to 1", param="n")
                    if fake.delay:
                        time.sleep(fake.delay)
                    chat = self.path == "/v1/chat/completions"
                    text = fake.answer(body)
                    choices = []
                    for i in range(body.get("n", 1)):
                        t = text if i == 0 else f"{text} #{i}"
                        choices.append({"index": i, "finish_reason": "stop",
                                        **({"message": {"role": "assistant", "content": t}} if chat else {"text": t})})
                        if body.get("logprobs"):
                            choices[-1]["logprobs"] = {"content": [{"token": t[:1], "logprob": -0.5}]}
                    self.reply(200, {"id": "x", "object": "chat.completion" if chat else "text_completion",
                                     "model": fake.model, "choices": choices,
                                     "usage": {"prompt_tokens": 3, "completion_tokens": 2 * len(choices),
                                               "total_tokens": 3 + 2 * len(choices)}})
                finally:
                    with fake.lock:
                        fake.in_flight -= 1

        return Handler

    def start(self) -> str:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake():
    server = FakeTeacher()
    server.url = server.start()
    yield server
    server.stop()


@pytest.fixture
def endpoint(fake):
    from slm.teach import Endpoint

    return Endpoint(fake.url, fake.model, timeout=5)
