"""An OpenAI-compatible HTTP server over the engine (FastAPI + uvicorn).

    app = create_app(Engine(model, tokenizer), model_name="tiny", api_key="sk-local")   # an ASGI app
    serve(engine, port=8000, api_key="sk-local")                                      # uvicorn until Ctrl-C

    POST /v1/completions        prompt(s) as text or token ids; n, stop, seed, logprobs + echo (scoring), stream
    POST /v1/chat/completions   messages (text or content parts) through the chat template; logprobs/top_logprobs
    POST /v1/embeddings         mean-pooled, L2-normalised final hidden states (float or base64)
    GET  /v1/models, /health, /metrics (Prometheus), / (the playground page)
    response_format json_schema / json_object, guided_regex, guided_grammar: structured output (grammar.py)

Modules: schemas (request bodies, the error shape), scheduler (queue and continuous batching), app (routes,
key, limits, answers), grammar (llguidance), metrics (prometheus-client), playground.html.
"""
from slm.infer.server.app import create_app, serve
from slm.infer.server.scheduler import Job, Scheduler
from slm.infer.server.schemas import ApiError, ChatRequest, CompletionRequest

__all__ = ["create_app", "serve", "Scheduler", "Job", "ApiError", "ChatRequest", "CompletionRequest"]
