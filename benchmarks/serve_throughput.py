"""Server throughput: completion tokens/s of `slm serve` at 1, 4 and 16 concurrent clients.

    .venv/bin/python benchmarks/serve_throughput.py                  # nano, 64 tokens per request
    .venv/bin/python benchmarks/serve_throughput.py --preset micro --clients 1 4 16 --requests 3

The server runs in its own process (uvicorn, like `slm serve`) on 127.0.0.1 with a random-weight model and
token-id prompts (no EOS, so every request generates exactly max_tokens). Each client is a thread that sends
its requests one after another (closed loop); throughput = all completion tokens / wall time. The goal in the
issue: 16 clients >= 5x the tokens/s of one, which needs the server to batch concurrent requests.
"""
from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx


def serve_process(model_dir: str, port: int, threads: int | None, max_batch: int, compile: bool = False) -> None:
    """Child process: load the model in the decoding layout and serve it (what `slm serve` does, minus the
    tokenizer requirement)."""
    import torch

    from slm.infer import Engine
    from slm.infer.server import serve

    if threads:
        torch.set_num_threads(threads)
    engine = Engine.from_pretrained(model_dir, max_batch_size=max_batch, compile=compile)
    engine.warm_up()  # as `slm serve --compile` does (nothing to do without compile)
    serve(engine, port=port, model_name="bench", max_batch_size=max_batch, max_queue=256, max_tokens_cap=1024)


def run_clients(url: str, n_clients: int, requests: int, max_tokens: int, prompt_len: int) -> tuple[float, int]:
    tokens = [0] * n_clients
    errors = []

    def client(i):
        with httpx.Client(timeout=600) as http:
            for r in range(requests):
                prompt = [(i * 31 + r * 7 + j) % 8000 + 1 for j in range(prompt_len)]
                resp = http.post(url + "/v1/completions", json={"prompt": prompt, "max_tokens": max_tokens,
                                                                 "temperature": 0})
                if resp.status_code != 200:
                    errors.append(resp.text)
                    return
                tokens[i] += resp.json()["usage"]["completion_tokens"]

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n_clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"requests failed: {errors[0]}")
    return elapsed, sum(tokens)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="nano")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--requests", type=int, default=3, help="requests per client")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--prompt-len", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None, help="torch threads in the server process")
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--compile", action="store_true", help="serve as `slm serve --compile` does")
    ap.add_argument("--serve", nargs=2, metavar=("DIR", "PORT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve_process(args.serve[0], int(args.serve[1]), args.threads, args.max_batch, args.compile)
        return

    import slm
    from slm.models import Decoder, preset

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = str(Path(tmp) / args.preset)
        slm.save(Decoder(preset(args.preset)).init_weights(seed=0), None, model_dir)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cmd = [sys.executable, __file__, "--serve", model_dir, str(port), "--max-batch", str(args.max_batch)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        if args.compile:
            cmd += ["--compile"]
        server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + (600 if args.compile else 120)
            while True:
                try:
                    if httpx.get(url + "/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if server.poll() is not None or time.time() > deadline:
                    raise RuntimeError("the server did not start")
                time.sleep(0.2)
            run_clients(url, 1, 1, 8, args.prompt_len)  # warm-up
            print(f"{args.preset}, {args.max_tokens} tokens per request, {args.requests} requests per client, "
                  f"server max batch {args.max_batch}")
            base = None
            for n in args.clients:
                elapsed, tokens = run_clients(url, n, args.requests, args.max_tokens, args.prompt_len)
                tps = tokens / elapsed
                base = base or tps
                health = httpx.get(url + "/health").json()
                print(f"{n:3d} clients: {tokens:6d} tokens in {elapsed:7.2f}s = {tps:8.1f} tok/s "
                      f"({tps / base:.2f}x one client; largest batch so far {health['largest_batch']})")
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
