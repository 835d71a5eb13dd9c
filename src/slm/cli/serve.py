"""slm serve DIR: an OpenAI-compatible HTTP server (/v1/completions, /v1/chat/completions, /v1/embeddings,
/v1/models, /health, /metrics, and the playground page at /)."""
from __future__ import annotations

import argparse

from slm.cli.generate import add_model_args


def register(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (localhost by default; 0.0.0.0 exposes it)")
    p.add_argument("--port", type=int, default=8000, help="TCP port")
    p.add_argument("--name", default=None, help="model id the API reports and accepts (default: the directory name)")
    p.add_argument("--api-key", default=None,
                   help="require 'Authorization: Bearer KEY' on every route but /health and / (default: $SLM_API_KEY; "
                        "none: open)")
    p.add_argument("--max-batch-size", type=int, default=16, help="requests decoded together at most")
    p.add_argument("--max-queue", type=int, default=64, help="waiting requests before answering 429")
    p.add_argument("--max-concurrent", type=int, default=None,
                   help="rows queued or running at once before answering 429 (default: bounded by --max-queue only)")
    p.add_argument("--max-tokens-cap", type=int, default=512, help="largest max_tokens a request may ask for")
    p.add_argument("--max-body-bytes", type=int, default=1 << 20, help="largest request body (413 beyond)")
    p.add_argument("--request-timeout", type=float, default=600.0,
                   help="seconds a request may take before it is cancelled (408)")
    p.set_defaults(func=run)


def run(args) -> int:
    import os
    from pathlib import Path

    from slm.cli.generate import load_engine
    from slm.infer.server import serve

    engine = load_engine(args, warm_up=True, max_batch_size=args.max_batch_size)
    name = args.name or Path(args.model).resolve().name
    serve(engine, host=args.host, port=args.port, model_name=name, max_batch_size=args.max_batch_size,
          max_queue=args.max_queue, max_tokens_cap=args.max_tokens_cap,
          api_key=args.api_key or os.environ.get("SLM_API_KEY") or None, max_body_bytes=args.max_body_bytes,
          request_timeout_s=args.request_timeout, max_concurrent=args.max_concurrent)
    return 0
