"""lm-eval's own `local-completions` backend pointed at `slm serve` scores like `--model slm` on the same
checkpoint: the same metrics and per-sample log-likelihoods (1e-4), for a multiple-choice and a rolling-perplexity
task defined in local files."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("lm_eval")
sys.path.insert(0, str(Path(__file__).parents[1] / "infer"))  # server_util, shared with the server tests

from test_lm_eval_adapter import TASKS, lm_eval_setup  # noqa: E402,F401  (the checkpoint and task files)

pytestmark = pytest.mark.slow
SCORED = ["slm_mc", "slm_ppl"]


def _evaluate(root, model, model_args):
    import lm_eval
    from lm_eval.tasks import TaskManager

    import slm.eval.lm_eval_adapter  # noqa: F401  registers "slm" beside lm-eval's own backends

    out = lm_eval.simple_evaluate(model=model, model_args=model_args, tasks=SCORED, device="cpu",
                                  task_manager=TaskManager(include_path=str(root)), log_samples=True)
    return out["results"], {t: sorted(out["samples"][t], key=lambda s: s["doc_id"]) for t in SCORED}


def test_local_completions_against_slm_serve_matches_model_slm(lm_eval_setup, monkeypatch):
    from server_util import live_server

    from slm.infer import Engine
    from slm.infer.server import create_app

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-lm-eval")
    root = lm_eval_setup
    ckpt = root / "ckpt"
    # The API backend keeps max_length - 1 tokens for a prompt (one more is generated) and scores rolling windows
    # of max_length - 2: max_length is the server's 32-token context, and --model slm is given the same 30-token
    # windows. (lm-eval drops every request the server refuses, with only a log line: none may be refused.)
    ours, our_samples = _evaluate(root, "slm", f"pretrained={ckpt},max_length=30")
    app = create_app(Engine.from_pretrained(ckpt), model_name="ckpt", api_key="sk-lm-eval")
    with live_server(app) as url:
        args = (f"model=ckpt,base_url={url}/v1/completions,tokenizer_backend=huggingface,tokenizer={ckpt},"
                "tokenized_requests=True,max_length=32,num_concurrent=1,max_retries=1")
        theirs, their_samples = _evaluate(root, "local-completions", args)
        assert app.state.scheduler.running == 0
        assert 'status="400"' not in app.state.metrics.render().decode()  # no request was refused
    for task in SCORED:
        for metric, value in ours[task].items():
            if isinstance(value, float):
                assert theirs[task][metric] == pytest.approx(value, rel=1e-4, abs=1e-6), (task, metric)
        for a, b in zip(our_samples[task], their_samples[task], strict=True):
            for ra, rb in zip(a["resps"], b["resps"], strict=True):
                if task == "slm_mc":
                    assert rb[0][0] == pytest.approx(ra[0][0], abs=1e-4) and rb[0][1] == ra[0][1]
                else:
                    assert rb[0] == pytest.approx(ra[0], abs=1e-4)
    assert ours["slm_ppl"]["bits_per_byte,none"] > 0
