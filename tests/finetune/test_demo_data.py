"""The locally made demo SFT set, and a tiny fine-tune that learns its format (the base model never ends a reply)."""
import json

import pytest

import slm
from slm.finetune.data import Renderer, record_to_messages
from slm.finetune.demo_data import demo_records, function_records, write_demo_dataset
from slm.finetune.evaluate import assistant_loss, reply_format
from slm.finetune.packing import SFTBatches
from slm.finetune.run import build_config, finetune
from slm.models import Decoder, ModelConfig

SOURCE = '''
def area(width, height):
    """Return the area of a rectangle.

    Longer explanation that is not part of the summary.
    """
    result = width * height
    return result


def undocumented(x):
    return x


class Box:
    def volume(self, depth):
        """Compute the volume of the box."""
        w = self.width
        return w * self.height * depth
'''


def test_function_records_pair_code_and_summary():
    records = list(function_records(SOURCE, "geometry"))
    assert [(name.split(":")[0], sig, summary) for name, sig, summary, _ in records] == [
        ("geometry.area", "area(width, height)", "Return the area of a rectangle."),
        ("geometry.volume", "volume(self, depth)", "Compute the volume of the box.")]
    code = records[0][3]
    assert code.startswith("def area(width, height):") and '"""' not in code and "return result" in code


def test_demo_records_are_valid_conversations_with_disjoint_splits(tmp_path):
    train = list(demo_records(files=8))
    heldout = list(demo_records(files=8, split="heldout"))
    assert train and heldout
    assert {r["kind"] for r in train} == {"doc", "code"}
    assert not {r["source"] for r in train} & {r["source"] for r in heldout}
    for r in train[:50]:
        messages = record_to_messages(r)
        assert [m["role"] for m in messages] == ["system", "user", "assistant"]
    path = tmp_path / "demo.jsonl"
    assert write_demo_dataset(path, files=8, limit=10) == 10
    assert all("messages" in json.loads(line) for line in path.read_text().splitlines())


@pytest.mark.slow
def test_fine_tuned_model_follows_the_format_better_than_the_base(tmp_path, tokenizer):
    """A 2-layer model fine-tuned for 40 short steps ends its replies with <|im_end|> on held-out functions,
    in one line like the references; the base model never does, and its held-out assistant loss is higher."""
    short = dict(files=15, kinds=("doc",), heldout=0.2, max_code_chars=250)
    train = list(demo_records(**short))
    heldout = [r["messages"] for r in demo_records(split="heldout", **short)][:16]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    cfg = ModelConfig(arch="llama", vocab_size=len(tokenizer), dim=64, n_layers=2, n_heads=4, n_kv_heads=2,
                      ffn_dim=128, max_seq_len=256)
    base = Decoder(cfg).init_weights(seed=0)
    slm.save(base, tokenizer, tmp_path / "base")
    result = finetune(*build_config({
        "model": str(tmp_path / "base"), "out": str(tmp_path / "run"),
        "data": {"path": str(tmp_path / "train.jsonl"), "seq_len": 256, "batch_size": 2},
        "train": {"max_steps": 40, "lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 5, "progress": False,
                  "device": "cpu"}}), say=lambda *_: None)
    tuned, _ = slm.load(result["checkpoint"])

    render = Renderer(tokenizer)
    held = lambda: SFTBatches([render(m) for m in heldout], seq_len=256, batch_size=8, pad_id=0,  # noqa: E731
                              epochs=1, shuffle=False)
    before, after = reply_format(base, tokenizer, heldout, max_tokens=40), reply_format(tuned, tokenizer, heldout,
                                                                                          max_tokens=40)
    assert before["ended"] == 0.0
    assert after["ended"] >= 0.5 and after["shape"] >= 0.5, after["replies"]
    assert assistant_loss(tuned, held()) < assistant_loss(base, held()) - 1.0
