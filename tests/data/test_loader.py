import itertools

import numpy as np
import pytest
import torch

from slm.data import PackedLoader, prepare, read_index
from slm.errors import SlmError

T = 16


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, byte_tokenizer_dir, make_docs):
    """Documents from a few tokens to several windows long, spread over several shards."""
    out = tmp_path_factory.mktemp("data") / "d"
    prepare(make_docs(80, words_per_doc=(1, 30)), byte_tokenizer_dir, out, val_fraction=0.1, seed=0,
            shard_tokens=300, progress=False)
    return out


def stream_and_offsets(out, split="train"):
    index = read_index(out)
    info = index["splits"][split]
    stream = np.concatenate([np.fromfile(out / s["file"], dtype=index["dtype"]) for s in info["shards"]])
    return stream.astype(np.int64), np.load(out / info["offsets"]).tolist()


def reference_row(stream, offsets, start):
    """The expected row for the window starting at `start`, computed position by position."""
    doc_of = [max(i for i, o in enumerate(offsets[:-1]) if o <= p) for p in range(start, start + T)]
    position, document = [], []
    for t, d in enumerate(doc_of):
        document.append(d - doc_of[0])
        position.append(start + t - max(offsets[d], start))
    return stream[start:start + T], stream[start + 1:start + T + 1], document, position


def window_starts(batch, stream):
    """Recover which window each row is, from its tokens (windows are distinct in this corpus)."""
    starts = []
    for row in batch["input_ids"].numpy():
        hits = [w * T for w in range((len(stream) - 1) // T) if np.array_equal(stream[w * T:w * T + T], row)]
        assert len(hits) == 1
        starts.append(hits[0])
    return starts


def test_batches_are_packed_windows_with_shifted_labels_and_boundaries(data_dir):
    stream, offsets = stream_and_offsets(data_dir)
    assert len(read_index(data_dir)["splits"]["train"]["shards"]) > 2   # windows cross shard files
    loader = PackedLoader(data_dir, seq_len=T, batch_size=8, seed=0)
    batch = next(iter(loader))
    assert set(batch) == {"input_ids", "labels", "document_ids", "position_ids"}
    assert all(v.shape == (8, T) and v.dtype == torch.int64 for v in batch.values())
    boundaries_seen = 0
    for row, start in enumerate(window_starts(batch, stream)):
        inputs, labels, document, position = reference_row(stream, offsets, start)
        assert batch["input_ids"][row].tolist() == inputs.tolist()
        assert batch["labels"][row].tolist() == labels.tolist()     # labels[t] is the token after inputs[t]
        assert batch["document_ids"][row].tolist() == document
        assert batch["position_ids"][row].tolist() == position
        boundaries_seen += document[-1]
    assert boundaries_seen > 0  # the batch really had rows that pack several documents


def test_every_window_once_per_epoch_in_a_seeded_order(data_dir):
    n = PackedLoader(data_dir, seq_len=T, batch_size=1).n_windows
    stream, _ = stream_and_offsets(data_dir)
    loader = PackedLoader(data_dir, seq_len=T, batch_size=n, seed=5, epochs=2)
    epoch0, epoch1 = [window_starts(b, stream) for b in loader]
    assert sorted(epoch0) == sorted(epoch1) == [w * T for w in range(n)]   # each window exactly once per epoch
    assert epoch0 != epoch1                                               # a fresh permutation each epoch
    again = [window_starts(b, stream) for b in PackedLoader(data_dir, seq_len=T, batch_size=n, seed=5, epochs=2)]
    assert again == [epoch0, epoch1]                                      # same seed, same order
    other = next(iter(PackedLoader(data_dir, seq_len=T, batch_size=n, seed=6, epochs=1)))
    assert window_starts(other, stream) != epoch0


def test_epochs_continue_across_the_boundary_and_stop(data_dir):
    one = PackedLoader(data_dir, seq_len=T, batch_size=3, epochs=1)
    n = one.n_windows
    three = PackedLoader(data_dir, seq_len=T, batch_size=3, epochs=3)
    batches = list(three)
    assert len(batches) == len(three) == (3 * n) // 3 and len(one) == n // 3
    assert three.epoch == 3
    endless = PackedLoader(data_dir, seq_len=T, batch_size=3)
    stream = iter(endless)
    for expected in batches:          # the endless loader agrees with the finite one as far as that goes
        assert torch.equal(next(stream)["input_ids"], expected["input_ids"])
    assert next(stream)["input_ids"].shape == (3, T) and endless.epoch == 3
    with pytest.raises(TypeError):
        len(endless)


def test_partial_last_batch_is_dropped_unless_asked_for(data_dir):
    n = PackedLoader(data_dir, seq_len=T, batch_size=1).n_windows
    b = 7 if n % 7 else 6
    dropped = list(PackedLoader(data_dir, seq_len=T, batch_size=b, epochs=1))
    kept = list(PackedLoader(data_dir, seq_len=T, batch_size=b, epochs=1, drop_last=False))
    assert sum(len(x["input_ids"]) for x in dropped) == (n // b) * b
    assert sum(len(x["input_ids"]) for x in kept) == n and len(kept) == len(dropped) + 1


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_split_the_single_process_global_batch(data_dir, world_size):
    single = PackedLoader(data_dir, seq_len=T, batch_size=2 * world_size, seed=1)
    ranks = [PackedLoader(data_dir, seq_len=T, batch_size=2, seed=1, rank=r, world_size=world_size)
             for r in range(world_size)]
    iters = [iter(r) for r in ranks]
    for global_batch in itertools.islice(single, 6):
        parts = [next(it) for it in iters]
        for key in global_batch:
            for r, part in enumerate(parts):
                assert torch.equal(part[key], global_batch[key][r::world_size])  # rank r gets rows r::W
    assert ranks[0].state_dict() == single.state_dict()


def test_resume_continues_with_the_identical_next_batch(data_dir):
    loader = PackedLoader(data_dir, seq_len=T, batch_size=4, seed=2)
    it = iter(loader)
    for _ in range(7):                 # past an epoch boundary for this small corpus
        next(it)
    state = loader.state_dict()
    expected = [next(it) for _ in range(3)]
    resumed = PackedLoader(data_dir, seq_len=T, batch_size=4, seed=2)
    resumed.load_state_dict(state)
    got = iter(resumed)
    for batch in expected:
        nxt = next(got)
        assert all(torch.equal(nxt[k], batch[k]) for k in batch)
    # The position counts windows, so two ranks of batch 2 resume at the same place as well.
    halves = [PackedLoader(data_dir, seq_len=T, batch_size=2, seed=2, rank=r, world_size=2) for r in range(2)]
    for h in halves:
        h.load_state_dict(state)
    first = [next(iter(h)) for h in halves]
    assert torch.equal(torch.stack([first[0]["input_ids"], first[1]["input_ids"]], 1).reshape(4, T),
                       expected[0]["input_ids"])


def test_resume_refuses_other_data_or_settings(data_dir):
    state = PackedLoader(data_dir, seq_len=T, batch_size=4, seed=2).state_dict()
    with pytest.raises(SlmError, match="seed"):
        PackedLoader(data_dir, seq_len=T, batch_size=4, seed=3).load_state_dict(state)
    with pytest.raises(SlmError, match="seq_len"):
        PackedLoader(data_dir, seq_len=T + 1, batch_size=4, seed=2).load_state_dict(state)
    with pytest.raises(SlmError, match="split"):
        PackedLoader(data_dir, "val", seq_len=T, batch_size=1, seed=2).load_state_dict(state)


def test_tokenizer_check(data_dir, byte_tokenizer_dir, llama_tokenizer_dir):
    from slm.tokenizer import load_tokenizer

    loader = PackedLoader(data_dir, seq_len=T, batch_size=1)
    loader.check_tokenizer(load_tokenizer(byte_tokenizer_dir))
    with pytest.raises(SlmError, match="prepared with the tokenizer"):
        loader.check_tokenizer(load_tokenizer(llama_tokenizer_dir))


def test_clear_errors(data_dir):
    with pytest.raises(SlmError, match="no split 'test'"):
        PackedLoader(data_dir, "test", seq_len=T, batch_size=1)
    with pytest.raises(SlmError, match="fewer than one sequence"):
        PackedLoader(data_dir, "val", seq_len=10**6, batch_size=1)
    with pytest.raises(SlmError, match="fewer than one global batch"):
        PackedLoader(data_dir, "val", seq_len=T, batch_size=10**6, epochs=1)
    with pytest.raises(SlmError, match="outside world size"):
        PackedLoader(data_dir, seq_len=T, batch_size=1, rank=2, world_size=2)


def test_positional_arguments_match_keywords(data_dir):
    a = next(iter(PackedLoader(data_dir, "train", T, 2, seed=4)))
    b = next(iter(PackedLoader(data_dir, split="train", seq_len=T, batch_size=2, seed=4)))
    assert torch.equal(a["input_ids"], b["input_ids"])
    with pytest.raises(SlmError, match="needs seq_len and batch_size"):
        PackedLoader(data_dir)
