"""Evaluation: task harness (`slm eval`), log-likelihood scoring, lm-eval adapter, and the code sandbox."""
