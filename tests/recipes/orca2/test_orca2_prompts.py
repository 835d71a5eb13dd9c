import pytest

from slm.errors import ConfigError
from slm.recipes.orca2.families import correct, family_items
from slm.recipes.orca2.prompts import load_prompts


@pytest.fixture(scope="module")
def prompts():
    return load_prompts()


def test_every_scripted_answer_shows_its_strategy_and_passes_its_family_check(prompts):
    for family in prompts.families.values():
        for item in family_items(family.source, 20, seed=0, files=40):
            for name in prompts.strategies:
                answer = prompts.scripted_answer(name, item)
                assert prompts.shown_strategy(answer) == name, answer
                assert correct(answer, item, family.check), answer


def test_shown_strategy_reads_the_shape_not_the_words(prompts):
    assert prompts.shown_strategy("Step 1: 2 + 3 = 5\nStep 2: 5 - 1 = 4\nThe answer is 4.") == "step-by-step"
    assert prompts.shown_strategy("Step 1: only one step, then it trails off") == "other"
    assert prompts.shown_strategy("42") == "direct"
    assert prompts.shown_strategy("Well, I believe that the right value here is 42, as listed.") == "other"


def test_erasure_replaces_only_the_system_turn(prompts):
    family = prompts.families["arithmetic"]
    kept = prompts.training_messages(family, "Compute 1 + 2.", "3", erase=False)
    erased = prompts.training_messages(family, "Compute 1 + 2.", "3", erase=True)
    assert kept[0]["content"] == family.instruction and erased[0]["content"] == prompts.generic_system
    assert kept[1:] == erased[1:]


def test_the_cautious_message_is_used_when_asked(prompts):
    assert prompts.inference_messages("Q?", "cautious")[0]["content"].startswith("You are Orca")
    assert prompts.inference_messages("Q?")[0]["content"] == prompts.generic_system


def test_a_user_file_adds_a_family_and_bad_files_are_one_line_errors(prompts, tmp_path):
    extra = tmp_path / "extra.yaml"
    extra.write_text("families:\n  - {name: doubles, source: d.jsonl, strategy: direct, check: number,"
                     " instruction: Reply with the number.}\n")
    assert "doubles" in load_prompts([extra]).families
    extra.write_text("families:\n  - {name: x, source: d.jsonl, strategy: guess, check: number, instruction: I}\n")
    with pytest.raises(ConfigError, match="unknown strategy 'guess'"):
        load_prompts([extra])
    extra.write_text("families:\n  - {name: x, source: d.jsonl, strategy: direct, check: number}\n")
    with pytest.raises(ConfigError, match="instruction"):
        load_prompts([extra])
