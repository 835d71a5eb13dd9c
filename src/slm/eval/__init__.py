"""Evaluation: task harness (`slm eval`), log-likelihood scoring, the lm-eval adapter, and the code sandbox.

    from slm.eval import evaluate, load_tasks, markdown_table, make_evaluator, Scorer, run_python, run_many
    from slm.eval import run_c, IOHarness, CFunction     # the C sandbox and the IO harness for C functions
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "evaluate": "slm.eval.harness", "make_evaluator": "slm.eval.harness", "markdown_table": "slm.eval.harness",
    "Scorer": "slm.eval.scoring", "TaskSpec": "slm.eval.tasks", "load_tasks": "slm.eval.tasks",
    "run_python": "slm.eval.sandbox", "run_many": "slm.eval.sandbox", "SandboxResult": "slm.eval.sandbox",
    "pass_at_k": "slm.eval.metrics",
    "run_c": "slm.eval.csandbox", "compile_c": "slm.eval.csandbox", "run_binary": "slm.eval.csandbox",
    "CFunction": "slm.eval.c_io", "IOHarness": "slm.eval.c_io", "IOResult": "slm.eval.c_io",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    # Imported on first use: the sandbox needs no torch, and `slm --help` stays fast.
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'slm.eval' has no attribute {name!r}")
