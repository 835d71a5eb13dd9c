"""slm recipe eft: the world, the scoring rules, and a seconds-long run of the whole pipeline."""
from pathlib import Path

import pytest

from slm.config import build, load_recipe
from slm.recipes.eft import (EFTRecipeConfig, Fact, WorldConfig, examples, follows_format, format_table,
                             make_world, pretraining_documents, run, score, stated_value)

ROOT = Path(__file__).resolve().parents[2]


def test_world_is_seeded_and_split_by_entity():
    ft, held = make_world(0, WorldConfig(entities=20, attributes=2, finetune_fraction=0.25))
    again, _ = make_world(0, WorldConfig(entities=20, attributes=2, finetune_fraction=0.25))
    other, _ = make_world(1, WorldConfig(entities=20, attributes=2, finetune_fraction=0.25))
    assert [f.statement for f in ft] == [f.statement for f in again] != [f.statement for f in other]
    assert len(ft) == 10 and len(held) == 30
    assert not {f.entity for f in ft} & {f.entity for f in held}
    docs = pretraining_documents(ft + held)
    assert len(docs) == 200 and sum(d.startswith("Q: ") for d in docs) == 160


def test_scoring_rules():
    fact = Fact("zorvak", "color", "teal")
    assert follows_format(fact.target_answer) and follows_format(" A: teal.\n")
    assert not follows_format("the color of zorvak is teal.") and not follows_format("A: teal. A: red.")
    assert stated_value("A: teal.") == stated_value("the color of zorvak is teal. more") == "teal"
    assert stated_value("") is None
    s = score(["A: teal.", "the color of zorvak is teal.", "A: red.", "teal."], [fact] * 4)
    assert s == {"format": 2 / 4, "terse": 1 / 4, "knowledge": 3 / 4}


def test_examples_train_on_the_answer_only():
    import slm

    tok = slm.train_tokenizer(["Q: what is the color of zorvak?\nA: teal."] * 20, vocab_size=300)
    [ex] = examples(tok, [("Q: what is the color of zorvak?\n", "A: teal.")])
    n_prompt = len(tok.encode("Q: what is the color of zorvak?\n", add_special_tokens=False))
    targets = [t for t in ex.labels if t != -100]
    assert targets == ex.input_ids[n_prompt:] and targets[-1] == tok.eos_token_id
    [doc] = examples(tok, [("", "the color of zorvak is teal.")])
    assert doc.labels[:-1] == doc.input_ids[1:] and doc.labels[-1] == -100


def test_recipes_load():
    for path in sorted((ROOT / "recipes").glob("eft*.yaml")):
        build(EFTRecipeConfig, load_recipe(path))


@pytest.mark.slow
def test_smoke_run_writes_models_table_and_a_loadable_composition(tmp_path):
    from slm.compose import EFTModel, load_composition

    cfg = build(EFTRecipeConfig, load_recipe(ROOT / "recipes/eft-smoke.yaml", [f"out_dir={tmp_path}"]))
    summary = run(cfg)
    table = format_table(summary)
    for row in ("large base", "small fine-tuned", "up-scaled (EFT)"):
        assert row in table
        assert all(0 <= v <= 1 for v in summary["table"][row]["format"] + summary["table"][row]["knowledge"])
    assert (tmp_path / "results.json").is_file()
    assert list(summary["interpolation"]) == ["0.0", "1.0"] and "Interpolation" in table
    # lam = 1 is plain up-scaling with expert A: the same answers, so the same scores.
    [seed] = summary["seeds"]
    assert {m: seed["interpolation"]["1.0"][m] for m in ("format", "knowledge")} == \
        {m: seed["results"]["up-scaled (EFT)"][m] for m in ("format", "knowledge")}
    model, tokenizer = load_composition(tmp_path / "seed-0" / "upscaled.yaml")
    assert isinstance(model, EFTModel) and len(model.members) == 3 and tokenizer is not None


@pytest.mark.parametrize("override, message", [
    ("world.entities=1", "at least one entity"), ("world.attributes=9", "world.attributes"),
    ("seeds=[]", "at least one seed"), ("finetune.steps=0", "finetune.steps"), ("world.colour=1", "unknown key"),
])
def test_bad_settings_fail_with_one_line(override, message, capsys):
    from slm.cli import main

    assert main(["recipe", "eft", "--config", str(ROOT / "recipes/eft-smoke.yaml"), "--set", override]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
