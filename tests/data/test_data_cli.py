import json

import pytest

from slm.cli import main
from slm.data import PackedLoader, read_index


def sources_of(out, split="train"):
    return [json.loads(line)["source"] for line in (out / f"{split}.docs.jsonl").read_text().splitlines()]


def test_prepare_mixed_sources_then_info(tmp_path, byte_tokenizer_dir, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "a.py").write_text("def f():\n    return 1\n")
    (folder / "b.txt").write_text("plain text, skipped by the glob\n")
    (tmp_path / "d.jsonl").write_text(json.dumps({"body": "from jsonl"}) + "\n")
    pq.write_table(pa.table({"content": ["from parquet"]}), tmp_path / "d.parquet")
    out = tmp_path / "data"
    rc = main(["data", "prepare", str(out), "--tokenizer", str(byte_tokenizer_dir), "--source", "stdlib",
               "--limit-files", "3", "--source", str(folder), "--glob", "**/*.py", "--jsonl", str(tmp_path / "d.jsonl"),
               "--field", "body", "--parquet", str(tmp_path / "d.parquet"), "--column", "content",
               "--val-fraction", "0", "--workers", "1"])
    assert rc == 0
    got = sources_of(out)
    assert got[0].startswith("stdlib:") and len(got) == 6
    assert got[3:] == [(folder / "a.py").as_posix(), f"{tmp_path / 'd.jsonl'}:1",
                       f"{(tmp_path / 'd.parquet').as_posix()}#0"]
    index = read_index(out)
    assert index["sources"][0] == "stdlib limit=3" and index["splits"]["train"]["documents"] == 6
    capsys.readouterr()
    assert main(["data", "info", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "train:      6 documents" in shown and f"{index['splits']['train']['tokens']:,} tokens" in shown
    loader = PackedLoader(out, seq_len=8, batch_size=2)
    assert next(iter(loader))["input_ids"].shape == (2, 8)


def test_hf_dataset_source_from_a_local_file(tmp_path, byte_tokenizer_dir, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"text": f"record number {i}"}) + "\n" for i in range(4)))
    out = tmp_path / "data"
    assert main(["data", "prepare", str(out), "--tokenizer", str(byte_tokenizer_dir), "--hf-dataset",
                 str(tmp_path / "d.jsonl"), "--val-fraction", "0", "--workers", "1"]) == 0
    assert sources_of(out) == [f"hf:{tmp_path / 'd.jsonl'}:train#{i}" for i in range(4)]


def test_malformed_jsonl_is_a_one_line_error_naming_the_line(tmp_path, byte_tokenizer_dir, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": broken\n')
    out = tmp_path / "data"
    rc = main(["data", "prepare", str(out), "--tokenizer", str(byte_tokenizer_dir), "--jsonl", str(bad),
               "--workers", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith(f"slm data: error: {bad}:2: invalid JSON")
    assert not out.exists()
    assert main(["data", "prepare", str(out), "--tokenizer", str(byte_tokenizer_dir), "--jsonl", str(bad),
                 "--skip-bad-lines", "--val-fraction", "0", "--workers", "1"]) == 0
    assert sources_of(out) == [f"{bad}:1"]


@pytest.mark.parametrize("argv, message", [
    (["data", "info", "."], "not a prepared data directory"),
    (["data", "prepare", "out", "--tokenizer", "no-such-tokenizer"], "tokenizer directory not found"),
])
def test_user_errors_exit_2(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert message in capsys.readouterr().err
