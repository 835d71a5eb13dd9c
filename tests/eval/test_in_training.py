"""In-training evaluation: the trainer runs slm.eval evaluators on the live model every `eval_every` steps."""
import copy
import json

import pytest
import torch
import yaml

from slm.eval import evaluate, load_tasks, make_evaluator

TEXT = "the cat sat on the mat . the cat sat on the mat ."


@pytest.mark.slow
def test_trainer_runs_eval_tasks_every_n_steps(model, tokenizer, tmp_path):
    from slm.train.trainer import TrainConfig, Trainer

    (tmp_path / "d.jsonl").write_text(json.dumps({"text": TEXT}) + "\n")
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({"tasks": [{"name": "ppl", "kind": "perplexity",
                                                                 "data": "d.jsonl"}]}))
    tasks = load_tasks(tmp_path / "t.yaml")
    live = copy.deepcopy(model).train()
    before = evaluate(live, tokenizer, tasks)["ppl"]["bits_per_byte"]
    assert live.training  # evaluate gives the model back in the mode it came in

    ids = torch.tensor([[tokenizer.bos_token_id] + tokenizer.encode(TEXT)])
    batch = {"input_ids": ids[:, :-1], "labels": ids[:, 1:]}
    config = TrainConfig(max_steps=6, lr=1e-2, min_lr=1e-3, warmup_steps=0, eval_every=3, log_every=1,
                         progress=False, device="cpu", weight_decay=0.0)
    trainer = Trainer(live, config, train_data=[batch] * 100, out_dir=tmp_path / "run", tokenizer=tokenizer,
                      evaluators=[make_evaluator(tasks, tokenizer)])
    trainer.fit()
    evals = [r for r in trainer.history if "eval/ppl/bits_per_byte" in r]
    assert [r["step"] for r in evals] == [3, 6]
    # training on the very text lowers its bits per byte, and the last reading is the final model's
    assert evals[-1]["eval/ppl/bits_per_byte"] < before
    final = evaluate(trainer.model, tokenizer, tasks)["ppl"]["bits_per_byte"]
    assert evals[-1]["eval/ppl/bits_per_byte"] == pytest.approx(final, rel=1e-5)
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("eval/ppl/bits_per_byte" in r for r in logged)
