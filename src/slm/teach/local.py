"""The local default teacher: `slm serve` on the real model, on a free loopback port, for as long as it is needed.

    with local_endpoint() as endpoint:                 # SmolLM2-135M-Instruct; no key, no network
        answer = Teacher(endpoint).ask(Request(messages=[{"role": "user", "content": "Hi"}], max_tokens=16))
    # the server is stopped here

Contract: the server runs in a child process (`slm serve MODEL --port P --name NAME`), bound to 127.0.0.1;
`local_endpoint` returns once GET /health answers, and stops the child on exit (SIGINT, then SIGKILL after
a grace period). A child that dies while starting is one SlmError with the last line of its log.
Settings: on CPU with a C++ compiler, int8 weights and slm's compiled C++ step for one-row batches (the
fastest single-stream setting measured on the real model, docs/benchmarks.md); elsewhere plain fp32.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

from slm.errors import SlmError
from slm.teach.client import Endpoint

REAL_MODEL = "smollm2-135m-instruct"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fastest_settings() -> list[str]:
    """`slm serve` options for the fastest decoding this machine has (see the module docstring)."""
    import torch

    if torch.cuda.is_available():
        return []
    if shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++"):
        return ["--int8", "--compile", "native"]
    return []


def serve_command(model: str, port: int, name: str, options: list[str] | None = None,
                  max_batch_size: int = 16) -> list[str]:
    options = fastest_settings() if options is None else options
    return [sys.executable, "-c", "import sys; from slm.cli import main; sys.exit(main())", "serve", str(model),
            "--host", "127.0.0.1", "--port", str(port), "--name", name, "--max-batch-size", str(max_batch_size),
            "--max-queue", "1024", *options]


@contextlib.contextmanager
def local_endpoint(model: str = REAL_MODEL, port: int | None = None, options: list[str] | None = None,
                   max_batch_size: int = 16, startup_timeout: float = 900.0, log: str | os.PathLike | None = None
                   ) -> Iterator[Endpoint]:
    """Start `slm serve` on `model` (a path or the real model's name), yield its Endpoint, stop it.
    options: extra `slm serve` options (None: `fastest_settings()`); log: where the server's output goes
    (default: a temporary file, removed afterwards)."""
    import httpx

    port = port or free_port()
    name = Path(str(model)).name
    log_path = Path(log) if log else Path(tempfile.mkstemp(prefix="slm-teach-serve-", suffix=".log")[1])
    base = f"http://127.0.0.1:{port}"
    with log_path.open("ab") as log_file:
        child = subprocess.Popen(serve_command(model, port, name, options, max_batch_size), stdout=log_file,
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if child.poll() is not None:
                raise SlmError(f"the local teacher (slm serve {model}) exited while starting: {_last_line(log_path)}")
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SlmError(f"the local teacher (slm serve {model}) did not answer /health within "
                               f"{startup_timeout:.0f} s (log: {log_path})")
            time.sleep(0.25)
        yield Endpoint(base + "/v1", name)
    finally:
        stop(child)
        if not log:
            with contextlib.suppress(OSError):
                log_path.unlink()


def stop(child: subprocess.Popen, grace: float = 15.0) -> None:
    if child.poll() is not None:
        return
    child.send_signal(signal.SIGINT)
    try:
        child.wait(grace)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _last_line(path: Path) -> str:
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(no output)"
