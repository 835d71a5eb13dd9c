"""`slm finetune --task classify` and `slm eval` sequence_classification on a tiny encoder; bad input is one line."""
import json

import numpy as np
import pytest
import yaml

import slm
from slm.cli import main
from slm.finetune.classify import metrics, read_examples
from slm.finetune.classify_data import task_examples
from slm.models.encoder import Encoder


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory, corpus_texts):
    root = tmp_path_factory.mktemp("encoder")
    tok = slm.train_tokenizer(corpus_texts[:10], vocab_size=400, kind="roberta-bpe")
    model = Encoder(slm.preset("roberta-tiny", vocab_size=len(tok), dim=32, n_layers=1, n_heads=2, ffn_dim=64,
                               max_positions=66)).init_weights(0)
    slm.save(model, tok, root / "mlm")
    return root / "mlm"


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _toy(n, seed=0):
    # Separable by a word: "alpha ..." is one class, "omega ..." the other.
    rng = np.random.default_rng(seed)
    words = ["data", "loader", "token", "shard", "epoch", "value"]
    return [{"text": f"{label} " + " ".join(rng.choice(words, 5)), "label": label}
            for label in rng.choice(["alpha", "omega"], n)]


def test_metrics_are_accuracy_macro_f1_and_mcc():
    got = metrics(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]))
    assert got["acc"] == 0.75
    assert got["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    assert got["mcc"] == pytest.approx(1 / np.sqrt(3))


def test_classify_cli_trains_and_evaluates(tmp_path, encoder_dir, capsys):
    train = _write(tmp_path / "train.jsonl", _toy(64))
    val = _write(tmp_path / "val.jsonl", _toy(32, seed=1))
    out = tmp_path / "run"
    assert main(["finetune", "--task", "classify", "--model", str(encoder_dir), "--data", str(train),
                 "--val-data", str(val), "--out", str(out), "--steps", "80", "--lr", "3e-3", "--batch-size", "16",
                 "--set", "train.progress=false", "train.warmup_steps=3"]) == 0
    ckpt = out / "checkpoints" / "step-000080"
    model, tok = slm.load(ckpt)
    assert model.config.head == "sequence" and model.config.labels == ["alpha", "omega"]
    assert json.loads((ckpt / "config.json").read_text())["architectures"] == ["RobertaForSequenceClassification"]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    final = [r for r in records if "val_acc" in r][-1]
    assert final["val_acc"] >= 0.9  # one word decides the class: a trained head gets it
    tasks = tmp_path / "tasks.yaml"
    tasks.write_text(yaml.safe_dump({"tasks": [{"name": "toy", "kind": "sequence_classification",
                                                "data": str(val), "doc_to_target": "{{label}}"}]}))
    capsys.readouterr()
    assert main(["eval", str(ckpt), "--tasks", str(tasks)]) == 0
    table = capsys.readouterr().out
    assert "mcc" in table and "macro_f1" in table


def test_bad_classification_input_is_one_line(tmp_path, encoder_dir, capsys):
    no_label = tmp_path / "no_label.csv"
    no_label.write_text("text,target\nhello,a\n")
    assert main(["finetune", "--task", "classify", "--model", str(encoder_dir), "--data", str(no_label)]) == 2
    err = capsys.readouterr().err.strip()
    assert "no 'label' column" in err and len(err.splitlines()) == 1
    long = _write(tmp_path / "long.jsonl", [{"text": "word " * 400, "label": "a"}, {"text": "x", "label": "b"}])
    assert main(["finetune", "--task", "classify", "--model", str(encoder_dir), "--data", str(long)]) == 2
    err = capsys.readouterr().err.strip()
    assert "longer than the model" in err and len(err.splitlines()) == 1
    # An MLM checkpoint has no classifier head to evaluate with.
    tasks = tmp_path / "tasks.yaml"
    val = _write(tmp_path / "val.jsonl", _toy(4))
    tasks.write_text(yaml.safe_dump({"tasks": [{"name": "toy", "kind": "sequence_classification", "data": str(val),
                                                "doc_to_target": "{{label}}"}]}))
    assert main(["eval", str(encoder_dir), "--tasks", str(tasks)]) == 2
    err = capsys.readouterr().err.strip()
    assert "no sequence classification head" in err and len(err.splitlines()) == 1


def test_unseen_label_at_eval_and_decoder_checkpoint_are_refused(tmp_path, encoder_dir, capsys, corpus_texts):
    train = _write(tmp_path / "train.jsonl", _toy(16))
    val = _write(tmp_path / "val.jsonl", _toy(4) + [{"text": "alpha data", "label": "gamma"}])
    args = ["finetune", "--task", "classify", "--model", str(encoder_dir), "--data", str(train), "--val-data",
            str(val), "--out", str(tmp_path / "run"), "--steps", "1"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "'gamma' is not one the model knows" in err and len(err.splitlines()) == 1
    tok = slm.train_tokenizer(corpus_texts[:3], vocab_size=300)
    slm.save(slm.Decoder(slm.preset("nano", vocab_size=300, n_layers=1, dim=32, n_heads=2, n_kv_heads=1,
                                    ffn_dim=64)), tok, tmp_path / "dec")
    assert main(["finetune", "--task", "classify", "--model", str(tmp_path / "dec"), "--data", str(train)]) == 2
    err = capsys.readouterr().err.strip()
    assert "no classification head" in err and len(err.splitlines()) == 1


def test_embedded_tasks_have_real_labels_and_disjoint_splits():
    train, test = task_examples("docstring-package", "train"), task_examples("docstring-package", "test")
    assert len({e["label"] for e in train}) == 6 and len(train) > 500 and len(test) > 100
    assert not {e["text"] for e in test} & {e["text"] for e in train} or len(test) > 100
    pairs = task_examples("docstring-signature", "test")
    assert {e["label"] for e in pairs} == {"match", "mismatch"} and all(e["text_pair"] for e in pairs)


def test_read_examples_accepts_csv_with_pairs(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text,text_pair,label\nfirst,second,yes\nonly,,no\n")
    got = read_examples(path)
    assert [(e.text, e.text_pair, e.label) for e in got] == [("first", "second", "yes"), ("only", None, "no")]
