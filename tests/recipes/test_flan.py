"""slm recipe flan: the smoke recipe runs every stage for both model kinds; its training files never hold a
held-out cluster's task (the special rules included), and packed FLAN examples do not attend to each other."""
import json

import pytest
import torch


pytestmark = pytest.mark.slow


def test_flan_smoke_recipe_runs_every_stage(tmp_path, run_smoke):
    summary = run_smoke("flan")
    assert set(summary["table"]) == {"nli/decoder", "nli/t5", "read_comp/decoder", "read_comp/t5"}
    clusters = summary["clusters"]
    for key, rows in summary["table"].items():
        cluster = key.split("/")[0]
        assert list(rows) == summary["config"]["variants"]
        for variant in rows.values():
            assert set(variant[0]["tasks"]) == set(clusters[cluster])
            assert 0 <= variant[0]["cluster_score"] <= 1

    from slm.instruct.collection import stdlib_collection
    from slm.instruct.tasks import render

    collection = stdlib_collection(**summary["config"]["collection"])
    # No rendering of a held-out task (nli, and paraphrase by FLAN's rule) appears in a training file.
    held_out = {render(collection.tasks[t], i, k, with_options=False).input
                for t in clusters["nli"] + clusters["paraphrase"]
                for i in range(len(collection.tasks[t].examples))
                for k in collection.tasks[t].eval_templates}
    files = list((tmp_path / "run" / "seed-0" / "nli").glob("*/*/train.jsonl"))
    assert len(files) == 8  # 4 tuned variants x 2 model kinds
    for path in files:
        for line in path.read_text().splitlines():
            record = json.loads(line)
            text = record["input"] if "input" in record else record["messages"][0]["content"]
            assert not any(h in text for h in held_out), path
    # The held-out check can fail: the read_comp split does train on nli tasks.
    texts = "\n".join((tmp_path / "run" / "seed-0" / "read_comp" / "t5" / "multi-template" / "train.jsonl")
                      .read_text().splitlines())
    assert any(json.dumps(h)[1:-1] in texts for h in held_out)


def test_packed_flan_examples_attend_only_to_themselves(tmp_path):
    import slm
    from slm.finetune.data import load_sft_examples
    from slm.finetune.packing import SFTBatches
    from slm.instruct.collection import stdlib_collection
    from slm.instruct.mixture import MixOptions, draw
    from slm.models import make_attention_mask

    tok = slm.train_tokenizer(["def f(x):\n    return x\n"] * 50, vocab_size=300)
    drawn = draw(stdlib_collection(files=20, per_task=20), 12, MixOptions(seed=0))
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps({"messages": [{"role": "user", "content": d.input},
                                                     {"role": "assistant", "content": d.target}]}) + "\n"
                            for d in drawn))
    examples, _ = load_sft_examples(path, tok)
    batch = next(iter(SFTBatches(examples, seq_len=2048, batch_size=1, pad_id=tok.pad_token_id)))
    docs = batch["document_ids"][0]
    assert len(set(docs.tolist())) > 1  # several examples share the row
    mask = make_attention_mask(docs.shape[0], 0, document_ids=batch["document_ids"])[0, 0]
    crossing = docs.view(-1, 1) != docs.view(1, -1)
    assert not mask[crossing].any()
    assert torch.all(batch["position_ids"][0][torch.nonzero(docs[1:] != docs[:-1]).flatten() + 1] == 0)
