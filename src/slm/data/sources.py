"""Where text comes from. The default corpus is the Python standard library source of the running
interpreter: real text and code, present on every machine, no download."""
from __future__ import annotations

import sysconfig
from pathlib import Path
from typing import Iterator


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(limit: int | None = None) -> list[Path]:
    """The interpreter's own .py files, sorted for determinism; tests and site-packages left out."""
    root = stdlib_dir()
    skip = {"site-packages", "dist-packages", "test", "tests", "idlelib", "__pycache__", "lib2to3"}
    files = sorted(p for p in root.rglob("*.py") if not skip.intersection(p.relative_to(root).parts))
    return files[:limit] if limit else files


def iter_stdlib_texts(limit: int | None = None) -> Iterator[str]:
    for path in stdlib_files(limit):
        try:
            yield path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # a handful of stdlib files are Latin-1 test fixtures or unreadable: not corpus
