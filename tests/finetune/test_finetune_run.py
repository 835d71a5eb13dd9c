"""`slm finetune` end to end on a tiny model: exact resume (full and LoRA), CLI outputs, bad data reported."""
import json

import pytest
import torch
from safetensors.torch import load_file

import slm
from slm.cli import main
from slm.finetune.run import build_config, finetune
from slm.models import Decoder, ModelConfig

pytestmark = pytest.mark.slow


@pytest.fixture
def base_dir(tmp_path, tokenizer):
    cfg = ModelConfig(arch="llama", vocab_size=len(tokenizer), dim=32, n_layers=2, n_heads=4, n_kv_heads=2,
                      ffn_dim=64, max_seq_len=128)
    return slm.save(Decoder(cfg).init_weights(seed=0), tokenizer, tmp_path / "base")


@pytest.fixture
def data_file(tmp_path, write_jsonl):
    records = []
    for i in range(40):
        records.append({"messages": [{"role": "user", "content": f"What is {i} plus {i % 7}?"},
                                     {"role": "assistant", "content": f"{i} plus {i % 7} is {i + i % 7}."}]})
        records.append({"prompt": f"Repeat the word {'abc'[i % 3] * (i % 5 + 1)}.",
                        "completion": 'abc'[i % 3] * (i % 5 + 1)})
    return write_jsonl(tmp_path / "train.jsonl", records)


def run_config(base_dir, data_file, out, steps, lora):
    raw = {"model": str(base_dir), "out": str(out),
           "data": {"path": str(data_file), "seq_len": 64, "batch_size": 2},
           "train": {"max_steps": steps, "decay_steps": 6, "warmup_steps": 2, "lr": 3e-3, "save_every": 3,
                     "progress": False, "log_every": 1, "device": "cpu"}}
    if lora:
        raw["lora"] = {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj", "down_proj"]}
    return build_config(raw)


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_resume_continues_exactly(tmp_path, base_dir, data_file, lora):
    say = lambda *_: None  # noqa: E731
    straight = finetune(*run_config(base_dir, data_file, tmp_path / "a", 6, lora), say=say)
    finetune(*run_config(base_dir, data_file, tmp_path / "b", 3, lora), say=say)  # "interrupted" after step 3
    resumed = finetune(*run_config(base_dir, data_file, tmp_path / "b", 6, lora), resume="auto", say=say)
    assert straight["step"] == resumed["step"] == 6
    a, b = (load_file(f"{r['checkpoint']}/model.safetensors") for r in (straight, resumed))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    base = load_file(base_dir / "model.safetensors")
    assert not torch.equal(a["model.layers.0.self_attn.q_proj.weight"], base["model.layers.0.self_attn.q_proj.weight"])
    if lora:  # only the adapted weights moved
        assert torch.equal(a["model.layers.0.self_attn.k_proj.weight"], base["model.layers.0.self_attn.k_proj.weight"])
        assert torch.equal(a["model.layers.0.self_attn.v_proj.weight"], a["model.layers.0.self_attn.v_proj.weight"])
        assert not torch.equal(a["model.layers.1.mlp.down_proj.weight"], base["model.layers.1.mlp.down_proj.weight"])


def test_cli_lora_run_writes_a_plain_hf_model_and_metrics(tmp_path, base_dir, data_file, capsys):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "run"
    rc = main(["finetune", "--model", str(base_dir), "--data", str(data_file), "--out", str(out), "--lora",
               "--lora-r", "4", "--steps", "2", "--seq-len", "64", "--batch-size", "2", "--val-fraction", "0.1",
               "--set", "train.progress=false", "train.log_every=1", "train.device=cpu"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "assistant tokens found by generation-markers" in text and "LoRA r=4" in text
    ckpt = out / "checkpoints" / "step-000002"
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2] and any("val_loss" in r for r in records)
    model, tok = slm.load(ckpt)
    hf = AutoModelForCausalLM.from_pretrained(ckpt, local_files_only=True).eval()
    ids = torch.tensor([tok.encode("def f(x):\n    return x")])
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, model(ids), atol=1e-4, rtol=1e-4)
    assert (ckpt / "adapter" / "adapter_model.safetensors").is_file()


def test_cli_reports_a_malformed_line_with_file_and_line(tmp_path, base_dir, data_file, capsys):
    bad = tmp_path / "bad.jsonl"
    lines = data_file.read_text().splitlines()
    bad.write_text("\n".join(lines[:3] + ['{"messages": [}'] + lines[3:8]) + "\n")
    args = ["finetune", "--model", str(base_dir), "--data", str(bad), "--out", str(tmp_path / "r"), "--steps", "1",
            "--seq-len", "64", "--set", "train.progress=false", "train.device=cpu"]
    assert main(args) == 2
    assert f"{bad}:4: invalid JSON" in capsys.readouterr().err
    assert main(args + ["--on-bad-line", "skip", "--no-pack"]) == 0  # and the padded path through the trainer
    captured = capsys.readouterr()
    assert f"{bad}:4: invalid JSON" in captured.err and "1 malformed line(s) skipped" in captured.err
    assert "8 record(s) read, 1 malformed line(s) skipped" in captured.out and "(padded)" in captured.out


def test_cli_errors_are_one_line(tmp_path, base_dir, data_file, capsys):
    assert main(["finetune", "--model", str(base_dir), "--data", str(data_file), "--seq-len", "4096"]) == 2
    assert "exceeds the model's max_seq_len" in capsys.readouterr().err
    assert main(["finetune", "--model", str(base_dir), "--data", str(data_file), "--lora",
                 "--lora-targets", "nope", "--set", "train.device=cpu"]) == 2
    assert "not found" in capsys.readouterr().err


def test_recipes_build(tmp_path):
    from pathlib import Path

    from slm.config import load_recipe

    recipes = sorted(Path(__file__).resolve().parents[2].joinpath("recipes").glob("finetune-*.yaml"))
    assert recipes
    for path in recipes:
        cfg, train = build_config(load_recipe(path))
        assert train.max_steps > 0 and cfg.data.batch_size > 0


def test_rows_default_to_the_datas_length_not_the_models_context(tmp_path, base_dir, data_file, tokenizer):
    from slm.finetune.data import load_sft_examples
    from slm.finetune.run import row_length

    raw = {"model": str(base_dir), "out": str(tmp_path / "run"), "data": {"path": str(data_file), "batch_size": 2},
           "train": {"max_steps": 1, "warmup_steps": 0, "progress": False, "device": "cpu"}}
    said = []
    cfg, train = build_config(raw)
    finetune(cfg, train, say=said.append)
    examples, _ = load_sft_examples(data_file, tokenizer)
    longest = max(len(e.input_ids) for e in examples)
    assert cfg.data.seq_len == -(-longest // 64) * 64 < 128  # the model's context is 128
    assert any(f"rows of {cfg.data.seq_len} tokens" in line for line in said)
    assert row_length(examples, limit=16) == 16  # capped by the context
