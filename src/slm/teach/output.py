"""Append-only JSONL output with a cursor: records are added, never rewritten; a kill loses no finished record.

    out = JsonlOutput("runs/teach/out.jsonl")     # reads what is there, cuts a torn last line
    done = out.records                            # the records already written, in order
    out.append({"id": "a", "text": "..."})        # one line, flushed and fsynced, then the cursor moves

The cursor (`out.jsonl.cursor`, written atomically after each record) holds the byte length and the record
count of the file's confirmed part. On opening, anything past the cursor (a line torn by a kill) is cut;
a file shorter than its cursor, or one whose confirmed part does not parse, is refused with one line.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from slm.errors import SlmError
from slm.io import atomic_write_text


class JsonlOutput:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.cursor_path = self.path.with_name(self.path.name + ".cursor")
        self.records: list[dict] = []
        size = self.path.stat().st_size if self.path.exists() else 0
        if self.cursor_path.exists():
            try:
                cursor = json.loads(self.cursor_path.read_text())
                confirmed = int(cursor["bytes"])
            except (ValueError, KeyError, TypeError):
                raise SlmError(f"{self.cursor_path} is not an output cursor; delete it and the output to start over") \
                    from None
            if size < confirmed:
                raise SlmError(f"{self.path} is shorter than its cursor says ({size} < {confirmed} bytes): it was "
                               "edited or truncated; write to a new output")
        else:  # no cursor: a file we did not write, or one killed before its first cursor; keep whole lines
            confirmed = 0
            if size:
                data = self.path.read_bytes()
                confirmed = data.rfind(b"\n") + 1
        if size > confirmed:
            with self.path.open("r+b") as f:
                f.truncate(confirmed)
        if confirmed:
            with self.path.open("rb") as f:
                for lineno, raw in enumerate(f, 1):
                    try:
                        record = json.loads(raw)
                    except ValueError:
                        raise SlmError(f"{self.path}:{lineno}: not a JSON line; write to a new output") from None
                    if not isinstance(record, dict):
                        raise SlmError(f"{self.path}:{lineno}: not a JSON object; write to a new output")
                    self.records.append(record)
        self.bytes = confirmed
        self._file = None

    def append(self, record: dict) -> None:
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("ab")
        self._file.write(line)
        self._file.flush()
        os.fsync(self._file.fileno())
        self.bytes += len(line)
        self.records.append(record)
        atomic_write_text(self.cursor_path, json.dumps({"bytes": self.bytes, "records": len(self.records)}))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
