import json
import re

import pytest

from slm.data.sources import (Document, folder_documents, hf_documents, jsonl_documents, parquet_documents,
                              stdlib_documents, stdlib_files)
from slm.errors import SlmError


def test_stdlib_documents_carry_their_relative_path():
    docs = list(stdlib_documents(5))
    assert 0 < len(docs) <= 5
    first = stdlib_files(1)[0]
    assert docs[0].source == "stdlib:" + first.name and docs[0].text == first.read_text(encoding="utf-8")


def test_folder_reads_text_and_code_skips_binaries_and_vcs(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("print('a')\n")
    (tmp_path / "notes.md").write_text("# notes\n")
    (tmp_path / "blob.dat").write_bytes(b"abc\x00def")             # NUL byte: binary whatever the suffix
    (tmp_path / "latin.txt").write_bytes("caf\xe9".encode("latin-1"))  # not UTF-8
    (tmp_path / "img.png").write_text("not really a png")           # known binary suffix
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_text("[core]\n")
    skipped = []
    docs = list(folder_documents(tmp_path, skipped=skipped.append))
    assert [d.source for d in docs] == [(tmp_path / "notes.md").as_posix(), (tmp_path / "pkg" / "a.py").as_posix()]
    assert docs[1].text == "print('a')\n"
    assert sorted(p.name for p in skipped) == ["blob.dat", "img.png", "latin.txt"]
    only_py = list(folder_documents(tmp_path, patterns=["**/*.py"]))
    assert [d.text for d in only_py] == ["print('a')\n"]


def test_folder_missing_is_a_clear_error(tmp_path):
    with pytest.raises(SlmError, match="not found"):
        list(folder_documents(tmp_path / "nope"))


def test_jsonl_named_field_and_line_provenance(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"text": "one", "id": 1}) + "\n\n" + json.dumps({"text": "two"}) + "\n")
    docs = list(jsonl_documents(f, "text"))
    assert docs == [Document("one", f"{f}:1"), Document("two", f"{f}:3")]


@pytest.mark.parametrize("line, why", [
    ('{"text": "ok"', "invalid JSON"),
    ('{"body": "no text field"}', "no field 'text'"),
    ('["a", "list"]', "expected a JSON object, got list"),
    ('{"text": 42}', "field 'text' holds int, not a string"),
    ('{"text": "caf\xe9"}', "not UTF-8 (byte 14)"),
])
def test_malformed_jsonl_line_is_reported_with_file_and_line(tmp_path, line, why, capsys):
    f = tmp_path / "bad.jsonl"
    f.write_bytes(('{"text": "fine"}\n' + line + '\n{"text": "after"}\n').encode("latin-1"))  # ASCII but one line
    with pytest.raises(SlmError, match=re.escape(f"{f}:2: {why}")):
        list(jsonl_documents(f, "text"))
    docs = list(jsonl_documents(f, "text", skip_bad=True))
    assert [d.text for d in docs] == ["fine", "after"]
    assert f"{f}:2: {why}" in capsys.readouterr().err


def _write_parquet(path, rows, column="text"):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({column: rows, "n": list(range(len(rows)))}), path, row_group_size=2)


def test_parquet_named_column_across_row_groups(tmp_path):
    f = tmp_path / "d.parquet"
    _write_parquet(f, ["a", "b", None, "d", "e"])
    docs = list(parquet_documents(f, "text", batch_rows=2))
    assert [d.text for d in docs] == ["a", "b", "d", "e"]          # nulls are not documents
    assert [d.source for d in docs][2] == f"{f.as_posix()}#3"      # provenance keeps the row number
    with pytest.raises(SlmError, match="no column 'body'"):
        list(parquet_documents(f, "body"))


def test_hf_datasets_on_local_files_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    f = tmp_path / "d.jsonl"
    f.write_text("".join(json.dumps({"content": f"row {i}"}) + "\n" for i in range(3)))
    docs = list(hf_documents(str(f), split="train", field="content"))
    assert [d.text for d in docs] == ["row 0", "row 1", "row 2"]
    assert docs[1].source == f"hf:{f}:train#1"
    p = tmp_path / "d.parquet"
    _write_parquet(p, ["x", "y"])
    assert [d.text for d in hf_documents(str(p), field="text")] == ["x", "y"]
    with pytest.raises(SlmError, match="no field 'text'"):
        list(hf_documents(str(f), field="text"))
    with pytest.raises(SlmError, match="cannot load the dataset"):
        list(hf_documents(str(tmp_path / "missing-dataset-dir")))


def test_single_file_source_and_unknown_kind(tmp_path):
    from slm.data.sources import open_source

    (tmp_path / "a.md").write_text("# title\n")
    (tmp_path / "b.bin").write_bytes(b"\x00\x01")
    assert [d.text for d in open_source("file", str(tmp_path / "a.md"))] == ["# title\n"]
    assert list(open_source("file", str(tmp_path / "b.bin"))) == []       # a binary file is not a document
    assert [d.source for d in open_source("folder", str(tmp_path))] == [(tmp_path / "a.md").as_posix()]
    with pytest.raises(SlmError, match="unknown source kind"):
        open_source("csv", "x")
    with pytest.raises(SlmError, match="not found"):
        list(open_source("file", str(tmp_path / "missing.txt")))
