"""slm teach generate JOB.yaml | serve-local: synthetic data through a teacher model (slm.teach)."""
from __future__ import annotations

import argparse

from slm.cli import add_subverbs


def register(p: argparse.ArgumentParser) -> None:
    add_subverbs(p, {
        "generate": ("run (or resume) a generation job: templates x variables -> an append-only JSONL",
                     _register_generate),
        "serve-local": ("serve the real model on a free loopback port as the local teacher, until Ctrl-C",
                        _register_serve_local),
    })


def _register_generate(p):
    p.add_argument("job", help="a job YAML (templates, variables or rows, parse, sampling, output; see docs/teach.md)")
    p.add_argument("--base-url", default=None,
                   help="an OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 (default: the job's endpoint, "
                        "else slm serve on the real model, started and stopped here)")
    p.add_argument("--model", default=None, help="the model name the endpoint serves (default: the job's)")
    p.add_argument("--api-key-env", default=None, metavar="VAR",
                   help="the environment variable that holds the endpoint's key (default: the job's, else no key)")
    p.add_argument("--output", default=None, help="the JSONL to append to (default: the job's output)")
    p.add_argument("--concurrency", type=int, default=None, help="requests in flight (default: the job's, else 4)")
    p.add_argument("--limit", type=int, default=None, help="run only the first N requests of the job")
    p.add_argument("--timeout", type=float, default=None, help="seconds one request may take before a retry")
    p.add_argument("--max-retries", type=int, default=6, help="retries of a request that fails transiently")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=generate)


def _register_serve_local(p):
    p.add_argument("--model", default="smollm2-135m-instruct",
                   help="what to serve (a model directory or the real model's name)")
    p.add_argument("--port", type=int, default=None, help="TCP port on 127.0.0.1 (default: a free one)")
    p.set_defaults(func=serve_local)


def generate(args) -> int:
    import sys

    from slm.teach.program import job_endpoint, load_job, model_name, plan, run_job

    job = load_job(args.job, output=args.output, concurrency=args.concurrency)
    todo_all, todo, _ = plan(job, model_name(job, args.base_url, args.model), args.limit)
    if not todo:  # a finished job starts no teacher
        print(f"{job.output}: nothing to do, all {len(todo_all)} records are there", file=sys.stderr)
        return 0
    with job_endpoint(job, base_url=args.base_url, model=args.model, api_key_env=args.api_key_env,
                      timeout=args.timeout) as endpoint:
        report = run_job(job, endpoint, progress=not args.no_progress, limit=args.limit,
                         max_retries=args.max_retries)
    print(f"{job.output}: {report.summary()}", file=sys.stderr)
    return 0


def serve_local(args) -> int:
    import time

    from slm.teach.local import local_endpoint

    try:
        with local_endpoint(args.model, port=args.port) as endpoint:
            print(f"teacher ready: base_url {endpoint.base_url}, model {endpoint.model} (Ctrl-C stops it)", flush=True)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:  # the way to stop it; the server is stopped by then
        return 0
