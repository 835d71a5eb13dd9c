"""slm recipe ul2r: the smoke recipe runs every stage, both continuations spend the same steps from the same base,
and the held-out gaps are the same tokens in both of their scorings."""
import json

import pytest


pytestmark = pytest.mark.slow


def test_ul2r_smoke_recipe_runs_every_stage(tmp_path, run_smoke):
    summary = run_smoke("ul2r")
    [key] = summary["rows"]
    rows = summary["rows"][key]
    assert list(rows) == ["base", "causal", "ul2r"]
    for scores in rows.values():
        s = scores[0]
        assert s["gap_tokens"] > 0 and s["gap_nll_infill"] > 0 and s["gap_nll_left"] > 0 and s["perplexity"] > 1
        assert 0 <= s["gap_exact_match"] <= 1 and 0 <= s["fewshot_acc"] <= 1
    assert rows["causal"][0]["gap_tokens"] == rows["ul2r"][0]["gap_tokens"] == rows["base"][0]["gap_tokens"]
    compute = summary["compute"][key]
    assert compute["tokens"] == compute["steps"] * 4 * 64
    assert 0 < compute["ul2r_raw_tokens"] < compute["tokens"]  # sentinels and padding take part of each row
    assert compute["flops"] / summary["compute"]["base_flops"] == pytest.approx(compute["fraction_of_base"])

    import slm

    run = tmp_path / "run" / "seed-0"
    causal, _ = slm.load(next((run / f"causal-{key}" / "checkpoints").iterdir()))
    ul2r, tok = slm.load(next((run / f"ul2r-{key}" / "checkpoints").iterdir()))
    base, _ = slm.load(tmp_path / "run" / "base")
    assert causal.config == ul2r.config == base.config and "[S2S]" in tok.get_vocab()
    records = [json.loads(line) for line in (run / f"ul2r-{key}" / "metrics.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in records if "loss" in r) == compute["steps"]
    few = [json.loads(line) for line in (tmp_path / "run" / "fewshot-first-parameter.jsonl").read_text().splitlines()]
    assert few and all(len(d["choices"]) == 4 and 0 <= d["label"] < 4 for d in few)
