"""Atomic writes: user-visible state is written under a temporary name, then renamed into place."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Iterator


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_jsonl(path: str | os.PathLike, records: Iterable) -> Path:
    """One JSON object a line, written atomically; returns the path."""
    import json

    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in records))
    return Path(path)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary directory; on success it replaces `path` whole, on failure it vanishes.

    An existing `path` is kept until the new one is complete, so an interrupted write never
    leaves the user with neither the old nor the new directory.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def iter_jsonl(path: str | os.PathLike, on_bad=None, what: str = "data file"):
    """Yield ("file:line", object) for each line of a JSON Lines file that holds a JSON object.

    Blank lines are skipped. A line that is not UTF-8, not JSON or not an object is passed to
    `on_bad(where, why)` (which may raise, warn or count), or raises SlmError when there is no `on_bad`.
    Callers check the shape of each record themselves and report problems with the same `where`.
    """
    import json

    from slm.errors import SlmError

    def bad(where: str, why: str) -> None:
        if on_bad is None:
            raise SlmError(f"{where}: {why}")
        on_bad(where, why)

    path = Path(path)
    if not path.is_file():
        raise SlmError(f"{what} not found: {path}")
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                bad(where, f"not UTF-8 (byte {e.start + 1})")
                continue
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                bad(where, f"invalid JSON ({e.msg} at column {e.colno})")
                continue
            if not isinstance(record, dict):
                bad(where, f"expected a JSON object, got {type(record).__name__}")
                continue
            yield where, record
