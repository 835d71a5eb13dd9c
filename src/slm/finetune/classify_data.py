"""Embedded classification tasks from the Python standard library (real text, real labels, on every machine).

    docstring-package   text = a function's or class's docstring (first paragraph), label = its top-level package
                        (the PACKAGES most rich in docstrings): 6-way topic classification.
    docstring-signature text = a docstring, text_pair = a signature, label = match | mismatch (the signature of
                        another function of the same package half of the time): a pair task, like MRPC/QNLI.

Splits are by a hash of the function's qualified name (1 in 5 is test), so train and test never share a function.
"""
from __future__ import annotations

import ast
import hashlib
import random
from pathlib import Path

from slm.data.sources import stdlib_dir, stdlib_files
from slm.io import atomic_write_jsonl

PACKAGES = ("asyncio", "email", "multiprocessing", "xml", "importlib", "http")
TASKS = ("docstring-package", "docstring-signature")
MAX_CHARS = 320  # a docstring's first paragraph, cut: rows stay within a 128-token model


def _functions():
    """(package, qualified name, first docstring paragraph, signature) for documented defs in PACKAGES."""
    root = stdlib_dir()
    for path in stdlib_files():
        parts = path.relative_to(root).parts
        if len(parts) < 2 or parts[0] not in PACKAGES:
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            doc = ast.get_docstring(node)
            if not doc or len(doc) < 20:
                continue
            text = " ".join(doc.split("\n\n")[0].split())[:MAX_CHARS]
            if isinstance(node, ast.ClassDef):
                signature = f"class {node.name}"
            else:
                signature = f"def {node.name}({ast.unparse(node.args)})"
            yield parts[0], f"{'/'.join(parts)}:{node.name}:{node.lineno}", text, signature[:MAX_CHARS]


def _is_test(name: str) -> bool:
    return hashlib.sha256(name.encode()).digest()[0] % 5 == 0


def task_examples(task: str, split: str = "train", seed: int = 0) -> list[dict]:
    """The records of one embedded task: dicts with text, (text_pair,) label."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; embedded tasks: {', '.join(TASKS)}")
    items = [f for f in _functions() if _is_test(f[1]) == (split == "test")]
    if task == "docstring-package":
        return [{"text": text, "label": package} for package, _, text, _ in items]
    rng = random.Random(f"docstring-signature:{split}:{seed}")
    by_package: dict[str, list[str]] = {}
    for package, _, _, signature in items:
        by_package.setdefault(package, []).append(signature)
    out = []
    for package, _, text, signature in items:
        if rng.random() < 0.5:
            out.append({"text": text, "text_pair": signature, "label": "match"})
        else:
            other = rng.choice(by_package[package])
            if other != signature:
                out.append({"text": text, "text_pair": other, "label": "mismatch"})
    return out


def write_task(path: str | Path, task: str = "docstring-package", split: str = "train") -> int:
    records = task_examples(task, split)
    atomic_write_jsonl(path, records)
    return len(records)
