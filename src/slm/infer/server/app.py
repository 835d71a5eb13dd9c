"""An OpenAI-compatible HTTP server over the engine (FastAPI + uvicorn).

    POST /v1/completions        prompt (text or token ids) -> text; "stream": true sends server-sent events
    POST /v1/chat/completions   messages, rendered with the tokenizer's chat template (ChatML); streaming too
    GET  /v1/models, GET /health

Batching: requests go into a bounded queue (full -> 429). One scheduler (on a thread of its own in an app
from `create_app`; on the main thread under `serve`, which answers HTTP on another) takes up to max_batch_size
waiting requests at once and runs them through `Engine.steps` as one batch: prompts are prefilled together
and decoded in lock-step; a finished, failed or cancelled row leaves the batch at once, and requests that
arrive meanwhile join the running batch between two steps when there is a free row and room in its cache
(continuous batching; the others start the next batch). A client that disconnects cancels its sequence:
it is dropped from the running batch at the next step, or skipped if still queued.

Validation: bodies are pydantic models; a bad field, a prompt longer than the context, or max_tokens over
the cap answers 400 with an OpenAI-style body {"error": {"message", "type", "param", "code"}}.
"""
from __future__ import annotations

import asyncio
import collections
import json
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from slm.errors import SlmError
from slm.infer.engine import Engine, Sequence
from slm.infer.sampling import SamplingParams


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 type_: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type_

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status)


# ---- request bodies ----

class _Sampling(BaseModel):
    model_config = ConfigDict(extra="ignore")  # clients send fields we do not use (user, ...)

    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=0)  # extensions, as in vLLM (the openai client sends them via extra_body)
    min_p: float = Field(0.0, ge=0, le=1)
    repetition_penalty: float = Field(1.0, gt=0)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = Field(1, ge=1, le=1)
    stream: bool = False
    stream_options: dict | None = None


class CompletionRequest(_Sampling):
    prompt: str | list[int] = Field(min_length=1)
    echo: bool = Field(False, description="not supported")
    logprobs: int | None = Field(None, description="not supported")


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)


# ---- the scheduler ----

@dataclass
class Job:
    seq: Sequence
    loop: asyncio.AbstractEventLoop
    stream: bool = False  # a non-streaming request is woken only by its last event
    events: asyncio.Queue = field(default_factory=asyncio.Queue)

    def push(self, item) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, item)


class Scheduler:
    def __init__(self, engine: Engine, max_batch_size: int = 16, max_queue: int = 64, gather_s: float = 0.01):
        self.engine, self.max_batch_size, self.gather_s = engine, max_batch_size, gather_s
        self.waiting: queue.Queue[Job] = queue.Queue(maxsize=max_queue)
        self.running = 0
        self.active: list[Job] = []  # the batch being decoded
        self.held: collections.deque[Job] = collections.deque()  # taken from the queue, no room in the batch
        self.batches = 0  # batches started, requests that joined one already running, the largest batch
        self.admitted = 0  # (tests and /health read them)
        self.largest_batch = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.run, name="slm-scheduler", daemon=True)

    def start(self) -> None:
        """Run the scheduler on a thread of its own (what an app started by create_app does)."""
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def submit(self, job: Job) -> None:
        try:
            self.waiting.put_nowait(job)
        except queue.Full:
            raise ApiError(429, "the server is busy: the request queue is full; retry later",
                           code="queue_full", type_="rate_limit_error") from None

    def _next_job(self, timeout: float = 0.0) -> Job | None:
        """The oldest waiting job: first those a running batch had no room for, then the queue."""
        if self.held:
            return self.held.popleft()
        try:
            return self.waiting.get(timeout=timeout) if timeout > 0 else self.waiting.get_nowait()
        except queue.Empty:
            return None

    def _take_batch(self) -> list[Job]:
        first = self._next_job(timeout=0.05)
        if first is None:
            return []
        batch = [first]
        deadline = time.monotonic() + self.gather_s  # a moment for requests sent together to ride together
        while len(batch) < self.max_batch_size:
            job = self._next_job(timeout=max(1e-3, deadline - time.monotonic()))
            if job is None:
                break
            batch.append(job)
        return [job for job in batch if not job.seq.cancelled]

    def _admitter(self, jobs: list[Job]):
        """The engine's `admit` callback for this batch: waiting jobs that fit join it (continuous batching)."""
        def admit(free: int, max_prompt_len: int, max_new_tokens: int) -> list:
            joined, no_room = [], []
            while len(joined) < free:
                job = self._next_job()
                if job is None:
                    break
                if job.seq.cancelled:
                    continue
                if len(job.seq.prompt_ids) <= max_prompt_len and job.seq.params.max_tokens <= max_new_tokens:
                    job.seq.index = len(jobs)
                    jobs.append(job)
                    joined.append(job.seq)
                else:
                    no_room.append(job)
            self.held.extendleft(reversed(no_room))  # first in line for the next batch, in their order
            if joined:
                self.admitted += len(joined)
                self.running = sum(not job.seq.finished for job in jobs)
                self.largest_batch = max(self.largest_batch, self.running)
            return joined
        return admit

    def run(self, until: Callable[[], bool] | None = None) -> None:
        """Take batches and decode them until stop() (or until `until()` is true), on the calling thread."""
        while not self._stop.is_set() and not (until and until()):
            jobs = self._take_batch()
            if not jobs:
                continue
            for i, job in enumerate(jobs):
                job.seq.index = i
            self.running, self.active = len(jobs), jobs
            self.batches += 1
            self.largest_batch = max(self.largest_batch, len(jobs))
            try:
                for events in self.engine.steps([job.seq for job in jobs], admit=self._admitter(jobs)):
                    for event in events:
                        job = jobs[event.index]
                        if job.stream or event.finish_reason:
                            job.push(event)
            except Exception as e:  # a failing batch answers its requests with an error; the server stays up
                for job in jobs:
                    if not job.seq.finished:
                        job.push(e)
            finally:
                self.running, self.active = 0, []


# ---- the app ----

def create_app(engine: Engine, model_name: str = "slm", max_batch_size: int = 16, max_queue: int = 64,
               max_tokens_cap: int = 512, scheduler_thread: bool = True) -> FastAPI:
    """An app that owns a Scheduler for `engine` (app.state.scheduler). With scheduler_thread, the app's
    lifespan runs it on a thread of its own; otherwise the caller runs it (`serve` does, on the main thread)."""
    from contextlib import asynccontextmanager

    scheduler = Scheduler(engine, max_batch_size, max_queue)
    context = engine.max_seq_len
    tokenizer = engine.tokenizer

    @asynccontextmanager
    async def lifespan(app):
        if scheduler_thread:
            scheduler.start()
        yield
        scheduler.stop()

    app = FastAPI(title="slm", lifespan=lifespan)
    app.state.scheduler = scheduler

    @app.exception_handler(ApiError)
    async def _api_error(request, exc: ApiError):
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        return ApiError(400, f"{where or 'body'}: {first.get('msg', 'invalid request')}", param=where,
                        code="invalid_value").response()

    @app.get("/health")
    async def health():
        return {"status": "ok", "queued": scheduler.waiting.qsize() + len(scheduler.held), "running": scheduler.running,
                "batches": scheduler.batches, "largest_batch": scheduler.largest_batch,
                "joined_running_batch": scheduler.admitted}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": 0, "owned_by": "slm"}]}

    def check_model(body: _Sampling) -> None:
        if body.model not in (None, model_name):
            raise ApiError(404, f"model {body.model!r} does not exist; this server serves {model_name!r}",
                           param="model", code="model_not_found")

    def sampling(body: _Sampling, prompt_len: int, max_tokens: int | None, default: int, stop_ids=()) -> SamplingParams:
        room = context - prompt_len if context else None
        if max_tokens is None:
            max_tokens = min(default, max_tokens_cap, room) if room is not None else min(default, max_tokens_cap)
        if max_tokens > max_tokens_cap:
            raise ApiError(400, f"max_tokens is {max_tokens}, over this server's cap of {max_tokens_cap}",
                           param="max_tokens", code="max_tokens_too_large")
        if room is not None and (room < 1 or max_tokens > room):
            raise ApiError(400, f"this model's maximum context length is {context} tokens, but {prompt_len + max_tokens} "
                           f"were requested ({prompt_len} in the prompt, {max_tokens} for the completion)",
                           param="messages" if isinstance(body, ChatRequest) else "prompt",
                           code="context_length_exceeded")
        stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        try:
            return SamplingParams(max_tokens=max_tokens, temperature=body.temperature, top_k=body.top_k,
                                  top_p=body.top_p, min_p=body.min_p, repetition_penalty=body.repetition_penalty,
                                  stop=stop, seed=body.seed, stop_token_ids=list(stop_ids))
        except SlmError as e:
            raise ApiError(400, str(e), code="invalid_value") from None

    def new_job(prompt, params: SamplingParams, stream: bool) -> Job:
        try:
            seq = engine.new_sequence(prompt, params, track_text=stream)
        except SlmError as e:
            raise ApiError(400, str(e), param="prompt", code="invalid_prompt") from None
        job = Job(seq, asyncio.get_running_loop(), stream)
        scheduler.submit(job)
        return job

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        check_model(body)
        if body.echo or body.logprobs:
            raise ApiError(400, "echo and logprobs are not supported", param="echo" if body.echo else "logprobs")
        if isinstance(body.prompt, str) and tokenizer is None:
            raise ApiError(400, "this server has no tokenizer: send the prompt as token ids", param="prompt")
        # Token ids are checked (range, emptiness) when the sequence is built, after the length check.
        prompt_ids = tokenizer.encode(body.prompt) if isinstance(body.prompt, str) else list(body.prompt)
        params = sampling(body, len(prompt_ids), body.max_tokens, 16)
        job = new_job(prompt_ids, params, body.stream)
        return await respond(job, request, body, "text_completion", chat=False)

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest, request: Request):
        check_model(body)
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise ApiError(400, "this model has no chat template; use /v1/completions", param="messages")
        messages = [m.model_dump() for m in body.messages]
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        prompt_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        end = tokenizer.convert_tokens_to_ids("<|im_end|>")
        stop_ids = [end] if isinstance(end, int) and end != tokenizer.unk_token_id else []
        params = sampling(body, len(prompt_ids), body.max_completion_tokens or body.max_tokens,
                          max_tokens_cap, stop_ids)
        job = new_job(prompt_ids, params, body.stream)
        return await respond(job, request, body, "chat.completion", chat=True)

    async def respond(job: Job, request: Request, body: _Sampling, kind: str, chat: bool):
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        created = int(time.time())
        head = {"id": rid, "created": created, "model": model_name}
        if body.stream:
            usage = bool((body.stream_options or {}).get("include_usage"))
            return StreamingResponse(sse(job, head, kind + (".chunk" if chat else ""), chat, usage),
                                     media_type="text/event-stream")
        try:
            while True:
                try:
                    item = await asyncio.wait_for(job.events.get(), timeout=0.25)
                except asyncio.TimeoutError:
                    if await request.is_disconnected():
                        job.seq.cancelled = True
                        return JSONResponse({}, status_code=499)
                    continue
                if isinstance(item, Exception):
                    raise ApiError(500, f"generation failed: {item}", type_="server_error")
                if item.finish_reason:
                    break
        finally:
            if not job.seq.finished:
                job.seq.cancelled = True
        done = job.seq.completion()
        choice = {"index": 0, "finish_reason": done.finish_reason}
        if chat:
            choice["message"] = {"role": "assistant", "content": done.text}
        else:
            choice.update(text=done.text, logprobs=None)
        n_out = len(done.token_ids)
        return dict(head, object=kind, choices=[choice], usage={
            "prompt_tokens": done.prompt_tokens, "completion_tokens": n_out, "total_tokens": done.prompt_tokens + n_out})

    async def sse(job: Job, head: dict, kind: str, chat: bool, usage: bool):
        def chunk(text: str | None, finish: str | None, first: bool = False) -> str:
            if chat:
                delta = {"role": "assistant", "content": ""} if first else ({"content": text} if text else {})
                choice = {"index": 0, "delta": delta, "finish_reason": finish}
            else:
                choice = {"index": 0, "text": text or "", "finish_reason": finish, "logprobs": None}
            return "data: " + json.dumps(dict(head, object=kind, choices=[choice])) + "\n\n"

        try:
            if chat:
                yield chunk(None, None, first=True)
            while True:
                item = await job.events.get()
                if isinstance(item, Exception):
                    error = {"error": {"message": f"generation failed: {item}", "type": "server_error"}}
                    yield "data: " + json.dumps(error) + "\n\n"
                    return
                if item.text or item.finish_reason:
                    yield chunk(item.text, item.finish_reason)
                if item.finish_reason:
                    break
            if usage:
                done = job.seq.completion()
                n_out = len(done.token_ids)
                yield "data: " + json.dumps(dict(head, object=kind, choices=[], usage={
                    "prompt_tokens": done.prompt_tokens, "completion_tokens": n_out,
                    "total_tokens": done.prompt_tokens + n_out})) + "\n\n"
            yield "data: [DONE]\n\n"
        finally:
            if not job.seq.finished:  # the client went away: free the row
                job.seq.cancelled = True

    return app


def serve(engine: Engine, host: str = "127.0.0.1", port: int = 8000, **app_kwargs) -> None:
    """Run the app with uvicorn until interrupted.

    HTTP runs on a background thread and the scheduler, which decodes, on this (the main) thread: on CPU,
    torch.compile's kernels ran 1.6-2.8x slower on a second thread than on the main one (OpenMP gives each
    thread its own team and shortens its spin-waits once there are more threads than cores;
    docs/benchmarks.md), while HTTP handling does not care which thread it is on.
    """
    import socket

    import uvicorn

    app = create_app(engine, scheduler_thread=False, **app_kwargs)
    # Bound here, so that a port in use is one clear error before uvicorn starts.
    try:
        listening = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    except OSError as error:
        raise SlmError(f"cannot listen on {host}:{port}: {error.strerror or error} (is another server using the "
                       "port? choose another with --port)") from error
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="info"))
    http = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, name="slm-http", daemon=True)
    http.start()
    try:
        app.state.scheduler.run(until=lambda: not http.is_alive())
    except KeyboardInterrupt:
        pass
    finally:
        server.should_exit = True
        http.join(timeout=10)
    if not server.started:
        raise SlmError(f"the HTTP server did not start on {host}:{port} (see the log above)")
