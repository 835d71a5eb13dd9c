import random

import pytest
import torch
import torch.nn.functional as F

from slm.errors import SlmError
from slm.finetune.data import IGNORE, Renderer, SFTExample
from slm.finetune.packing import SFTBatches, collate_packed, plan_bins
from slm.models import Decoder


def conversations(n, seed=0):
    rng = random.Random(seed)
    words = "alpha beta gamma delta return import class lambda yield value list dict".split()
    say = lambda k: " ".join(rng.choice(words) for _ in range(k))  # noqa: E731
    out = []
    for i in range(n):
        msgs = [{"role": "user", "content": say(rng.randint(1, 12))},
                {"role": "assistant", "content": say(rng.randint(1, 10))}]
        if i % 3 == 0:
            msgs += [{"role": "user", "content": say(3)}, {"role": "assistant", "content": say(2)}]
        out.append(msgs)
    return out


@pytest.fixture
def examples(tokenizer):
    render = Renderer(tokenizer)
    return [render(m, f"ex{i}") for i, m in enumerate(conversations(24))]


def token_loss_sum(model, batch):
    kwargs = {k: batch[k] for k in ("position_ids", "attention_mask") if k in batch}
    logits = model(batch["input_ids"], **kwargs)
    return F.cross_entropy(logits.flatten(0, 1).double(), batch["labels"].flatten(), ignore_index=IGNORE,
                           reduction="sum")


@pytest.mark.parametrize("strategy", ["bfd", "greedy"])
def test_bins_hold_every_example_once_within_capacity(strategy):
    rng = random.Random(1)
    lengths = [rng.randint(1, 50) for _ in range(300)]
    bins = plan_bins(lengths, 64, strategy, order=rng.sample(range(300), 300))
    assert sorted(i for b in bins for i in b) == list(range(300))
    assert all(sum(lengths[i] for i in b) <= 64 for b in bins)
    if strategy == "bfd":
        assert len(bins) <= len(plan_bins(lengths, 64, "greedy"))
        assert len(bins) <= -(-sum(lengths) // 64) * 1.1  # near the lower bound


def test_packed_rows_restart_positions_and_block_attention(examples):
    a, b = examples[0], examples[1]
    batch = collate_packed([[a, b]], seq_len=len(a) + len(b) + 5, pad_id=0)
    n = len(a)
    assert batch["position_ids"][0, :n].tolist() == list(range(n))
    assert batch["position_ids"][0, n:n + len(b)].tolist() == list(range(len(b)))
    mask = batch["attention_mask"][0, 0]
    assert mask.shape == (n + len(b) + 5,) * 2
    assert not mask[n:, :n].any()  # b (and the padding) never sees a
    assert mask[n + 1, n] and mask[n + 1, n + 1] and not mask[n, n + 1]  # causal inside b
    assert batch["labels"][0, n - 1] == IGNORE  # a's last token is not trained to predict b's first
    assert (batch["labels"][0, n + len(b):] == IGNORE).all()


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-5), (torch.float32, 1e-5)])
def test_packed_loss_equals_sum_of_one_by_one_losses(tiny_config, examples, dtype, tol):
    """The acceptance test: a packed batch's summed token loss is the sum over its examples run alone."""
    model = Decoder(tiny_config).init_weights(seed=0).to(dtype).eval()
    data = SFTBatches(examples, seq_len=96, batch_size=3, pad_id=0, seed=3)
    batch = next(iter(data))
    rows = data._batches(0)[0]
    assert sum(len(r) for r in rows) > len(rows)  # several examples share a row
    with torch.no_grad():
        packed = token_loss_sum(model, batch)
        alone = sum(token_loss_sum(model, {"input_ids": torch.tensor([examples[i].input_ids]),
                                           "labels": torch.tensor([examples[i].labels])})
                    for row in rows for i in row)
    targets = sum(examples[i].num_targets for row in rows for i in row)
    assert int((batch["labels"] != IGNORE).sum()) == targets
    if dtype == torch.float64:
        assert abs(packed.item() - alone.item()) < tol
    else:  # float32 rounding grows with the number of summed tokens: compare the mean token loss
        assert abs(packed.item() - alone.item()) / targets < tol


def test_padded_batches_give_the_same_loss_as_packed(tiny_config, examples):
    model = Decoder(tiny_config).init_weights(seed=0).double().eval()
    packed = SFTBatches(examples, seq_len=128, batch_size=100, pad_id=0, epochs=1)
    padded = SFTBatches(examples, seq_len=128, batch_size=5, pad_id=0, pack=False, epochs=1)
    with torch.no_grad():
        total_packed = sum(token_loss_sum(model, b) for b in packed)
        total_padded = sum(token_loss_sum(model, b) for b in padded)
    assert abs(total_packed.item() - total_padded.item()) < 1e-5
    assert padded.token_stats()["fill"] < packed.token_stats()["fill"]


def test_resume_gives_the_same_batches(examples):
    make = lambda: SFTBatches(examples, seq_len=64, batch_size=2, pad_id=0, seed=7)  # noqa: E731
    reference = make()
    stream = iter(reference)
    expected = [next(stream) for _ in range(3 * reference.batches_per_epoch)]  # crosses two epoch boundaries
    for stop in (1, reference.batches_per_epoch, reference.batches_per_epoch + 2):
        first = make()
        it = iter(first)
        for _ in range(stop):
            next(it)
        state = first.state_dict()
        resumed = make()
        resumed.load_state_dict(state)
        it = iter(resumed)
        for want in expected[stop:stop + 4]:
            got = next(it)
            assert all(torch.equal(got[k], want[k]) for k in want)
    # a new epoch is a new order
    assert not torch.equal(expected[0]["input_ids"], expected[reference.batches_per_epoch]["input_ids"])


def test_resume_refuses_other_settings(examples):
    state = SFTBatches(examples, seq_len=64, batch_size=2, pad_id=0, seed=7).state_dict()
    with pytest.raises(SlmError, match="seed"):
        SFTBatches(examples, seq_len=64, batch_size=2, pad_id=0, seed=8).load_state_dict(state)


def test_ranks_split_the_same_plan(examples):
    whole = SFTBatches(examples, seq_len=64, batch_size=1, pad_id=0, epochs=1)
    ranks = [SFTBatches(examples, seq_len=64, batch_size=1, pad_id=0, epochs=1, rank=r, world_size=2)
             for r in range(2)]
    seen = [b["input_ids"] for pair in zip(*ranks) for b in pair]
    reference = [b["input_ids"] for b in whole][:len(seen)]
    assert len(seen) == 2 * ranks[0].batches_per_epoch
    assert all(torch.equal(x, y) for x, y in zip(seen, reference))


def test_overlong_examples_are_truncated_or_dropped_and_counted():
    long = SFTExample(list(range(1, 41)), list(range(2, 41)) + [IGNORE])
    prompt_only = SFTExample(list(range(1, 41)), [IGNORE] * 35 + [36, 37, 38, 39, IGNORE])
    short = SFTExample([1, 2, 3], [2, 3, IGNORE])
    data = SFTBatches([long, prompt_only, short], seq_len=16, batch_size=2, pad_id=0)
    assert data.report.truncated == 1 and data.report.dropped_no_targets == 1 and len(data.examples) == 2
    cut = data.examples[0]
    assert len(cut) == 16 and cut.labels[-1] == IGNORE and cut.labels[:15] == long.labels[:15]
    dropped = SFTBatches([long, prompt_only, short], seq_len=16, batch_size=2, pad_id=0, overlong="drop")
    assert dropped.report.dropped_overlong == 2 and len(dropped.examples) == 1
    assert "dropped" in dropped.report.summary()
    with pytest.raises(SlmError, match="no SFT example fits"):
        SFTBatches([long], seq_len=16, batch_size=1, pad_id=0, overlong="drop")


def test_padded_rows_never_exceed_seq_len():
    examples = [SFTExample(list(range(1, n + 1)), list(range(2, n + 1)) + [IGNORE]) for n in (3, 10)]
    batch = next(iter(SFTBatches(examples, seq_len=10, batch_size=2, pad_id=None, pack=False)))
    assert batch["input_ids"].shape == (2, 10)  # not rounded up to 16 past the context
    assert batch["attention_mask"].sum().item() == 13
