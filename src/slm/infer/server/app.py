"""The HTTP side: the FastAPI app over the engine and its scheduler, and `serve`, which runs it with uvicorn.

Every refusal is an OpenAI-style body {"error": {"message", "type", "param", "code"}} with a 4xx status:
validation errors, bad JSON, unknown routes, a wrong key (401), a body over the cap (413), a full queue (429),
a request past its time (408). A 5xx means a bug or a failed batch, never a malformed request.
"""
from __future__ import annotations

import asyncio
import base64
import hmac
import html
import json
import math
import time
import threading
import uuid
from importlib import resources

import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from slm.errors import SlmError
from slm.infer.engine import Engine
from slm.infer.sampling import SamplingParams
from slm.infer.server.metrics import CONTENT_TYPE_LATEST, Metrics
from slm.infer.server.schemas import (SEED_MAX, ApiError, ChatRequest, CompletionRequest, EmbeddingRequest,
                                      _Sampling, message_text)
from slm.infer.server.scheduler import Job, Scheduler

OPEN_PATHS = ("/health", "/")  # no key needed: liveness probes, and the playground page (its requests carry it)


class Guard:
    """ASGI middleware, outermost: the API key, the body-size cap, and the request counter of /metrics.
    The body is read here in full (it is capped) so that an oversized one is refused before any parsing."""

    def __init__(self, app, api_key: str | None, max_body_bytes: int, metrics: Metrics):
        self.app, self.metrics, self.max_body_bytes = app, metrics, max_body_bytes
        self.state = app.state  # the scheduler and metrics, for tests and `serve`
        self.expected = f"Bearer {api_key}".encode() if api_key else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]

        async def counted_send(message):
            if message["type"] == "http.response.start":
                self.metrics.answered(path, message["status"])
            await send(message)

        headers = dict(scope["headers"])
        if self.expected is not None and path not in OPEN_PATHS:
            given = headers.get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                error = ApiError(401, "a valid API key is needed: send the header 'Authorization: Bearer KEY'",
                                 code="invalid_api_key")
                return await error.response({"WWW-Authenticate": "Bearer"})(scope, receive, counted_send)
        too_large = ApiError(413, f"the request body is over this server's cap of {self.max_body_bytes} bytes",
                             code="request_too_large")
        try:
            if int(headers.get(b"content-length", b"0")) > self.max_body_bytes:
                return await too_large.response()(scope, receive, counted_send)
        except ValueError:
            return await ApiError(400, "bad Content-Length header").response()(scope, receive, counted_send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_body_bytes:
                return await too_large.response()(scope, receive, counted_send)
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replayed():
            return replay.pop() if replay else await receive()

        await self.app(scope, replayed, counted_send)


def create_app(engine: Engine, model_name: str = "slm", max_batch_size: int = 16, max_queue: int = 64,
               max_tokens_cap: int = 512, scheduler_thread: bool = True, api_key: str | None = None,
               max_body_bytes: int = 1 << 20, request_timeout_s: float = 600.0,
               max_concurrent: int | None = None):
    """An ASGI app that owns a Scheduler for `engine` (app.state.scheduler). With scheduler_thread, the app's
    lifespan runs it on a thread of its own; otherwise the caller runs it (`serve` does, on the main thread).
    api_key: required as a bearer token everywhere but /health and the playground page. max_concurrent:
    rows queued or running at once before 429 (default: only the queue's size, max_queue, bounds them)."""
    from contextlib import asynccontextmanager

    scheduler = Scheduler(engine, max_batch_size, max_queue)
    metrics = Metrics(scheduler)
    context = engine.max_seq_len
    tokenizer = engine.tokenizer
    grammars = None
    embed_lock = threading.Lock()

    @asynccontextmanager
    async def lifespan(app):
        if scheduler_thread:
            scheduler.start()
        yield
        scheduler.stop()

    app = FastAPI(title="slm", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.scheduler = scheduler
    app.state.metrics = metrics

    @app.exception_handler(ApiError)
    async def _api_error(request, exc: ApiError):
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        # Union members name themselves in the location (prompt.list[int]): the client wants the field.
        loc = [str(p) for p in first.get("loc", ())[1:]
               if isinstance(p, int) or (p.isidentifier() and p not in ("str", "int", "float", "bool", "dict"))]
        where = ".".join(loc) or None
        if first.get("type") == "json_invalid":
            return ApiError(400, "the body is not valid JSON", code="invalid_json").response()
        return ApiError(400, f"{where or 'body'}: {first.get('msg', 'invalid request')}", param=where,
                        code="invalid_value").response()

    @app.exception_handler(HTTPException)
    async def _http_error(request, exc: HTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return ApiError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}", code=code).response()

    @app.get("/health")
    async def health():
        return {"status": "ok", "queued": scheduler.queued, "running": scheduler.running,
                "batches": scheduler.batches, "largest_batch": scheduler.largest_batch,
                "joined_running_batch": scheduler.admitted}

    @app.get("/metrics")
    async def prometheus():
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", response_class=HTMLResponse)
    async def playground():
        page = resources.files("slm.infer.server").joinpath("playground.html").read_text()
        return page.replace("{{MODEL}}", html.escape(model_name))

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": 0, "owned_by": "slm",
                                            "max_model_len": context}]}

    def check_model(body) -> None:
        if body.model not in (None, model_name):
            raise ApiError(404, f"model {body.model!r} does not exist; this server serves {model_name!r}",
                           param="model", code="model_not_found")

    def sampling(body: _Sampling, prompt_len: int, max_tokens: int | None, default: int, stop_ids=(),
                 param: str = "prompt", **extra) -> SamplingParams:
        room = context - prompt_len if context else None
        if max_tokens is None:
            max_tokens = min(default, max_tokens_cap, room) if room is not None else min(default, max_tokens_cap)
        if max_tokens > max_tokens_cap:
            raise ApiError(400, f"max_tokens is {max_tokens}, over this server's cap of {max_tokens_cap}",
                           param="max_tokens", code="max_tokens_too_large")
        if room is not None and (room < 1 or max_tokens > room):
            raise ApiError(400, f"this model's maximum context length is {context} tokens, but {prompt_len + max_tokens} "
                           f"were requested ({prompt_len} in the prompt, {max_tokens} for the completion)",
                           param=param, code="context_length_exceeded")
        try:
            return SamplingParams(max_tokens=max(1, max_tokens),
                                  temperature=1.0 if body.temperature is None else body.temperature,
                                  top_k=body.top_k, top_p=1.0 if body.top_p is None else body.top_p,
                                  min_p=body.min_p, repetition_penalty=body.repetition_penalty,
                                  stop=list(body.stop or []), seed=body.seed, stop_token_ids=list(stop_ids), **extra)
        except SlmError as e:
            raise ApiError(400, str(e), code="invalid_value") from None

    def constraint_factory(body: _Sampling):
        nonlocal grammars
        from slm.infer.server.grammar import Grammars, request_grammar

        grammar = request_grammar(body)
        if grammar is None:
            return None
        if tokenizer is None:
            raise ApiError(400, "structured output needs the model's tokenizer", param="response_format")
        if grammars is None:
            grammars = Grammars(tokenizer)
        return grammars.factory(grammar)

    def check_n(body: _Sampling, prompts: int = 1) -> None:
        if body.n > max_batch_size:
            raise ApiError(400, f"n is {body.n}, over this server's batch of {max_batch_size} rows", param="n")
        if body.stream and body.n * prompts > max_batch_size:
            raise ApiError(400, "a streamed request may not ask for more rows than a batch holds", param="n")

    def submit(prompts: list[list[int]], params: list[SamplingParams], body: _Sampling, make_constraint) -> list[Job]:
        """One group of n rows per prompt (sharing its prefill); choice index = prompt * n + sample."""
        loop, events = asyncio.get_running_loop(), asyncio.Queue()
        groups = []
        for p, (ids, sp) in enumerate(zip(prompts, params)):
            group = []
            for j in range(body.n):
                row = sp
                if body.seed is not None and j:  # each sample its own stream, reproducible from the seed
                    seed = body.seed + j
                    row = SamplingParams(**{**sp.__dict__, "seed": seed - 2**64 if seed > SEED_MAX else seed})
                try:
                    seq = engine.new_sequence(ids, row, track_text=body.stream)
                except SlmError as e:
                    raise ApiError(400, str(e), param="prompt", code="invalid_prompt") from None
                if make_constraint is not None:
                    seq.constraint = make_constraint()
                group.append(Job(seq, loop, events, choice=p * body.n + j, stream=body.stream))
            groups.append(group)
        jobs = []
        try:
            for group in groups:
                scheduler.submit(group, max_concurrent)
                jobs += group
        except ApiError:
            for job in jobs:
                job.seq.cancelled = True
            raise
        return jobs

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        check_model(body)
        prompts = body.prompts()
        check_n(body, len(prompts))
        if body.suffix:
            raise ApiError(400, "suffix (fill-in-the-middle) is not supported", param="suffix")
        if any(isinstance(p, str) for p in prompts) and tokenizer is None:
            raise ApiError(400, "this server has no tokenizer: send the prompt as token ids", param="prompt")
        if body.max_tokens == 0 and not (body.echo and body.logprobs is not None):
            raise ApiError(400, "max_tokens 0 needs echo and logprobs (scoring the prompt)", param="max_tokens")
        if body.stream and body.echo:
            raise ApiError(400, "echo is not supported with stream", param="echo")
        if body.echo and body.logprobs is not None and hasattr(engine.runner, "prefill"):
            raise ApiError(400, "prompt log-probabilities (echo with logprobs) are for decoder models; this one "
                           "encodes its prompt", param="echo")
        # Token ids are checked (range, emptiness) when the sequence is built, after the length check.
        ids = [tokenizer.encode(p) if isinstance(p, str) else list(p) for p in prompts]
        logprobs = body.logprobs
        params = [sampling(body, len(p), body.max_tokens, 16, logprobs=logprobs,
                           prompt_logprobs=logprobs if body.echo else None) for p in ids]
        jobs = submit(ids, params, body, constraint_factory(body))
        return await respond(jobs, request, body, chat=False)

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest, request: Request):
        check_model(body)
        check_n(body)
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise ApiError(400, "this model has no chat template; use /v1/completions", param="messages")
        if body.top_logprobs is not None and not body.logprobs:
            raise ApiError(400, "top_logprobs needs logprobs: true", param="top_logprobs")
        messages = message_text(body.messages)
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        prompt_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        end = tokenizer.convert_tokens_to_ids("<|im_end|>")
        stop_ids = [end] if isinstance(end, int) and end != tokenizer.unk_token_id else []
        params = sampling(body, len(prompt_ids), body.max_completion_tokens or body.max_tokens, max_tokens_cap,
                          stop_ids, param="messages", logprobs=(body.top_logprobs or 0) if body.logprobs else None)
        jobs = submit([prompt_ids], [params], body, constraint_factory(body))
        return await respond(jobs, request, body, chat=True)

    # ---- answers ----

    def piece(token: int) -> str:
        return tokenizer.decode([token]) if tokenizer is not None else f"<{token}>"

    def legacy_logprobs(entries) -> dict:
        """Completions' logprobs: tokens, token_logprobs, top_logprobs (the chosen token always among them,
        as vLLM returns it), text_offset."""
        tokens, lps, tops, offsets, at = [], [], [], [], 0
        for token, lp, top in entries:
            text = piece(token)
            tokens.append(text)
            lps.append(lp)
            offsets.append(at)
            at += len(text)
            if top is None:
                tops.append(None)
                continue
            shown = {}
            for t, v in list(top.items()) + [(token, lp)]:
                key = piece(t)
                shown[key] = max(v, shown.get(key, -math.inf))
            tops.append(shown)
        return {"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets}

    def chat_logprobs(entries) -> dict:
        def item(token, lp):
            text = piece(token)
            return {"token": text, "logprob": lp, "bytes": list(text.encode())}
        return {"content": [dict(item(t, lp), top_logprobs=[item(u, v) for u, v in (top or {}).items()])
                            for t, lp, top in entries]}

    def output_entries(seq) -> list:
        pairs = zip(seq.output_ids, seq.token_logprobs)
        return [(t, lp, top) for t, (lp, top) in pairs if t not in seq.stop_ids]

    def choice_of(job: Job, body, chat: bool) -> dict:
        seq = job.seq
        done = seq.completion()
        choice = {"index": job.choice, "finish_reason": done.finish_reason}
        if chat:
            choice["message"] = {"role": "assistant", "content": done.text}
            choice["logprobs"] = chat_logprobs(output_entries(seq)) if body.logprobs else None
            return choice
        scoring = body.max_tokens == 0
        text = "" if scoring else done.text
        entries = [] if scoring or body.logprobs is None else output_entries(seq)
        if body.echo:
            text = (tokenizer.decode(seq.prompt_ids) if tokenizer is not None else "") + text
            if body.logprobs is not None:
                prompt = [(seq.prompt_ids[0], None, None)] + [
                    (t, lp, top) for t, (lp, top) in zip(seq.prompt_ids[1:], seq.prompt_logprobs or [])]
                entries = prompt + entries
        choice.update(text=text, logprobs=legacy_logprobs(entries) if body.logprobs is not None else None)
        if scoring:
            choice["finish_reason"] = "length"
        return choice

    def usage(jobs: list[Job], body) -> dict:
        prompt = sum(len(j.seq.prompt_ids) for j in jobs if j.choice % body.n == 0)
        out = 0 if getattr(body, "max_tokens", None) == 0 else sum(len(j.seq.output_ids) for j in jobs)
        return {"prompt_tokens": prompt, "completion_tokens": out, "total_tokens": prompt + out}

    def record(job: Job) -> None:
        metrics.row_done(len(job.seq.prompt_ids), len(job.seq.output_ids), job.arrived, job.first_at,
                         time.monotonic())

    def cancel(jobs: list[Job]) -> None:
        for job in jobs:
            if not job.seq.finished:
                job.seq.cancelled = True

    async def next_event(jobs: list[Job], request: Request | None, deadline: float):
        """The next (choice, event) of this request; None if the client left; 408 past the deadline."""
        events = jobs[0].events
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                cancel(jobs)
                raise ApiError(408, f"the request took longer than this server's limit of {request_timeout_s:g} s",
                               code="request_timeout", type_="timeout_error")
            try:
                return await asyncio.wait_for(events.get(), timeout=min(0.25, left))
            except asyncio.TimeoutError:
                if request is not None and await request.is_disconnected():
                    cancel(jobs)
                    return None

    async def respond(jobs: list[Job], request: Request, body, chat: bool):
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        head = {"id": rid, "created": int(time.time()), "model": model_name}
        kind = "chat.completion" if chat else "text_completion"
        deadline = jobs[0].arrived + request_timeout_s
        if body.stream:
            include_usage = bool((body.stream_options or {}).get("include_usage"))
            return StreamingResponse(sse(jobs, head, kind + (".chunk" if chat else ""), chat, include_usage, body,
                                         deadline), media_type="text/event-stream")
        open_rows = len(jobs)
        try:
            while open_rows:
                item = await next_event(jobs, request, deadline)
                if item is None:
                    return JSONResponse({}, status_code=499)
                _, event = item
                if isinstance(event, Exception):
                    raise ApiError(500, f"generation failed: {event}", type_="server_error")
                if event.finish_reason:
                    open_rows -= 1
        finally:
            cancel(jobs)
        for job in jobs:
            record(job)
        choices = sorted((choice_of(job, body, chat) for job in jobs), key=lambda c: c["index"])
        return dict(head, object=kind, choices=choices, usage=usage(jobs, body))

    async def sse(jobs: list[Job], head: dict, kind: str, chat: bool, include_usage: bool, body, deadline: float):
        def chunk(choice: int, text: str | None, finish: str | None, first: bool = False, logprobs=None) -> str:
            if chat:
                delta = {"role": "assistant", "content": ""} if first else ({"content": text} if text else {})
                entry = {"index": choice, "delta": delta, "finish_reason": finish}
                if logprobs is not None:
                    entry["logprobs"] = chat_logprobs([logprobs])
            else:
                entry = {"index": choice, "text": text or "", "finish_reason": finish,
                         "logprobs": legacy_logprobs([logprobs]) if logprobs is not None else None}
            return "data: " + json.dumps(dict(head, object=kind, choices=[entry])) + "\n\n"

        by_choice = {job.choice: job for job in jobs}
        try:
            if chat:
                for job in jobs:
                    yield chunk(job.choice, None, None, first=True)
            open_rows = len(jobs)
            while open_rows:
                try:
                    item = await next_event(jobs, None, deadline)
                except ApiError as error:
                    yield "data: " + json.dumps(error.body()) + "\n\n"
                    return
                choice, event = item
                if isinstance(event, Exception):
                    error = {"error": {"message": f"generation failed: {event}", "type": "server_error"}}
                    yield "data: " + json.dumps(error) + "\n\n"
                    return
                job = by_choice[choice]
                lp = None
                if event.logprobs is not None and event.token_id not in job.seq.stop_ids:
                    lp = (event.token_id, event.logprobs[0], event.logprobs[1])
                if event.text or event.finish_reason or lp is not None:
                    yield chunk(choice, event.text, event.finish_reason, logprobs=lp)
                if event.finish_reason:
                    open_rows -= 1
                    record(job)
            if include_usage:
                yield "data: " + json.dumps(dict(head, object=kind, choices=[], usage=usage(jobs, body))) + "\n\n"
            yield "data: [DONE]\n\n"
        finally:
            cancel(jobs)  # the client went away: free the rows

    # ---- embeddings ----

    @app.post("/v1/embeddings")
    async def embeddings(body: EmbeddingRequest):
        check_model(body)
        model = engine.model
        dim = getattr(getattr(model, "config", None), "dim", None)
        if not hasattr(model, "hidden_states") or dim is None:
            raise ApiError(400, "this model gives no hidden states to embed (a composition?)", param="model")
        inputs = body.input
        if isinstance(inputs, str) or (isinstance(inputs, list) and inputs and isinstance(inputs[0], int)):
            inputs = [inputs]
        if not inputs or len(inputs) > 256:
            raise ApiError(400, "give 1 to 256 inputs", param="input")
        if any(isinstance(x, str) for x in inputs) and tokenizer is None:
            raise ApiError(400, "this server has no tokenizer: send token ids", param="input")
        if body.dimensions is not None and body.dimensions != dim:
            raise ApiError(400, f"this model's embeddings have {dim} dimensions", param="dimensions")
        rows = []
        vocab = engine.vocab_size
        for i, x in enumerate(inputs):
            ids = tokenizer.encode(x) if isinstance(x, str) else list(x)
            if not ids or (context is not None and len(ids) > context):
                raise ApiError(400, f"input {i} has {len(ids)} tokens: give 1 to {context}", param="input")
            if vocab is not None and not all(0 <= t < vocab for t in ids):
                raise ApiError(400, f"input {i}: token ids must be in [0, {vocab})", param="input")
            rows.append(ids)
        vectors = await asyncio.to_thread(_embed, model, rows, engine.device, embed_lock)
        data = []
        for i, v in enumerate(vectors):
            value = base64.b64encode(v.numpy().astype("<f4").tobytes()).decode() if body.encoding_format == "base64" \
                else v.tolist()
            data.append({"object": "embedding", "index": i, "embedding": value})
        n = sum(len(r) for r in rows)
        return {"object": "list", "data": data, "model": model_name, "usage": {"prompt_tokens": n, "total_tokens": n}}

    return Guard(app, api_key, max_body_bytes, metrics)


@torch.inference_mode()
def _embed(model, rows: list[list[int]], device, lock: threading.Lock) -> list[torch.Tensor]:
    """Mean of the final-norm hidden states over each input's tokens, L2-normalised (one row at a time: no
    padding to mask, and inputs are few)."""
    out = []
    with lock:
        for ids in rows:
            hidden = model.hidden_states(torch.tensor([ids], device=device))[0].float()
            out.append(torch.nn.functional.normalize(hidden.mean(0), dim=0).cpu())
    return out


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
