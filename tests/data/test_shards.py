import json
import random

import numpy as np
import pytest

from slm.data.shards import content_hash, normalize_text, prepare, read_index, token_dtype
from slm.data.sources import Document
from slm.errors import SlmError
from slm.tokenizer import load_tokenizer


def split_documents(out, split):
    """The token list of each document in a prepared split, from its shards and offsets."""
    index = read_index(out)
    info = index["splits"][split]
    stream = np.concatenate([np.fromfile(out / s["file"], dtype=index["dtype"]) for s in info["shards"]] or
                            [np.zeros(0, index["dtype"])])
    offsets = np.load(out / info["offsets"])
    return [stream[a:b].tolist() for a, b in zip(offsets[:-1], offsets[1:])]


def provenance(out, split):
    return [json.loads(line) for line in (out / f"{split}.docs.jsonl").read_text().splitlines()]


def test_documents_are_tokenized_with_eos_and_provenance(tmp_path, byte_tokenizer_dir, make_docs):
    docs = make_docs(30)
    index = prepare(docs, byte_tokenizer_dir, tmp_path / "d", val_fraction=0.0, progress=False)
    tok = load_tokenizer(byte_tokenizer_dir)
    got = split_documents(tmp_path / "d", "train")
    assert got == [tok(d.text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for d in docs]
    assert [p["source"] for p in provenance(tmp_path / "d", "train")] == [d.source for d in docs]
    assert index["dtype"] == "uint16" and index["tokenizer"]["vocab_size"] == len(tok)
    assert index["tokenizer"]["adds_bos"] is False           # GPT-2 convention: eos only
    assert index["splits"]["train"]["tokens"] == sum(map(len, got))
    assert index["counts"] == {"documents_read": 30, "duplicates_removed": 0, "empty_skipped": 0}


def test_bos_is_added_when_the_tokenizer_convention_adds_it(tmp_path, llama_tokenizer_dir, make_docs):
    docs = make_docs(5)
    index = prepare(docs, llama_tokenizer_dir, tmp_path / "d", val_fraction=0.0, progress=False, append_eos=False)
    tok = load_tokenizer(llama_tokenizer_dir)
    assert index["tokenizer"]["adds_bos"] is True
    assert split_documents(tmp_path / "d", "train") == [
        [tok.bos_token_id] + tok(d.text, add_special_tokens=False)["input_ids"] for d in docs]


def test_exact_duplicates_are_removed_after_normalization(tmp_path, byte_tokenizer_dir):
    docs = [Document("alpha beta\n", "a"), Document("gamma", "b"), Document("alpha beta   \r\n\n", "c"),
            Document("  \n ", "empty"), Document("gamma", "d"), Document("Alpha beta", "e")]
    assert normalize_text("alpha beta   \r\n\n") == "alpha beta" and content_hash(" \n") == ""
    index = prepare(docs, byte_tokenizer_dir, tmp_path / "d", val_fraction=0.0, progress=False)
    assert [p["source"] for p in provenance(tmp_path / "d", "train")] == ["a", "b", "e"]  # first occurrence kept
    assert index["counts"] == {"documents_read": 6, "duplicates_removed": 2, "empty_skipped": 1}
    kept = prepare(docs, byte_tokenizer_dir, tmp_path / "k", val_fraction=0.0, progress=False, dedup=False)
    assert kept["splits"]["train"]["documents"] == 5


def test_split_is_by_content_not_by_order(tmp_path, byte_tokenizer_dir, make_docs):
    docs = make_docs(200)
    prepare(docs, byte_tokenizer_dir, tmp_path / "a", val_fraction=0.2, seed=3, progress=False)
    shuffled = docs[:]
    random.Random(0).shuffle(shuffled)
    prepare(shuffled, byte_tokenizer_dir, tmp_path / "b", val_fraction=0.2, seed=3, progress=False)
    val_a = {p["source"] for p in provenance(tmp_path / "a", "val")}
    val_b = {p["source"] for p in provenance(tmp_path / "b", "val")}
    assert val_a == val_b and 15 <= len(val_a) <= 65      # ~20% of 200, the same documents either way
    train_a = {p["source"] for p in provenance(tmp_path / "a", "train")}
    assert not train_a & val_a and len(train_a | val_a) == 200
    prepare(docs, byte_tokenizer_dir, tmp_path / "c", val_fraction=0.2, seed=4, progress=False)
    assert {p["source"] for p in provenance(tmp_path / "c", "val")} != val_a  # the seed chooses the split


def _tree_bytes(path):
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_rerun_is_byte_identical_and_shards_roll_over(tmp_path, byte_tokenizer_dir, make_docs):
    docs = make_docs(120)
    kw = dict(val_fraction=0.1, seed=0, progress=False, shard_tokens=500)
    index = prepare(docs, byte_tokenizer_dir, tmp_path / "a", **kw)
    prepare(docs, byte_tokenizer_dir, tmp_path / "b", **kw)
    assert _tree_bytes(tmp_path / "a") == _tree_bytes(tmp_path / "b")
    shards = index["splits"]["train"]["shards"]
    assert len(shards) > 2 and all(s["tokens"] >= 500 for s in shards[:-1])
    # Documents never straddle shards: every shard boundary is a document boundary.
    offsets = set(np.load(tmp_path / "a" / "train.offsets.npy").tolist())
    assert set(np.cumsum([s["tokens"] for s in shards]).tolist()) <= offsets


@pytest.mark.slow
@pytest.mark.parametrize("start_method", [None, "spawn"])  # the platform default (fork on Linux), and spawn
def test_worker_processes_give_identical_output(tmp_path, byte_tokenizer_dir, make_docs, monkeypatch,
                                                start_method):
    import slm.data.shards

    monkeypatch.setattr(slm.data.shards, "START_METHOD", start_method)
    docs = make_docs(300)
    prepare(docs, byte_tokenizer_dir, tmp_path / "one", val_fraction=0.1, workers=1, progress=False)
    prepare(docs, byte_tokenizer_dir, tmp_path / "two", val_fraction=0.1, workers=2, progress=False)
    assert _tree_bytes(tmp_path / "one") == _tree_bytes(tmp_path / "two")


def test_token_dtype_choice():
    assert token_dtype(32000) == np.uint16 and token_dtype(65536) == np.uint16
    assert token_dtype(65537) == np.uint32 and token_dtype(128256) == np.uint32


def test_large_vocab_is_stored_as_uint32(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from slm.tokenizer import save_tokenizer

    vocab = {"<unk>": 0, "<eos>": 1, **{f"w{i}": i + 2 for i in range(70000)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    save_tokenizer(PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>", unk_token="<unk>"),
                   tmp_path / "tok")
    index = prepare([Document("w69999 w3 w65535", "x")], tmp_path / "tok", tmp_path / "d", val_fraction=0.0,
                    progress=False)
    assert index["dtype"] == "uint32"
    assert split_documents(tmp_path / "d", "train") == [[70001, 5, 65537, 1]]  # ids past 65535 survive


def test_failed_prepare_leaves_the_old_directory_alone(tmp_path, byte_tokenizer_dir, make_docs):
    prepare(make_docs(10), byte_tokenizer_dir, tmp_path / "d", val_fraction=0.0, progress=False)
    before = _tree_bytes(tmp_path / "d")

    def broken():
        yield from make_docs(5, seed=1)
        raise SlmError("source broke halfway")

    with pytest.raises(SlmError, match="halfway"):
        prepare(broken(), byte_tokenizer_dir, tmp_path / "d", val_fraction=0.0, progress=False)
    assert _tree_bytes(tmp_path / "d") == before
    assert [p.name for p in tmp_path.iterdir()] == ["d"]  # no temporary directory left behind


def test_bad_inputs_are_clear_errors(tmp_path, byte_tokenizer_dir, make_docs):
    with pytest.raises(SlmError, match="no documents"):
        prepare([], byte_tokenizer_dir, tmp_path / "d", progress=False)
    with pytest.raises(SlmError, match="val_fraction"):
        prepare(make_docs(3), byte_tokenizer_dir, tmp_path / "d", val_fraction=1.5, progress=False)
    with pytest.raises(SlmError, match="not a prepared data directory"):
        read_index(tmp_path)


def test_data_directory_carries_its_tokenizer(tmp_path, byte_tokenizer_dir, make_docs):
    from slm.data.shards import check_tokenizer, load_data_tokenizer

    index = prepare(make_docs(5), byte_tokenizer_dir, tmp_path / "d", val_fraction=0.0, progress=False)
    copy = load_data_tokenizer(tmp_path / "d")
    check_tokenizer(index, copy)  # the same vocabulary as the original, by fingerprint
    assert copy("def x")["input_ids"] == load_tokenizer(byte_tokenizer_dir)("def x")["input_ids"]


def test_a_tokenizer_that_only_appends_tokens_still_reads_the_shards(tmp_path, byte_tokenizer_dir, llama_tokenizer_dir,
                                                                   make_docs):
    from tokenizers import AddedToken

    from slm.data.shards import check_tokenizer

    index = prepare(make_docs(5), byte_tokenizer_dir, tmp_path / "d", val_fraction=0.0, progress=False)
    grown = load_tokenizer(byte_tokenizer_dir)
    grown.add_tokens([AddedToken("[NLU]", special=True), AddedToken("<extra_id_0>", special=True)],
                     special_tokens=True)
    check_tokenizer(index, grown)  # UL2's tokens after the vocabulary: every shard id still means the same
    with pytest.raises(SlmError, match="re-run `slm data prepare`"):
        check_tokenizer(index, load_tokenizer(llama_tokenizer_dir))
