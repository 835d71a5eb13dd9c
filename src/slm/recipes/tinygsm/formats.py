"""The TinyGSM data format, readers for TinyGSM and GSM8K JSONL files, and running programs in the sandbox.

A TinyGSM program: the problem is the docstring of `simple_math_problem`, the body computes `result`:

    def simple_math_problem() -> int:
        \"\"\"
        Emma has 12 apples. She buys 5 more apples. How many apples does she have now?
        \"\"\"
        apples = 12
        more = 5
        apples = apples + more
        result = apples
        return result

The model's prompt is everything up to and including the closing docstring line; its completion is the body.
Programs written by a model (or read from a file) run only in slm.eval.sandbox.
"""
from __future__ import annotations

import ast
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from slm.errors import SlmError
from slm.recipes.tinygsm.problems import Problem

HEADER = "def simple_math_problem() -> int:\n"
ENTRY = "simple_math_problem()"
INDENT = "    "
_DOCSTRING = re.compile(r'^(\s*def\s+simple_math_problem\s*\([^)]*\)[^:]*:\s*\n\s*(?:"""|\'\'\')(.*?)(?:"""|\'\'\')[ \t]*\n)',
                        re.S)


def prompt_for(question: str) -> str:
    """The model's prompt: the function header and the question as its docstring."""
    text = " ".join(question.split())  # one line: the docstring holds the question, not its layout
    return f'{HEADER}{INDENT}"""\n{INDENT}{text}\n{INDENT}"""\n'


def render_program(question: str, body_lines: list[str]) -> str:
    return prompt_for(question) + "".join(f"{INDENT}{line}\n" for line in body_lines)


def split_program(code: str) -> tuple[str, str] | None:
    """(question, body) of a TinyGSM program, or None when it has no `simple_math_problem` docstring."""
    m = _DOCSTRING.match(code)
    if not m:
        return None
    return " ".join(m.group(2).split()), code[m.end():]


def completion_body(completion: str) -> str:
    """A model's completion up to its function's end: indented lines only (it may ramble on after)."""
    lines = []
    for line in completion.splitlines():
        if line.strip() and not line.startswith((" ", "\t")):
            break
        lines.append(line)
    return "\n".join(lines).rstrip() + "\n"


# ------------------------------------------------------------------------------------------------ readers

def _records(path: str | Path):
    from slm.io import iter_jsonl

    return iter_jsonl(path)


def read_tinygsm_jsonl(path: str | Path) -> list[Problem]:
    """TinyGSM JSONL: `question` and `code` (a whole program). The answer is unknown until the code runs
    (see filters.apply_filters); a code field without the docstring header gets one built from the question."""
    problems = []
    for where, record in _records(path):
        question, code = record.get("question"), record.get("code")
        if not isinstance(question, str) or not isinstance(code, str):
            raise SlmError(f"{where}: a TinyGSM record needs string fields 'question' and 'code'")
        if split_program(code) is None:
            body = code if code.startswith(INDENT) else "".join(f"{INDENT}{line}\n" for line in code.splitlines())
            code = prompt_for(question) + body
        else:  # the prompt is always rendered one way, whatever the file's docstring layout
            code = prompt_for(question) + split_program(code)[1]
        problems.append(Problem(" ".join(question.split()), code, None, "", where))
    return problems


def parse_gsm8k_answer(answer: str) -> float | int | None:
    """The number after `####` in a GSM8K answer (commas and a $ sign allowed); None if there is none."""
    m = re.search(r"####\s*\$?\s*(-?[\d,]*\.?\d+)", answer)
    if not m:
        return None
    return parse_number(m.group(1).replace(",", ""))


def read_gsm8k_jsonl(path: str | Path) -> list[Problem]:
    """GSM8K JSONL: `question` and `answer` ending in `#### N`. No code: good for evaluation (the model writes
    the program), not for training the generator."""
    problems = []
    for where, record in _records(path):
        question, answer = record.get("question"), record.get("answer")
        if not isinstance(question, str) or not isinstance(answer, str):
            raise SlmError(f"{where}: a GSM8K record needs string fields 'question' and 'answer'")
        value = parse_gsm8k_answer(answer)
        if value is None:
            raise SlmError(f"{where}: the answer has no final '#### N' line")
        problems.append(Problem(" ".join(question.split()), "", value, "", where))
    return problems


def write_jsonl(problems: list[Problem], path: str | Path) -> None:
    """Problems as TinyGSM JSONL (question, code) plus the answer and template, written atomically."""
    from slm.io import atomic_write_text

    atomic_write_text(Path(path), "".join(json.dumps({"question": p.question, "code": p.code, "answer": p.answer,
                                                      "template": p.template}) + "\n" for p in problems))


# --------------------------------------------------------------------------------------------- execution

def parse_number(text: str | None) -> float | int | None:
    """A number from the repr of a returned value ('12', '12.5', 'True' is not one); None otherwise."""
    if text is None:
        return None
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def answers_match(value, gold, rel_tol: float = 1e-4, abs_tol: float = 1e-4) -> bool:
    if value is None or gold is None:
        return False
    try:
        return math.isclose(float(value), float(gold), rel_tol=rel_tol, abs_tol=abs_tol)
    except OverflowError:
        return value == gold


@dataclass
class Execution:
    status: str  # the sandbox's status ("ok", "error", "timeout", ...)
    value: float | int | None  # the number returned, if any
    error: str = ""


# Many programs share one sandboxed interpreter (a process per program costs more than the programs do).
# Each runs in a fresh namespace with its own copy of the builtins and a wall-clock alarm; a batch that dies
# as a whole (a forbidden operation, a memory blow-up, a hang in C code) is re-run one program per process.
_HARNESS = '''
import builtins, json, signal
PROGRAMS = json.loads({programs!r})
class _Timeout(BaseException):
    pass
def _alarm(signum, frame):
    raise _Timeout
signal.signal(signal.SIGALRM, _alarm)
def _run(src):
    namespace = {{"__name__": "__program__", "__builtins__": dict(vars(builtins))}}
    try:
        signal.setitimer(signal.ITIMER_REAL, {per_program})
        try:
            exec(compile(src, "<program>", "exec"), namespace)
            value = eval({entry!r}, namespace)
            return ["ok", repr(value)[:100]]
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _Timeout:
        return ["timeout", None]
    except BaseException as e:
        return ["error", type(e).__name__]
RESULTS = json.dumps([_run(p) for p in PROGRAMS])
'''


def execute_programs(programs: list[str], batch_size: int = 64, per_program_timeout: float = 1.0,
                     workers: int | None = None, memory_mb: int = 512) -> list[Execution]:
    """Run TinyGSM programs in the sandbox and read what `simple_math_problem()` returns, in order."""
    from slm.eval.sandbox import run_many

    batches = [programs[i:i + batch_size] for i in range(0, len(programs), batch_size)]
    harnesses = [_HARNESS.format(programs=json.dumps(b), entry=ENTRY, per_program=per_program_timeout)
                 for b in batches]
    timeout = 5.0 + per_program_timeout * batch_size
    runs = run_many(harnesses, workers=workers, timeout=timeout, memory_mb=memory_mb, entry="RESULTS",
                    max_output_bytes=1 << 20)
    out: list[Execution] = []
    for batch, run in zip(batches, runs):
        decoded = _decode_batch(run, len(batch))
        if decoded is None:  # the batch died as a whole: find out program by program
            singles = run_many(batch, workers=workers, timeout=per_program_timeout + 2, memory_mb=memory_mb,
                               entry=ENTRY)
            decoded = [Execution(r.status, parse_number(r.result) if r.ok else None,
                                 r.stderr.strip().splitlines()[-1][:200] if r.stderr.strip() else "")
                       for r in singles]
        out.extend(decoded)
    return out


def _decode_batch(run, n: int) -> list[Execution] | None:
    if not run.ok or run.result is None:
        return None
    try:
        rows = json.loads(ast.literal_eval(run.result))
    except (ValueError, SyntaxError, TypeError):
        return None
    if not isinstance(rows, list) or len(rows) != n:
        return None
    return [Execution(status, parse_number(text) if status == "ok" else None, "" if status == "ok" else (text or ""))
            for status, text in rows]
