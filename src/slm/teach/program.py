"""Prompt programs: a generation job declared in a few explicit fields, run through the teacher, resumable.

    job = load_job("recipes/teach-example.yaml")          # or Job(templates=[Template("q", user="...")], ...)
    with job_endpoint(job) as endpoint:                    # the job's endpoint, or slm serve on the real model
        report = run_job(job, endpoint)                    # appends one record per request to job.output

A job is templates x items. Items are the rows of a JSONL file (`rows`), times the product of the
`variables` lists; every template is rendered (Jinja2, undefined names are errors) for every item. Each
(template, item) is one record of the output, with the id `template:hash(item)`, so adding values to a
list keeps the ids of the old items. An answer is parsed by `parse` (text, json, a regex, or a named Python
function); a sample that does not parse is asked again with a new seed (seed + attempt) up to `retries` times,
then the record is written with ok=false and the errors. A request the server refuses (400) is a failure too.

Resuming: records already in the output are skipped (their ids), requests already answered come from the
cache, and a record whose request changed since (an edited template) is refused with one line rather than
mixed into the same file. Nothing is written before the templates render and the endpoint answers.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from slm.errors import ConfigError, SlmError
from slm.teach.client import Cache, Endpoint, Request, RequestRefused, Teacher
from slm.teach.output import JsonlOutput


class ParseError(ValueError):
    """An answer that does not have the expected form."""


# ------------------------------------------------------------------------------------------------ parsing

def make_parser(spec: str | dict | None) -> Callable[[str], Any]:
    """A parser from its spec: None or "text" (the text, stripped; empty fails), "json" (a JSON value; a fenced
    ```json block is accepted), {"regex": PATTERN} (the first match's group 1, or the whole match; `.` stops at a newline unless the
    pattern starts with (?s)), or
    {"python": "module:function"} (the function takes the text; raising ValueError or returning None fails)."""
    if spec is None or spec == "text":
        return _parse_text
    if spec == "json":
        return _parse_json
    if isinstance(spec, dict) and len(spec) == 1:
        (kind, arg), = spec.items()
        if kind == "regex":
            try:
                pattern = re.compile(str(arg))
            except re.error as e:
                raise ConfigError(f"parse.regex {arg!r} is not a regular expression: {e}") from None
            return lambda text: _parse_regex(pattern, text)
        if kind == "python":
            return _python_parser(str(arg))
    raise ConfigError(f"parse must be text, json, {{regex: PATTERN}} or {{python: module:function}}; got {spec!r}")


def _parse_text(text: str) -> str:
    if not text.strip():
        raise ParseError("empty answer")
    return text.strip()


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)


def _parse_json(text: str):
    fenced = _FENCE.search(text)
    try:
        return json.loads(fenced.group(1) if fenced else text)
    except ValueError as e:
        raise ParseError(f"not JSON ({e})") from None


def _parse_regex(pattern: re.Pattern, text: str) -> str:
    m = pattern.search(text)
    if not m:
        raise ParseError(f"no match for /{pattern.pattern}/")
    return m.group(1) if pattern.groups else m.group(0)


def _python_parser(name: str) -> Callable[[str], Any]:
    module, _, attr = name.partition(":")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError):
        raise ConfigError(f"parse.python {name!r}: no function {attr or '?'} in module {module}") from None

    def parse(text: str):
        try:
            value = fn(text)
        except (ValueError, TypeError) as e:
            raise ParseError(f"{name}: {e}") from None
        if value is None:
            raise ParseError(f"{name} found nothing")
        return value

    return parse


# ------------------------------------------------------------------------------------------------ the job

@dataclass
class Template:
    """One kind of request. Chat: `user` (and optional `system`) or a full `messages` list; completion: `prompt`.
    All strings are Jinja2 templates over the item's variables."""

    name: str
    user: str | None = None
    system: str | None = None
    messages: list[dict] | None = None
    prompt: str | None = None
    parse: str | dict | None = None

    def __post_init__(self):
        given = [k for k in ("user", "messages", "prompt") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ConfigError(f"template {self.name!r}: give exactly one of user, messages or prompt "
                              f"(got {', '.join(given) or 'none'})")
        if self.system is not None and self.user is None:
            raise ConfigError(f"template {self.name!r}: system goes with user")
        self.parser = make_parser(self.parse)


@dataclass
class Job:
    templates: list[Template]
    output: str | Path
    variables: dict[str, list] = field(default_factory=dict)
    rows: str | Path | None = None  # a JSONL file: each object is one item's variables
    sampling: dict = field(default_factory=dict)  # max_tokens, temperature, top_p, seed, stop, n, extra
    retries: int = 2  # new-seed retries of an answer that does not parse
    concurrency: int = 4
    cache: str | Path | None = None  # default: <output>.cache.sqlite
    endpoint: dict | None = None  # {base_url, model, api_key_env, timeout}; None: slm serve on the real model

    def __post_init__(self):
        if not self.templates:
            raise ConfigError("a job needs at least one template")
        names = [t.name for t in self.templates]
        if len(set(names)) != len(names):
            raise ConfigError(f"template names must differ: {names}")
        for k, v in self.variables.items():
            if not isinstance(v, list) or not v:
                raise ConfigError(f"variables.{k} must be a non-empty list")
        unknown = set(self.sampling) - {"max_tokens", "temperature", "top_p", "seed", "stop", "n", "extra"}
        if unknown:
            raise ConfigError(f"sampling: unknown field(s) {', '.join(sorted(unknown))}")
        if self.retries < 0:
            raise ConfigError(f"retries must be at least 0, got {self.retries}")
        self.output = Path(self.output)
        self.cache = Path(self.cache) if self.cache else self.output.with_name(self.output.name + ".cache.sqlite")

    def items(self) -> list[dict]:
        """Every item's variables: rows x product(variables), rows first."""
        rows = [{}]
        if self.rows:
            from slm.io import iter_jsonl

            rows = [r for _, r in iter_jsonl(self.rows, what="rows file")]
            if not rows:
                raise ConfigError(f"rows file {self.rows} has no rows")
        names = list(self.variables)
        combos = [dict(zip(names, values)) for values in itertools.product(*self.variables.values())]
        return [{**row, **combo} for row in rows for combo in combos]

    def requests(self) -> list[tuple[str, Template, dict, Request]]:
        """(id, template, item, first request) for every record of the job, rendered now: a template that does
        not render is a ConfigError before anything is sent."""
        import jinja2

        env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
        out, seen = [], {}
        items = self.items()
        for t in self.templates:
            for item in items:
                base = f"{t.name}:{_item_hash(item)}"
                seen[base] = seen.get(base, 0) + 1
                rid = base if seen[base] == 1 else f"{base}#{seen[base]}"
                try:
                    request = self._request(env, t, item)
                except jinja2.TemplateError as e:
                    raise ConfigError(f"template {t.name!r} with {json.dumps(item)[:200]}: {e}") from None
                out.append((rid, t, item, request))
        return out

    def _request(self, env, t: Template, item: dict, seed_offset: int = 0, n: int | None = None) -> Request:
        render = lambda s: env.from_string(s).render(**item)  # noqa: E731
        s = self.sampling
        if t.prompt is not None:
            body = {"prompt": render(t.prompt)}
        elif t.messages is not None:
            body = {"messages": [{"role": m["role"], "content": render(m["content"])} for m in t.messages]}
        else:
            msgs = ([{"role": "system", "content": render(t.system)}] if t.system is not None else [])
            body = {"messages": msgs + [{"role": "user", "content": render(t.user)}]}
        seed = s.get("seed", 0)
        return Request(**body, max_tokens=s.get("max_tokens", 256), temperature=s.get("temperature", 1.0),
                       top_p=s.get("top_p", 1.0), seed=None if seed is None else seed + seed_offset,
                       n=n or s.get("n", 1), stop=s.get("stop"), extra=dict(s.get("extra") or {}))


def _item_hash(item: dict) -> str:
    return hashlib.sha256(json.dumps(item, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:12]


def load_job(path: str | Path, **overrides) -> Job:
    """A Job from YAML; overrides (output, concurrency, ...) replace its fields when not None. Relative paths
    (output, rows, cache) are relative to the current directory, as in every slm recipe."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise SlmError(f"job file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a job is a mapping (templates, variables, output, ...)")
    raw.update({k: v for k, v in overrides.items() if v is not None})
    known = set(Job.__dataclass_fields__)
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"{path}: unknown field(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(known))})")
    if "output" not in raw:
        raise ConfigError(f"{path}: the job needs an output (a .jsonl path)")
    templates = raw.get("templates")
    if not isinstance(templates, list) or not all(isinstance(t, dict) for t in templates):
        raise ConfigError(f"{path}: templates must be a list of mappings (name, user / messages / prompt, parse)")
    tfields = set(Template.__dataclass_fields__)
    for t in templates:
        bad = set(t) - tfields
        if bad:
            raise ConfigError(f"{path}: template {t.get('name')!r}: unknown field(s) {', '.join(sorted(bad))}")
        if "name" not in t:
            raise ConfigError(f"{path}: every template needs a name")
    raw["templates"] = [Template(**t) for t in templates]
    try:
        return Job(**raw)
    except TypeError as e:
        raise ConfigError(f"{path}: {e}") from None


# ------------------------------------------------------------------------------------------------ running

@dataclass
class JobReport:
    records: int = 0  # records in the output after the run
    written: int = 0  # records this run added
    failed: int = 0  # of those, records with ok=false
    skipped: int = 0  # already in the output
    stats: Any = None  # the teacher's Stats

    def summary(self) -> str:
        return (f"{self.written} records written ({self.failed} failed), {self.skipped} already there, "
                f"{self.records} in all; teacher: {self.stats.summary() if self.stats else '-'}")


@contextlib.contextmanager
def job_endpoint(job: Job, **overrides) -> Iterator[Endpoint]:
    """The job's endpoint (overrides: base_url, model, api_key_env, timeout), or slm serve on the real model."""
    spec = {**(job.endpoint or {}), **{k: v for k, v in overrides.items() if v is not None}}
    unknown = set(spec) - {"base_url", "model", "api_key_env", "timeout"}
    if unknown:
        raise ConfigError(f"endpoint: unknown field(s) {', '.join(sorted(unknown))}")
    if spec.get("base_url"):
        if not spec.get("model"):
            raise ConfigError("endpoint: a base_url needs a model name")
        yield Endpoint(**spec)
        return
    from slm.teach.local import REAL_MODEL, local_endpoint

    with local_endpoint(spec.get("model") or REAL_MODEL) as endpoint:
        yield endpoint


def plan(job: Job, model: str, limit: int | None = None) -> tuple[list, list, dict[str, str]]:
    """(the job's requests, those not yet in the output, each id's first-request key) for a teacher serving
    `model`. A record in the output whose request has changed since is refused with one line."""
    todo_all = job.requests()
    if limit is not None:
        todo_all = todo_all[:limit]
    keys = {rid: req.key(model) for rid, _, _, req in todo_all}
    done = set()
    if job.output.exists():
        with JsonlOutput(job.output) as out:
            records = out.records
        for i, record in enumerate(records, 1):
            rid = record.get("id")
            if rid in keys and record.get("key") != keys[rid]:
                raise SlmError(f"{job.output}:{i}: record {rid} was made from a different request (its template or "
                               "sampling changed); write to a new output (the cache keeps every answer)")
            done.add(rid)
    return todo_all, [t for t in todo_all if t[0] not in done], keys


def model_name(job: Job, base_url: str | None = None, model: str | None = None) -> str:
    """The model name the job's requests will carry (overrides as for `job_endpoint`): the endpoint's, or for
    the local teacher the name `local_endpoint` serves it under (the model's directory or file name)."""
    from slm.teach.local import REAL_MODEL

    spec = job.endpoint or {}
    model = model or spec.get("model")
    if base_url or spec.get("base_url"):
        return model or ""
    return Path(str(model or REAL_MODEL)).name


def run_job(job: Job, endpoint: Endpoint, progress: bool = True, limit: int | None = None,
            max_retries: int = 6, backoff: float = 0.5) -> JobReport:
    """Run (or resume) the job against the endpoint; see the module docstring."""
    import jinja2

    todo_all, todo, keys = plan(job, endpoint.model, limit)
    teacher = Teacher(endpoint, cache=None, concurrency=job.concurrency, max_retries=max_retries, backoff=backoff)
    try:
        teacher.check()  # an unreachable endpoint, a refused key or a missing model: one line, nothing written
    except SlmError:
        teacher.close()
        raise

    out = JsonlOutput(job.output)
    report = JobReport(skipped=len(todo_all) - len(todo))
    teacher.cache = Cache(job.cache)
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    bar = _progress_bar(len(todo_all), report.skipped, progress)
    teacher.on_answer = lambda a: bar.set_postfix_str(_rate(teacher), refresh=False) if bar else None

    def solve(entry) -> dict:
        rid, template, item, first = entry
        want = first.n
        outputs, errors, attempt = [], [], 0
        for attempt in range(job.retries + 1):
            request = first if attempt == 0 else job._request(env, template, item, attempt, want - len(outputs))
            try:
                answer = teacher.ask(request)
            except RequestRefused as e:
                errors.append(f"refused: {e}")
                break
            for text, logprobs in zip(answer.texts, answer.logprobs):
                try:
                    outputs.append({"text": text, "value": template.parser(text)})
                except ParseError as e:
                    errors.append(str(e))
                    continue
                if logprobs is not None:  # asked for with sampling.extra (logprobs: true); passed through
                    outputs[-1]["logprobs"] = logprobs
            if len(outputs) >= want:
                break
        record = {"id": rid, "template": template.name, "vars": item, "ok": len(outputs) >= want,
                  "outputs": outputs[:want], "attempts": attempt + 1, "key": keys[rid]}
        if errors:
            record["errors"] = errors
        return record

    try:
        for record in teacher.map(solve, todo):
            out.append(record)
            report.written += 1
            report.failed += not record["ok"]
            if bar:
                bar.update(1)
    finally:
        if bar:
            bar.close()
        out.close()
        teacher.close()
    report.records = len(out.records)
    report.stats = teacher.stats
    return report


def _progress_bar(total: int, initial: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="req", desc="teach", dynamic_ncols=True)


def _rate(teacher: Teacher) -> str:
    s = teacher.stats
    rate = s.completion_tokens / s.elapsed if s.elapsed else 0.0
    return f"{rate:.1f} tok/s, {s.cached} cached, {s.retries} retries"
