"""`slm pretrain` on a tiny prepared corpus: two processes under torchrun (FSDP2), then resumed by one."""
import json

import pytest
import yaml

import slm
from slm.cli import main
from slm.data.shards import prepare
from slm.data.sources import iter_stdlib_texts, stdlib_documents

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrain-data")
    tok = slm.train_tokenizer(iter_stdlib_texts(20), vocab_size=300)
    tok.save_pretrained(str(root / "tok"))
    prepare(stdlib_documents(20), root / "tok", root / "data", val_fraction=0.2, workers=1, progress=False)
    return root / "data"


def test_pretrain_cli_torchrun_then_resume(tmp_path, data_dir, capsys):
    recipe = {
        "model": {"preset": "nano", "config": {"dim": 32, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2,
                                               "ffn_dim": 64, "max_seq_len": 64}},
        "data": {"dir": str(data_dir), "seq_len": 32, "batch_size": 4},
        "train": {"max_steps": 6, "lr": 3e-3, "warmup_steps": 2, "log_every": 1, "eval_every": 3,
                  "eval_batches": 2, "save_every": 3, "progress": False},
        "out": str(tmp_path / "run"),
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["pretrain", str(path), "--devices", "2", "--set", "train.strategy=fsdp"]) == 0
    run = tmp_path / "run"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == list(range(1, 7))
    assert (run / "loss.png").is_file() and (run / "recipe.yaml").is_file()
    model, tokenizer = slm.load(run / "checkpoints" / "step-000006")
    assert model.config.vocab_size == len(tokenizer) and model.config.dim == 32

    capsys.readouterr()
    assert main(["pretrain", str(path), "--resume", "auto", "--set", "train.max_steps=8"]) == 0
    out = capsys.readouterr().out
    assert "resumed from" in out and "step-000006" in out and "written by 2 process(es)" in out
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == list(range(1, 9))


def test_pretrain_cli_reports_bad_input(tmp_path, capsys):
    assert main(["pretrain", "--set", f"data.dir={tmp_path}/missing"]) == 2
    assert "index.json" in capsys.readouterr().err
    assert main(["pretrain", "--set", "train.max_step=3"]) == 2
    assert "unknown key" in capsys.readouterr().err
