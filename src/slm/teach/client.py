"""The teacher client: one way to ask any OpenAI-compatible endpoint, cached, retried, concurrent, counted.

    teacher = Teacher(Endpoint("http://127.0.0.1:8000/v1", "smollm2-135m-instruct"), cache="runs/teach/cache.sqlite")
    answer = teacher.ask(Request(messages=[{"role": "user", "content": "Name a prime."}], max_tokens=16, seed=0))
    answers = list(teacher.map(teacher.ask, requests))          # bounded concurrency, results in input order

Contract other parts rely on:
  - A request is keyed by its full body (kind, model, messages or prompt, every sampling field, seed, n, extras),
    never by the endpoint's address: the same request is sent at most once per cache, and a re-run, or a job
    resumed after a kill, gets its answer from the cache (`Answer.cached`). A changed prompt is a new key; the
    other keys stay valid. Answers are stored only once complete (an SQLite transaction), so a kill loses at
    most the requests in flight.
  - Transient failures (429, 5xx, timeouts, refused or dropped connections) are retried with exponential
    back-off (a server's Retry-After is honoured), up to `max_retries` times; then `ask` raises SlmError
    (the job stops; rerunning resumes it). A request the server rejects (400, 422) raises RequestRefused, which
    a job records as that request's failure. A wrong key (401/403) or a model the server lacks (404) raises
    SlmError at once, and `check()` finds both before anything is written.
  - n samples: sent as one request; a server that refuses n > 1 (400 naming `n`) gets n requests with derived
    seeds, merged into one answer. Logprobs, response_format and any other field pass through `extra` untouched.
  - Only the standard library's sqlite3 and the `openai` package; threads give the concurrency.
"""
from __future__ import annotations

import collections
import concurrent.futures as cf
import hashlib
import json
import os
import random
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, TypeVar

from slm.errors import SlmError

T = TypeVar("T")
R = TypeVar("R")


class RequestRefused(SlmError):
    """The server rejected one request (400/422: too long a prompt, an unsupported field): that request fails."""


@dataclass
class Endpoint:
    """Where the teacher is: an OpenAI-compatible base URL (ending in /v1), a model name, and the NAME of the
    environment variable that holds the key (None: no key, as for slm serve)."""

    base_url: str
    model: str
    api_key_env: str | None = None
    timeout: float = 300.0  # seconds one request may take before it is retried

    def api_key(self) -> str:
        if not self.api_key_env:
            return "none"
        key = os.environ.get(self.api_key_env)
        if not key:
            raise SlmError(f"the teacher's key is read from ${self.api_key_env}, which is not set")
        return key


@dataclass
class Request:
    """One request: chat (`messages`) or completion (`prompt`). `extra` holds any other body field
    (logprobs, top_logprobs, response_format, top_k, ...) and is sent as given."""

    messages: list[dict] | None = None
    prompt: str | None = None
    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    n: int = 1
    stop: list[str] | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if (self.messages is None) == (self.prompt is None):
            raise SlmError("a request has either messages (chat) or a prompt (completion), not both or neither")
        if self.n < 1:
            raise SlmError(f"n must be at least 1, got {self.n}")

    @property
    def kind(self) -> str:
        return "chat" if self.messages is not None else "completion"

    def body(self, model: str) -> dict:
        body = {"model": model, "max_tokens": self.max_tokens, "temperature": self.temperature, "top_p": self.top_p}
        if self.messages is not None:
            body["messages"] = [dict(m) for m in self.messages]
        else:
            body["prompt"] = self.prompt
        for name in ("seed", "stop"):
            if getattr(self, name) is not None:
                body[name] = getattr(self, name)
        if self.n != 1:
            body["n"] = self.n
        body.update(self.extra)
        return body

    def key(self, model: str) -> str:
        return request_key(self.kind, self.body(model))


def request_key(kind: str, body: dict) -> str:
    """The cache key: a SHA-256 of the kind and the canonical JSON of the body."""
    text = json.dumps({"kind": kind, "body": body}, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class Answer:
    texts: list[str]  # one per sample
    finish_reasons: list[str | None]
    prompt_tokens: int
    completion_tokens: int
    response: dict  # the server's body (merged over the requests when n was split)
    key: str
    cached: bool = False

    @property
    def text(self) -> str:
        return self.texts[0]

    @property
    def logprobs(self) -> list:
        """Each sample's `logprobs` as the server sent it (None where it sent none)."""
        return [c.get("logprobs") for c in sorted(self.response.get("choices") or [], key=lambda c: c.get("index", 0))]


def parse_response(kind: str, response: dict, key: str, cached: bool) -> Answer:
    choices = sorted(response.get("choices") or [], key=lambda c: c.get("index", 0))
    if kind == "chat":
        texts = [((c.get("message") or {}).get("content") or "") for c in choices]
    else:
        texts = [c.get("text") or "" for c in choices]
    usage = response.get("usage") or {}
    return Answer(texts, [c.get("finish_reason") for c in choices], int(usage.get("prompt_tokens") or 0),
                  int(usage.get("completion_tokens") or 0), response, key, cached)


@dataclass
class Stats:
    """What a teacher did: requests sent (each HTTP call, retries included), answers served from the cache,
    retries, refused requests, tokens the server reported, and seconds since the first request."""

    sent: int = 0
    cached: int = 0
    retries: int = 0
    refused: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    started: float | None = None

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started if self.started else 0.0

    def summary(self) -> str:
        rate = self.completion_tokens / self.elapsed if self.elapsed else 0.0
        return (f"{self.sent} sent, {self.cached} from the cache, {self.retries} retries, {self.refused} refused; "
                f"{self.prompt_tokens:,} prompt + {self.completion_tokens:,} completion tokens "
                f"({rate:,.1f} completion tok/s over {self.elapsed:.1f} s)")


class Cache:
    """Answers on disk: one SQLite file, key -> (request, response). Safe across threads and processes."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, kind TEXT, request TEXT, "
                             "response TEXT, created REAL)")
            self._db.commit()
        except sqlite3.DatabaseError as e:
            raise SlmError(f"{self.path} is not a teacher cache ({e})") from None

    def get(self, key: str) -> dict | None:
        with self._lock:
            row = self._db.execute("SELECT response FROM answers WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, kind: str, request: dict, response: dict) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?)",
                             (key, kind, json.dumps(request), json.dumps(response), time.time()))
            self._db.commit()

    def requests(self) -> Iterator[tuple[str, str, dict]]:
        """(key, kind, request body) of every stored answer."""
        with self._lock:
            rows = self._db.execute("SELECT key, kind, request FROM answers").fetchall()
        for key, kind, request in rows:
            yield key, kind, json.loads(request)

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class Teacher:
    """A client for one endpoint. `ask` is thread-safe; `map` runs a function over items on `concurrency` threads."""

    def __init__(self, endpoint: Endpoint, cache: Cache | str | os.PathLike | None = None, concurrency: int = 4,
                 max_retries: int = 6, backoff: float = 0.5, max_backoff: float = 30.0,
                 on_answer: Callable[[Answer], None] | None = None):
        import openai

        if concurrency < 1:
            raise SlmError(f"concurrency must be at least 1, got {concurrency}")
        self.endpoint = endpoint
        self.cache = Cache(cache) if isinstance(cache, (str, os.PathLike)) else cache
        self.concurrency = concurrency
        self.max_retries, self.backoff, self.max_backoff = max_retries, backoff, max_backoff
        self.on_answer = on_answer
        self.stats = Stats()
        self._lock = threading.Lock()
        self._split_n = False  # set once the server refuses n > 1
        self._stopping = threading.Event()  # set when a map stops early: no more retries
        self._client = openai.OpenAI(base_url=endpoint.base_url, api_key=endpoint.api_key(), max_retries=0,
                                     timeout=endpoint.timeout)

    # ---- checks before a job writes anything

    def check(self) -> None:
        """Raise SlmError with one line when the endpoint is unreachable, refuses the key or lacks the model."""
        import httpx
        import openai

        where = f"the teacher at {self.endpoint.base_url}"
        try:
            listing = self._client.get("/models", cast_to=httpx.Response).json()
        except openai.APIConnectionError as e:
            raise SlmError(f"cannot reach {where}: {_cause(e)}") from None
        except (openai.AuthenticationError, openai.PermissionDeniedError) as e:
            raise SlmError(f"{where} refused the key ({e.status_code}: {_message(e)})"
                           + (f"; check ${self.endpoint.api_key_env}" if self.endpoint.api_key_env else
                              "; name the variable that holds it with api_key_env")) from None
        except openai.NotFoundError:
            return  # no /models on this server: the first request will say whether the model exists
        except openai.APIStatusError as e:
            raise SlmError(f"{where} answered /models with {e.status_code}: {_message(e)}") from None
        except ValueError:
            raise SlmError(f"{where} is not an OpenAI-compatible API (/models did not answer JSON)") from None
        names = [m.get("id") for m in (listing.get("data") or []) if isinstance(m, dict)]
        if names and self.endpoint.model not in names:
            raise SlmError(f"{where} does not serve model {self.endpoint.model!r} (it serves: {', '.join(names)})")

    # ---- one request

    def ask(self, request: Request) -> Answer:
        """The answer to one request: from the cache, or from the server (then stored)."""
        body = request.body(self.endpoint.model)
        key = request_key(request.kind, body)
        with self._lock:
            if self.stats.started is None:
                self.stats.started = time.perf_counter()
        stored = self.cache.get(key) if self.cache is not None else None
        if stored is not None:
            answer = parse_response(request.kind, stored, key, cached=True)
            with self._lock:
                self.stats.cached += 1
        else:
            try:
                response = self._fetch(request.kind, body)
            except RequestRefused:
                with self._lock:
                    self.stats.refused += 1
                raise
            if self.cache is not None:
                self.cache.put(key, request.kind, body, response)
            answer = parse_response(request.kind, response, key, cached=False)
            with self._lock:
                self.stats.prompt_tokens += answer.prompt_tokens
                self.stats.completion_tokens += answer.completion_tokens
        if self.on_answer:
            self.on_answer(answer)
        return answer

    def _fetch(self, kind: str, body: dict) -> dict:
        n = body.get("n", 1)
        if n > 1 and self._split_n:
            return self._fetch_split(kind, body)
        try:
            return self._post(kind, body)
        except RequestRefused as e:
            if n > 1 and e.param == "n":
                self._split_n = True
                return self._fetch_split(kind, body)
            raise

    def _fetch_split(self, kind: str, body: dict) -> dict:
        """n samples as n requests with n=1 and seeds derived from the request's seed, merged into one body."""
        parts = []
        for i in range(body["n"]):
            one = {k: v for k, v in body.items() if k != "n"}
            if body.get("seed") is not None:
                one["seed"] = derived_seed(body["seed"], i)
            parts.append(self._post(kind, one))
        choices = [dict(c, index=i) for i, p in enumerate(parts) for c in (p.get("choices") or [])[:1]]
        usage = {k: sum(int((p.get("usage") or {}).get(k) or 0) for p in parts)
                 for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
        return dict(parts[0], choices=choices, usage=usage, split_into=len(parts))

    def _post(self, kind: str, body: dict) -> dict:
        import httpx
        import openai

        path = "/chat/completions" if kind == "chat" else "/completions"
        where = f"the teacher at {self.endpoint.base_url}"
        for attempt in range(self.max_retries + 1):
            with self._lock:
                self.stats.sent += 1
            try:
                response = self._client.post(path, body=body, cast_to=httpx.Response)
                try:
                    return response.json()
                except ValueError:
                    failure, wait = "the answer was not JSON", None
            except (openai.AuthenticationError, openai.PermissionDeniedError) as e:
                raise SlmError(f"{where} refused the key ({e.status_code}: {_message(e)})") from None
            except openai.NotFoundError as e:
                raise SlmError(f"{where} answered 404 for model {self.endpoint.model!r}: {_message(e)}") from None
            except (openai.RateLimitError, openai.InternalServerError) as e:
                failure, wait = f"{e.status_code}: {_message(e)}", _retry_after(e)
            except openai.APIStatusError as e:
                if e.status_code in (408, 409) or e.status_code >= 500:
                    failure, wait = f"{e.status_code}: {_message(e)}", _retry_after(e)
                else:
                    refused = RequestRefused(f"{e.status_code}: {_message(e)}")
                    refused.param = (e.body or {}).get("param") if isinstance(e.body, dict) else None
                    raise refused from None
            except openai.APIConnectionError as e:  # refused, dropped, or timed out (APITimeoutError)
                failure, wait = _cause(e), None
            if attempt == self.max_retries or self._stopping.is_set():
                break
            with self._lock:
                self.stats.retries += 1
            delay = self.backoff * 2 ** attempt * (0.5 + random.random() / 2)
            _wait(self._stopping, min(self.max_backoff, max(delay, wait or 0.0)))
        raise SlmError(f"{where} failed {self.max_retries + 1} times in a row (last: {failure}); "
                       "rerun to resume where it stopped")

    # ---- many requests

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        """fn(item) for each item on `concurrency` threads, yielded in input order. At most 2 x concurrency
        items are in flight or waiting to be yielded. An exception from fn (or Ctrl-C) stops the map and is
        raised here at once: waiting items are dropped and requests in flight are not retried."""
        window = 2 * self.concurrency
        pending: collections.deque[cf.Future] = collections.deque()
        pool = cf.ThreadPoolExecutor(self.concurrency, thread_name_prefix="slm-teach")
        finished = False
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                while len(pending) >= window or (pending and pending[0].done()):
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
            finished = True
        finally:
            if not finished:
                self._stopping.set()
            pool.shutdown(wait=finished, cancel_futures=True)

    def close(self) -> None:
        self._client.close()
        if self.cache is not None:
            self.cache.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _wait(stopping: threading.Event, seconds: float) -> None:
    """The back-off's wait; it ends early when the teacher is stopping (tests record it instead)."""
    stopping.wait(seconds)


def derived_seed(seed: int, i: int) -> int:
    """The seed of sample i of a request split into n single-sample requests (sample 0 keeps the seed)."""
    if i == 0:
        return seed
    return int.from_bytes(hashlib.sha256(f"{seed}:{i}".encode()).digest()[:4], "little")


def _message(e) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        inner = body.get("error") if isinstance(body.get("error"), dict) else body
        if inner.get("message"):
            return str(inner["message"])
    return str(getattr(e, "message", e)).splitlines()[0]


def _cause(e: BaseException) -> str:
    """The root of a connection error, in a few words (the SDK's own message is just 'Connection error.')."""
    import openai

    if isinstance(e, openai.APITimeoutError):
        return "timed out"
    while e.__cause__ is not None or e.__context__ is not None:
        e = e.__cause__ or e.__context__
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0]


def _retry_after(e) -> float | None:
    try:
        value = e.response.headers.get("retry-after")
        return float(value) if value is not None else None
    except (AttributeError, ValueError):
        return None
