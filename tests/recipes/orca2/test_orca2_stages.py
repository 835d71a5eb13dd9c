import pytest

from slm.recipes.orca2.data import scripted_answers, teach, training_records
from slm.recipes.orca2.families import family_items, split_items
from slm.recipes.orca2.prompts import load_prompts
from slm.recipes.orca2.stages import FinetuneSection, Stage, evaluate_student, student_prompts, train_stages
from slm.teach.settings import TeacherSection, open_teacher


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import slm
    from slm.models import build_model, preset
    from slm.tokenizer import train_tokenizer

    prompts = load_prompts()
    split = {name: split_items(family_items(f.source, 10, seed=0, files=40), 2) for name, f in prompts.families.items()}
    items = {name: s[0] for name, s in split.items()}
    with open_teacher(TeacherSection(kind="scripted"), cache=None, scripted=scripted_answers(prompts, items)) as t:
        answers = teach(t, prompts, items, None, max_tokens=64)
    records, _ = training_records(prompts, items, answers, "erased")  # the tokenizer's texts
    tok = train_tokenizer([m["content"] for r in records for m in r["messages"]] * 3, vocab_size=400)
    model = build_model(preset("nano", vocab_size=len(tok), dim=32, n_layers=1, n_heads=2, n_kv_heads=2, ffn_dim=64,
                               max_seq_len=256)).init_weights(0)
    base = tmp_path_factory.mktemp("base")
    slm.save(model, tok, base)
    by_family = {}
    for name in items:
        chats, _ = training_records(prompts, {name: items[name]}, {name: answers[name]}, "erased")
        by_family[name] = chats
    return prompts, base, by_family, {name: s[1] for name, s in split.items()}, tok


@pytest.mark.slow
def test_progressive_stages_run_in_order_and_resume(setup, tmp_path, capsys):
    prompts, base, records, held_out, _ = setup
    settings = FinetuneSection(batch_size=2, warmup_steps=1, seq_len=128)
    stages = [Stage("direct", ["lookup"], 2), Stage("mixed", None, 2)]
    first = train_stages(base, stages, records, tmp_path, seed=0, settings=settings)
    assert first.parent.parent.name == "stage-2-mixed" and first.name == "step-000002"
    stage_one = (tmp_path / "stage-1-direct" / "checkpoints" / "step-000002" / "config.json").stat().st_mtime_ns
    capsys.readouterr()
    longer = train_stages(base, [stages[0], Stage("mixed", None, 4)], records, tmp_path, seed=0, settings=settings)
    assert longer.name == "step-000004"
    out = capsys.readouterr().out
    assert "stage-2-mixed/checkpoints/step-000002 at step 2" in out and "stage-1-direct" not in out
    assert (tmp_path / "stage-1-direct" / "checkpoints" / "step-000002" / "config.json").stat().st_mtime_ns == \
        stage_one  # the finished stage was not trained again
    scores = evaluate_student(longer, prompts, held_out, max_tokens=8)
    assert set(scores) == set(held_out) and all(s["n"] == 2 for s in scores.values())
    assert all(0 <= s["accuracy"] <= 1 and sum(s["shown"].values()) == 2 for s in scores.values())


def test_the_cautious_message_is_applied_at_inference_when_asked(setup):
    prompts, _, _, held_out, tok = setup
    items = held_out["lookup"]
    cautious = student_prompts(tok, prompts, items, "cautious")
    generic = student_prompts(tok, prompts, items)
    assert all(prompts.cautious_system in p and items[i]["question"] in p for i, p in enumerate(cautious))
    assert all(prompts.cautious_system not in p and prompts.generic_system in p for p in generic)
    assert all(p.endswith("<|im_start|>assistant\n") for p in cautious + generic)
