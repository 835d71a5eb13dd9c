"""Seq2seq SFT through `slm finetune`: pairs load with clear errors, an encoder-decoder trains on them (loss falls,
exact resume), a decoder with --task seq2seq is refused in one line."""
import json

import pytest
import torch

import slm
from slm.cli import main
from slm.errors import SlmError
from slm.finetune.seq2seq import Seq2SeqBatches, load_pairs
from slm.models import build_model, preset
from slm.tokenizer import train_tokenizer


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory):
    tok = train_tokenizer(["reverse the words of a line", "sort these words please"] * 30, vocab_size=420,
                          kind="t5-bpe")
    model = build_model(preset("t5-tiny", vocab_size=len(tok), dim=32, n_layers=1, n_heads=2, head_dim=16,
                               ffn_dim=64, dropout=0.0, max_seq_len=24)).init_weights(0)
    return slm.save(model, tok, tmp_path_factory.mktemp("t5") / "model")


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_pairs_end_with_eos_and_overlong_targets_are_one_line_errors(t5_dir, tmp_path):
    _, tok = slm.load(t5_dir)
    data = _write(tmp_path / "d.jsonl", [{"input": "reverse: a b", "target": "b a"},
                                         {"prompt": "sort: b a", "completion": "a b"}])
    pairs = load_pairs(data, tok, 24, 24)
    assert len(pairs) == 2 and all(p.input_ids[-1] == p.labels[-1] == tok.eos_token_id for p in pairs)
    long = _write(tmp_path / "long.jsonl", [{"input": "x", "target": "words " * 40}])
    with pytest.raises(SlmError, match=r"long.jsonl:1: the target has \d+ tokens, more than the decoder's limit of 24"):
        load_pairs(long, tok, 24, 24)
    cut = load_pairs(long, tok, 24, 24, overlong="truncate")
    assert len(cut[0].labels) == 24 and cut[0].labels[-1] == tok.eos_token_id
    with pytest.raises(SlmError, match="expected 'input' and 'target'"):
        load_pairs(_write(tmp_path / "bad.jsonl", [{"text": "x"}]), tok, 24, 24)


def test_batches_resume_exactly():
    from slm.finetune.seq2seq import Pair

    pairs = [Pair([i + 2, 1], [i + 3, 1]) for i in range(10)]
    a = Seq2SeqBatches(pairs, 3, 0, seed=1)
    it = iter(a)
    first = [next(it) for _ in range(5)]
    b = Seq2SeqBatches(pairs, 3, 0, seed=1)
    b.load_state_dict(Seq2SeqBatches(pairs, 3, 0, seed=1).state_dict() | {"position": 2})
    assert torch.equal(next(iter(b))["input_ids"], first[2]["input_ids"])


def test_finetune_cli_trains_an_encoder_decoder(t5_dir, tmp_path, capsys):
    rows = [{"input": f"reverse: {a} {b}", "target": f"{b} {a}"} for a in "abcd" for b in "wxyz"]
    data = _write(tmp_path / "train.jsonl", rows)
    assert main(["finetune", "--model", str(t5_dir), "--data", str(data), "--out", str(tmp_path / "run"),
                 "--steps", "30", "--lr", "3e-3", "--batch-size", "8", "--val-data", str(data),
                 "--set", "train.progress=false", "train.warmup_steps=2"]) == 0
    assert "input/target pair(s)" in capsys.readouterr().out
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [m["loss"] for m in metrics if "loss" in m]
    assert losses[-1] < losses[0]
    [ckpt] = (tmp_path / "run" / "checkpoints").iterdir()
    model, _ = slm.load(ckpt)
    assert model.config.arch == "t5"


def test_decoder_with_seq2seq_task_is_refused(tmp_path, capsys):
    tok = train_tokenizer(["a b c d"] * 20, vocab_size=300)
    model = build_model(preset("nano", vocab_size=len(tok), dim=32, n_layers=1, n_heads=2, n_kv_heads=1,
                               ffn_dim=64, max_seq_len=32))
    slm.save(model, tok, tmp_path / "dec")
    data = _write(tmp_path / "d.jsonl", [{"input": "a", "target": "b"}])
    assert main(["finetune", "--task", "seq2seq", "--model", str(tmp_path / "dec"), "--data", str(data),
                 "--out", str(tmp_path / "run")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not an encoder-decoder: --task seq2seq needs one" in err[0]
