"""The append-only output: a torn last line is cut, a confirmed record is never lost or rewritten."""
from __future__ import annotations

import json

import pytest

from slm.errors import SlmError
from slm.teach import JsonlOutput


def test_append_then_reopen(tmp_path):
    path = tmp_path / "o.jsonl"
    with JsonlOutput(path) as out:
        out.append({"id": 1})
        out.append({"id": 2, "text": "é"})
    assert json.loads((tmp_path / "o.jsonl.cursor").read_text()) == {"bytes": path.stat().st_size, "records": 2}
    assert [r["id"] for r in JsonlOutput(path).records] == [1, 2]


def test_a_torn_tail_past_the_cursor_is_cut_and_earlier_bytes_are_untouched(tmp_path):
    path = tmp_path / "o.jsonl"
    with JsonlOutput(path) as out:
        out.append({"id": 1})
    before = path.read_bytes()
    with path.open("ab") as f:
        f.write(b'{"id": 2, "te')  # a kill in the middle of a write
    out = JsonlOutput(path)
    assert [r["id"] for r in out.records] == [1] and path.read_bytes() == before
    out.append({"id": 2})
    out.close()
    assert path.read_bytes().startswith(before) and len(JsonlOutput(path).records) == 2


def test_without_a_cursor_whole_lines_are_kept(tmp_path):
    path = tmp_path / "o.jsonl"
    path.write_text('{"id": 1}\n{"id": 2}\n{"id"')
    assert [r["id"] for r in JsonlOutput(path).records] == [1, 2]
    assert path.read_text() == '{"id": 1}\n{"id": 2}\n'


def test_a_file_shorter_than_its_cursor_or_not_jsonl_is_refused(tmp_path):
    path = tmp_path / "o.jsonl"
    with JsonlOutput(path) as out:
        out.append({"id": 1})
    path.write_text("")
    with pytest.raises(SlmError, match="shorter than its cursor"):
        JsonlOutput(path)
    (tmp_path / "o.jsonl.cursor").unlink()
    path.write_text("not json\n")
    with pytest.raises(SlmError, match=r"o.jsonl:1: not a JSON line"):
        JsonlOutput(path)
