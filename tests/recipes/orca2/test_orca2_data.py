import json

import pytest

from slm.recipes.orca2.data import scripted_answers, teach, training_records
from slm.recipes.orca2.families import family_items
from slm.recipes.orca2.prompts import load_prompts
from slm.teach.settings import TeacherSection, open_teacher


@pytest.fixture(scope="module")
def taught():
    prompts = load_prompts()
    items = {name: family_items(f.source, 6, seed=0, files=40) for name, f in prompts.families.items()}
    with open_teacher(TeacherSection(kind="scripted"), cache=None, scripted=scripted_answers(prompts, items)) as t:
        family_answers = teach(t, prompts, items, None, max_tokens=64)
        step_answers = teach(t, prompts, items, "step-by-step", max_tokens=64)
    return prompts, items, family_answers, step_answers


def instructions(prompts):
    return [f.instruction for f in prompts.families.values()] + [s.instruction for s in prompts.strategies.values()]


def test_the_strategy_instructions_never_reach_erased_training_text(taught):
    prompts, items, family_answers, step_answers = taught
    erased, _ = training_records(prompts, items, family_answers, "erased")
    single, _ = training_records(prompts, items, step_answers, "single", single_strategy="step-by-step")
    kept, _ = training_records(prompts, items, family_answers, "kept")
    for records in (erased, single):
        text = json.dumps(records)
        assert not any(json.dumps(i)[1:-1] in text for i in instructions(prompts))
    assert any(json.dumps(i)[1:-1] in json.dumps(kept) for i in instructions(prompts))  # the control keeps them


def test_wrong_answers_are_counted_and_not_trained_on(taught):
    prompts, items, family_answers, _ = taught
    broken = {name: list(a) for name, a in family_answers.items()}
    broken["arithmetic"][0] = "Step 1: 1 + 1 = 2\nStep 2: 2 + 2 = 4\nThe answer is -99999."
    records, counts = training_records(prompts, items, broken, "erased")
    assert counts["arithmetic"] == {"answers": 6, "correct": 5, "shows_strategy": 6}
    assert counts["lookup"]["correct"] == counts["lookup"]["shows_strategy"] == 6
    assert len(records) == sum(c["correct"] for c in counts.values())
    assert "-99999" not in json.dumps(records)


def test_labels_cover_only_the_teacher_tokens(taught, tmp_path):
    from slm.finetune.data import IGNORE, load_sft_examples
    from slm.tokenizer import train_tokenizer

    prompts, items, family_answers, _ = taught
    records, _ = training_records(prompts, items, family_answers, "erased")
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    texts = [m["content"] for r in records for m in r["messages"]]
    tok = train_tokenizer(texts * 3, vocab_size=400)
    examples, _ = load_sft_examples(path, tok)
    assert len(examples) == len(records)
    for example, record in zip(examples, records):
        target_ids = [t for t in example.labels if t != IGNORE]
        learned = tok.decode(target_ids)
        system, user, assistant = (m["content"] for m in record["messages"])
        assert assistant in learned
        assert system not in learned and user not in learned
        assert len(target_ids) <= len(tok.encode(assistant)) + 2  # the answer and its end-of-turn token(s)
