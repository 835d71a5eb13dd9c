"""A demo SFT dataset made locally from the embedded corpus (the Python standard library): no download.

For every function with a docstring, `ast` gives two instruction pairs in the messages format:
  - "doc": the function's code (docstring removed)  ->  its one-line summary;
  - "code": the summary and the signature           ->  the function's code.
Functions are split into train and held-out by a hash of their qualified name, so a held-out prompt is
never a training prompt in another form.
"""
from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path
from typing import Iterator

SYSTEM = "You are a concise Python assistant."
DOC_PROMPT = "Summarise this function in one line.\n```python\n{code}\n```"
CODE_PROMPT = "Write the Python function `{signature}`: {summary}"
KINDS = ("doc", "code")


def _summary(docstring: str) -> str | None:
    first = docstring.strip().split("\n\n", 1)[0]
    line = " ".join(first.split())
    if not 12 <= len(line) <= 100 or not line[0].isalpha():
        return None
    return line


def _without_docstring(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str | None:
    node = ast.parse(ast.unparse(node)).body[0]  # a detached copy
    node.body = node.body[1:] or [ast.Pass()]
    node.decorator_list = []
    try:
        return ast.unparse(node)
    except (ValueError, RecursionError):
        return None


def function_records(source: str, module: str, max_code_chars: int = 400) -> Iterator[tuple[str, str, str, str]]:
    """(qualified name, signature, summary, code without docstring) for each documented, short function."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError):
        return
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        doc = ast.get_docstring(node)
        summary = _summary(doc) if doc else None
        if summary is None or len(node.body) < 2:
            continue
        code = _without_docstring(node)
        if code is None or len(code) > max_code_chars:
            continue
        signature = f"{node.name}({ast.unparse(node.args)})"
        yield f"{module}.{node.name}:{node.lineno}", signature, summary, code


def is_heldout(name: str, fraction: float) -> bool:
    h = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") / 2**64
    return h < fraction


def demo_records(files: int | None = 200, kinds: tuple[str, ...] = KINDS, heldout: float = 0.1,
                 split: str = "train", max_code_chars: int = 400) -> Iterator[dict]:
    """Messages records from the stdlib's documented functions; split is "train" or "heldout"."""
    from slm.data.sources import stdlib_dir, stdlib_files

    root = stdlib_dir()
    for path in stdlib_files(files):
        try:
            source = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        module = ".".join(path.relative_to(root).with_suffix("").parts)
        for name, signature, summary, code in function_records(source, module, max_code_chars):
            if is_heldout(name, heldout) != (split == "heldout"):
                continue
            for kind in kinds:
                if kind == "doc":
                    user, answer = DOC_PROMPT.format(code=code), summary
                else:
                    user, answer = CODE_PROMPT.format(signature=signature, summary=summary), f"```python\n{code}\n```"
                yield {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user},
                                    {"role": "assistant", "content": answer}], "kind": kind, "source": name}


def write_demo_dataset(path: str | Path, files: int | None = 200, kinds: tuple[str, ...] = KINDS,
                       heldout: float = 0.1, split: str = "train", limit: int | None = None) -> int:
    """Write the demo records as JSONL (atomically); returns how many were written."""
    from slm.io import atomic_write_text

    lines = []
    for record in demo_records(files, kinds, heldout, split):
        lines.append(json.dumps(record, ensure_ascii=False))
        if limit and len(lines) >= limit:
            break
    atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))
    return len(lines)
