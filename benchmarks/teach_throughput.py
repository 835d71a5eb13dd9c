"""Teacher throughput: requests/s and completion tokens/s of slm.teach against the local real model at concurrency
1, 4 and 16, next to its peer (the plain `openai` client on as many threads, no cache, no retries) in the same run.

    .venv/bin/python benchmarks/teach_throughput.py                         # the local teacher's default settings
    .venv/bin/python benchmarks/teach_throughput.py --options "" --tokens 32  # plain fp32 `slm serve`

`local_endpoint` starts `slm serve smollm2-135m-instruct` on a free loopback port (the settings slm.teach
picks for the machine, or --options); every level sends distinct chat prompts (no cache hits; each level's
topics are new), max_tokens --tokens at temperature 0.7 with a seed, first through a Teacher with a fresh
cache, then through the plain client. Throughput = completion tokens (as the server counts them) / wall time.
A last line replays the largest level from the cache: what a resumed job pays for its done requests.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import shlex
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

TOPICS = ["rivers", "owls", "bread", "rust", "glaciers", "chess", "tea", "bees", "comets", "maps", "violins",
          "salt", "bridges", "moss", "kites", "lanterns", "coral", "ink", "wheat", "clocks", "foxes", "copper",
          "sails", "caves", "honey", "lenses", "dunes", "ferns", "canals", "pearls", "geysers", "looms"]


def requests_for(level: int, count: int, tokens: int):
    from slm.teach import Request

    return [Request(messages=[{"role": "user", "content": f"Write one sentence about {TOPICS[i % len(TOPICS)]} "
                                                          f"(note {level}-{i})."}],
                    max_tokens=tokens, temperature=0.7, seed=i) for i in range(count)]


def plain_openai(endpoint, requests, concurrency: int) -> tuple[float, int]:
    import openai

    client = openai.OpenAI(base_url=endpoint.base_url, api_key="none", max_retries=0, timeout=600)

    def one(r):
        out = client.chat.completions.create(model=endpoint.model, messages=r.messages, max_tokens=r.max_tokens,
                                             temperature=r.temperature, seed=r.seed)
        return out.usage.completion_tokens

    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(concurrency) as pool:
        tokens = sum(pool.map(one, requests))
    return time.perf_counter() - t0, tokens


def with_teacher(endpoint, requests, concurrency: int, cache: Path) -> tuple[float, int, object]:
    from slm.teach import Teacher

    teacher = Teacher(endpoint, cache=cache, concurrency=concurrency)
    t0 = time.perf_counter()
    tokens = sum(a.completion_tokens for a in teacher.map(teacher.ask, requests))
    elapsed = time.perf_counter() - t0
    stats = teacher.stats
    teacher.close()
    return elapsed, tokens, stats


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16], help="concurrency levels")
    ap.add_argument("--requests", type=int, default=2, help="requests per unit of concurrency (at least 4 a level)")
    ap.add_argument("--tokens", type=int, default=32, help="max_tokens of each request")
    ap.add_argument("--options", default=None,
                    help='`slm serve` options, e.g. "--int8 --compile native" (default: slm.teach.local.fastest_settings)')
    args = ap.parse_args()

    from slm.teach.local import fastest_settings, local_endpoint

    options = fastest_settings() if args.options is None else shlex.split(args.options)
    print(f"slm serve {args.model} {' '.join(options)}  (max batch 16; {args.tokens} tokens per request)", flush=True)
    t0 = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as tmp, local_endpoint(args.model, options=options) as endpoint:
        print(f"server up in {time.perf_counter() - t0:.0f} s", flush=True)
        with_teacher(endpoint, requests_for(0, 1, 4), 1, Path(tmp) / "warm.sqlite")  # first-request costs
        for level in args.levels:
            n = max(4, args.requests * level)
            cache = Path(tmp) / f"c{level}.sqlite"
            s_teach, tok_teach, _ = with_teacher(endpoint, requests_for(level, n, args.tokens), level, cache)
            s_plain, tok_plain = plain_openai(endpoint, requests_for(100 + level, n, args.tokens), level)
            rows.append((level, n, s_teach, tok_teach, s_plain, tok_plain))
            print(f"concurrency {level:2d}: {n:3d} requests  slm.teach {n / s_teach:6.2f} req/s "
                  f"{tok_teach / s_teach:7.1f} tok/s   plain openai {n / s_plain:6.2f} req/s "
                  f"{tok_plain / s_plain:7.1f} tok/s   teach/plain {s_plain / s_teach:.2f}x", flush=True)
        level, n = rows[-1][0], rows[-1][1]
        s_cached, tok_cached, stats = with_teacher(endpoint, requests_for(level, n, args.tokens), level,
                                                   Path(tmp) / f"c{level}.sqlite")
        assert stats.sent == 0 and stats.cached == n
        print(f"replay of the {n} requests of concurrency {level} from the cache: {n / s_cached:,.0f} req/s "
              f"(0 sent)", flush=True)

    print("\n| concurrency | requests | slm.teach req/s | slm.teach tok/s | plain openai req/s | plain openai tok/s |")
    print("|---|---|---|---|---|---|")
    for level, n, s_t, tok_t, s_p, tok_p in rows:
        print(f"| {level} | {n} | {n / s_t:.2f} | {tok_t / s_t:.1f} | {n / s_p:.2f} | {tok_p / s_p:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
