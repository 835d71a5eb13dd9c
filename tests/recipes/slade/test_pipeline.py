"""slm recipe slade: the smoke recipe runs every stage; train and test are split by function."""
import json

import pytest

from slm.recipes.slade.data import build_dataset
from slm.recipes.slade.pipeline import format_table

pytestmark = pytest.mark.slow


def test_split_by_function_and_dedup(tmp_path):
    settings = dict(functions=30, seed=1, examples=2, test_functions=5, real_functions=8, real_test_functions=3,
                    asm_chars=3000)
    data = build_dataset(settings, tmp_path, [("x86_64", "O0"), ("x86_64", "O3")], say=lambda *_: None)
    train_ids = {r["function"] for r in data["train"]}
    test_ids = {r["function"] for r in data["test"]}
    assert not train_ids & test_ids
    origins = [data["functions"][i]["origin"] for i in sorted(test_ids)]
    assert origins.count("generated") == 5 and origins.count("real") == 3
    assert any(data["functions"][i]["origin"] == "real" for i in train_ids)
    test_sources = {data["functions"][i]["fn"]["source"] for i in test_ids}
    assert not test_sources & {r["c"] for r in data["train"]}
    assert len(data["train"]) == 2 * len(train_ids)  # every function has both targets
    bodies = [tuple(r["asm"] for r in data["train"] + data["test"] if r["function"] == i)
              for i in range(len(data["functions"]))]
    assert len(set(bodies)) == len(bodies)  # no two kept functions with the same assembly
    again = build_dataset(settings, tmp_path, [("x86_64", "O0"), ("x86_64", "O3")], say=lambda *_: None)
    assert again == json.loads(json.dumps(data))  # read back, not rebuilt differently


def test_slade_smoke_recipe_runs_every_stage(tmp_path, run_smoke):
    summary = run_smoke("slade")
    assert set(summary["table"]) == {"slade", "decoder", "retrieval", "return0"}
    for model, runs in summary["table"].items():
        assert len(runs) == len(summary["config"]["seeds"])
        for cells in (r["cells"] for r in runs):
            assert set(cells) == set(summary["targets"]) | {f"{t} (real)" for t in summary["targets"]}
            for cell in cells.values():
                assert all(0.0 <= v <= 1.0 for k, v in cell.items() if k != "n")
                assert cell["beam_inferred"] >= cell["top1_inferred"]
    assert {r["model"] for r in summary["rescue"]} == {"slade", "decoder"}
    assert set(summary["tokenizer"]) == {"split_digits", "whole_numbers"}
    table = format_table(summary)  # generated and real functions in tables of their own
    assert "generated functions" in table and "real functions" in table and "x86_64/O0 (real)" in table
    # No test function's source is a training target of the trained models.
    test_sources = {e["reference"] for e in summary["examples"]}
    for line in (tmp_path / "run" / "seed-0" / "slade" / "train.jsonl").read_text().splitlines():
        assert json.loads(line)["target"] not in test_sources
