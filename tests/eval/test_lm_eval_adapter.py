"""lm-eval with --model slm and with its own hf backend, on the same checkpoint and local tasks: same numbers."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lm_eval")

DOCS = [
    {"question": "the cat sat on the", "choices": ["mat", "sky", "dog"], "label": 0},
    {"question": "one two three", "choices": ["four", "red", "paris"], "label": 0},
    {"question": "red green", "choices": ["blue", "seven", "the"], "label": 1},
    {"question": "a dog ran in the", "choices": ["park", "yes"], "label": 0},
    {"question": "Q: what is 2 + 3 ? A:", "choices": ["5", "6", "the cat"], "label": 0},
]
TASKS = {
    "slm_mc": {"output_type": "multiple_choice", "doc_to_text": "{{question}}", "doc_to_target": "label",
               "doc_to_choice": "{{choices}}", "metric_list": [{"metric": "acc"}, {"metric": "acc_norm"}]},
    # Long enough (repeated) to need several windows of the 32-token context.
    "slm_ppl": {"output_type": "loglikelihood_rolling", "doc_to_text": "",
                "doc_to_target": "{{question}} {{choices[0]}}" + " {{question}} {{choices[1]}}" * 4,
                "metric_list": [{"metric": "word_perplexity"}, {"metric": "byte_perplexity"},
                                {"metric": "bits_per_byte"}]},
    "slm_gen": {"output_type": "generate_until", "doc_to_text": "{{question}}", "doc_to_target": "{{choices[0]}}",
                "generation_kwargs": {"until": ["\n"], "max_gen_toks": 6, "do_sample": False},
                "metric_list": [{"metric": "exact_match"}]},
}


@pytest.fixture(scope="module")
def lm_eval_setup(model, tokenizer, tmp_path_factory):
    import torch
    import yaml

    import slm
    from slm.models import Decoder

    root = tmp_path_factory.mktemp("lmeval")
    # A 32-token context so that rolling perplexity spans several windows and truncation is exercised.
    cfg = model.config.replace(max_seq_len=32)
    small = Decoder(cfg)
    small.load_state_dict(model.state_dict(), strict=False)
    small.reset_rope()
    slm.save(small, tokenizer, root / "ckpt")
    (root / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    for name, spec in TASKS.items():
        full = {"task": name, "dataset_path": "json", "test_split": "test",
                "dataset_kwargs": {"data_files": {"test": str(root / "docs.jsonl")}}, **spec}
        (root / f"{name}.yaml").write_text(yaml.safe_dump(full))
    return root


def _run(root, model_name, model_args):
    import lm_eval
    from lm_eval.tasks import TaskManager

    import slm.eval.lm_eval_adapter  # noqa: F401  registers "slm"

    out = lm_eval.simple_evaluate(model=model_name, model_args=model_args, tasks=list(TASKS),
                                  task_manager=TaskManager(include_path=str(root)), device="cpu", batch_size=2,
                                  log_samples=True)
    return out["results"], out["samples"]


@pytest.mark.slow
def test_slm_and_hf_backends_agree(lm_eval_setup, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    root = lm_eval_setup
    ckpt = root / "ckpt"
    ours, our_samples = _run(root, "slm", f"pretrained={ckpt}")
    theirs, their_samples = _run(root, "hf", f"pretrained={ckpt},dtype=float32")
    for task in TASKS:
        for metric, value in theirs[task].items():
            if isinstance(value, float):
                assert ours[task][metric] == pytest.approx(value, rel=1e-5, abs=1e-9), (task, metric)
        mine = sorted(our_samples[task], key=lambda s: s["doc_id"])
        hf = sorted(their_samples[task], key=lambda s: s["doc_id"])
        assert len(mine) == len(hf) == len(DOCS)
        for a, b in zip(mine, hf):
            for ra, rb in zip(a["resps"], b["resps"]):
                if task == "slm_gen":
                    assert ra == rb  # the same greedy text
                elif task == "slm_mc":
                    assert ra[0][0] == pytest.approx(rb[0][0], rel=1e-5) and ra[0][1] == rb[0][1]
                else:
                    assert ra[0] == pytest.approx(rb[0], rel=1e-5)
    assert ours["slm_ppl"]["bits_per_byte,none"] > 0

    # An in-memory model (say, mid-training) needs no checkpoint: SlmLM(model=..., tokenizer=...).
    import lm_eval
    from lm_eval.tasks import TaskManager

    import slm
    from slm.eval.lm_eval_adapter import SlmLM

    model, tokenizer = slm.load(ckpt)
    live = lm_eval.simple_evaluate(model=SlmLM(model=model.train(), tokenizer=tokenizer, batch_size=3),
                                   tasks=["slm_mc"], task_manager=TaskManager(include_path=str(root)))
    for metric in ("acc,none", "acc_norm,none"):
        assert live["results"]["slm_mc"][metric] == ours["slm_mc"][metric]


@pytest.mark.slow
def test_the_readme_command_runs(lm_eval_setup, tmp_path):
    root = lm_eval_setup
    slm_bin = Path(sys.executable).with_name("slm")
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [str(slm_bin), "lm-eval", "--model", "slm", "--model_args", f"pretrained={root / 'ckpt'}",
           "--tasks", "slm_mc", "--include_path", str(root), "--batch_size", "2", "--output_path", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "slm_mc" in proc.stdout and "acc" in proc.stdout
    [result_file] = list(tmp_path.rglob("results_*.json"))
    assert "acc,none" in json.loads(result_file.read_text())["results"]["slm_mc"]


def test_slm_lm_eval_keeps_lm_evals_own_backends():
    """`slm lm-eval --model hf` once failed: registering "slm" into lm-eval's empty registry hid its backends."""
    probe = ("import slm.eval.lm_eval_adapter\nfrom lm_eval.api.registry import get_model\n"
             "print(*(get_model(m).__name__ for m in ('slm', 'hf', 'local-completions', 'local-chat-completions')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.stdout.split() == ["SlmLM", "HFLM", "LocalCompletionsAPI", "LocalChatCompletion"], out.stderr[-1000:]


def test_plugin_pth_registers_slm_for_the_plain_lm_eval_command(tmp_path):
    from slm.eval import lm_eval_plugin

    probe = ("import site, sys; {add}from lm_eval.api.registry import get_model\n"
             "try:\n    print(get_model('slm').__name__)\nexcept Exception as e:\n    print('missing')\n"
             "print(get_model('hf').__name__, get_model('local-completions').__name__)\n")
    without = subprocess.run([sys.executable, "-c", probe.format(add="")], capture_output=True, text=True)
    assert without.stdout.split()[0] == "missing"
    path = lm_eval_plugin.install(tmp_path)
    assert path.name.endswith(".pth") and path.read_text().startswith("import sys; exec(")
    # site.addsitedir processes .pth files exactly as interpreter start-up does for site-packages
    with_hook = subprocess.run([sys.executable, "-c", probe.format(add=f"site.addsitedir({str(tmp_path)!r}); ")],
                               capture_output=True, text=True)
    assert with_hook.stdout.split() == ["SlmLM", "HFLM", "LocalCompletionsAPI"], with_hook.stderr[-1000:]
    assert lm_eval_plugin.uninstall(tmp_path) == path and not path.exists()
