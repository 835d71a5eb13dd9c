"""A scripted teacher: slm.teach's Teacher with the HTTP call replaced by a deterministic function of the body.

    with ScriptedTeacher(answer) as teacher:       # answer(body) -> text, or (text, chat logprobs content)
        reply = teacher.ask(Request(messages=[...], max_tokens=64, seed=0))

Everything but the network is the real client (the request-keyed cache, token accounting, `map`'s concurrency),
so a recipe run on it takes the same path as one on a model: the smoke runs and tests use one, and a recipe's
controlled run uses one to take the teacher's quality out of what it measures. Token counts are words.
"""
from __future__ import annotations

from typing import Callable

from slm.teach.client import Endpoint, Teacher

SCRIPTED_MODEL = "scripted"
Answerer = Callable[[dict], "str | tuple[str, list | None]"]


def echo(body: dict) -> str:
    """The default answer: the last user message (or the prompt), echoed."""
    return "echo: " + last_user_text(body)[:200]


def last_user_text(body: dict) -> str:
    return next((m["content"] for m in reversed(body.get("messages") or []) if m["role"] == "user"),
                body.get("prompt") or "")


class ScriptedTeacher(Teacher):
    def __init__(self, answer: Answerer = echo, cache=None, concurrency: int = 2, **options):
        super().__init__(Endpoint("http://scripted.invalid/v1", SCRIPTED_MODEL), cache=cache,
                         concurrency=concurrency, **options)
        self.answer = answer

    def check(self) -> None:
        return None

    def _post(self, kind: str, body: dict) -> dict:
        with self._lock:
            self.stats.sent += 1
        reply = self.answer(body)
        text, logprobs = reply if isinstance(reply, tuple) else (reply, None)
        prompt_words = sum(len(m["content"].split()) for m in body.get("messages") or []) or \
            len(str(body.get("prompt", "")).split())
        if kind == "chat":
            choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text},
                      "logprobs": {"content": logprobs} if logprobs else None}
        else:  # a completion request gets a completion-shaped reply
            choice = {"index": 0, "finish_reason": "stop", "text": text, "logprobs": None}
        return {"id": "scripted", "object": "chat.completion" if kind == "chat" else "text_completion",
                "model": SCRIPTED_MODEL, "choices": [choice],
                "usage": {"prompt_tokens": prompt_words, "completion_tokens": len(text.split()),
                          "total_tokens": prompt_words + len(text.split())}}
