"""Masked-LM objective: fairseq's masking statistics and determinism, FULL-/DOC-SENTENCES blocks, the static
baseline, and an exact mid-epoch resume through `slm pretrain`'s Trainer."""
import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import slm
from slm.data.shards import prepare
from slm.data.sources import stdlib_documents
from slm.objectives import IGNORE, MaskingConfig, MaskTokens, MLMBlockLoader, fairseq_seed
from slm.train.pretrain import PretrainConfig, load_config, run


@pytest.fixture(scope="module")
def tokenizer(corpus_texts):
    return slm.train_tokenizer(corpus_texts[:10], vocab_size=400, kind="roberta-bpe")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, tokenizer):
    root = tmp_path_factory.mktemp("mlm-data")
    tokenizer.save_pretrained(str(root / "tok"))
    prepare(stdlib_documents(12), root / "tok", root / "data", val_fraction=0.2, workers=1, progress=False)
    return root / "data"


def _rows(tokenizer, n_rows=800, length=129, seed=0):
    """1e5 maskable tokens: each row <s> ... </s> with a </s><s> separator in the middle, as FULL-SENTENCES rows look."""
    rng = np.random.default_rng(seed)
    special = set(tokenizer.all_special_ids)
    ordinary = np.array([i for i in range(len(tokenizer)) if i not in special])
    rows = rng.choice(ordinary, (n_rows, length))
    rows[:, 0], rows[:, 60], rows[:, 61], rows[:, -1] = (tokenizer.bos_token_id, tokenizer.eos_token_id,
                                                         tokenizer.bos_token_id, tokenizer.eos_token_id)
    return rows


def test_masking_statistics_over_1e5_tokens(tokenizer):
    masker = MaskTokens(tokenizer, MaskingConfig(seed=3))
    rows = _rows(tokenizer)
    special = np.array(sorted(set(tokenizer.all_special_ids)))
    maskable = chosen = as_mask = as_random = kept = 0
    for i, row in enumerate(rows):
        out, labels = masker.mask_row(row, epoch=0, index=i)
        picked = labels != IGNORE
        assert not np.isin(row[picked], special).any()  # a special token is never chosen
        assert (labels[picked] == row[picked]).all()
        changed = out != row
        assert not changed[~picked].any()  # only chosen positions change
        assert not np.isin(out[picked & (out != tokenizer.mask_token_id)], special).any()  # nor drawn at random
        maskable += int((~np.isin(row, special)).sum())
        chosen += int(picked.sum())
        as_mask += int((out[picked] == tokenizer.mask_token_id).sum())
        as_random += int((changed & picked & (out != tokenizer.mask_token_id)).sum())
        kept += int((picked & ~changed).sum())
    assert maskable == 100_000
    assert abs(chosen / maskable - 0.15) < 0.005
    # A random draw may equal the original token (1 in 395 here): those count as kept, as in fairseq.
    assert abs(as_mask / chosen - 0.8) < 0.01
    assert abs(as_random / chosen - 0.1) < 0.01
    assert abs(kept / chosen - 0.1) < 0.01


def test_mask_count_is_fairseq_rounding(tokenizer):
    masker = MaskTokens(tokenizer, MaskingConfig(seed=7))
    row = _rows(tokenizer, n_rows=1)[0]
    n = int((~masker.special[row]).sum())
    for index in range(20):
        _, labels = masker.mask_row(row, epoch=2, index=index)
        u = np.random.RandomState(fairseq_seed(7, 2, index)).rand()  # fairseq's first draw of that seed
        assert (labels != IGNORE).sum() == int(0.15 * n + u)


def test_mask_is_a_function_of_seed_epoch_index(tokenizer):
    masker = MaskTokens(tokenizer, MaskingConfig(seed=1))
    row = _rows(tokenizer, n_rows=1)[0]
    a = masker.mask_row(row, epoch=0, index=5)
    b = MaskTokens(tokenizer, MaskingConfig(seed=1)).mask_row(row.copy(), epoch=0, index=5)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    next_epoch = masker.mask_row(row, epoch=1, index=5)
    other_index = masker.mask_row(row, epoch=0, index=6)
    other_seed = MaskTokens(tokenizer, MaskingConfig(seed=2)).mask_row(row, epoch=0, index=5)
    for other in (next_epoch, other_index, other_seed):
        assert not np.array_equal(a[1], other[1])


def test_batch_transform_masks_rows_independently_of_the_batch(tokenizer):
    masker = MaskTokens(tokenizer)
    rows = torch.from_numpy(_rows(tokenizer, n_rows=4))
    batch = {"input_ids": rows, "sample_index": torch.tensor([3, 1, 4, 1]), "mask_epoch": torch.tensor([0, 0, 0, 2])}
    out = masker(batch)
    alone = masker({k: v[2:3] for k, v in batch.items()})
    assert torch.equal(out["input_ids"][2:3], alone["input_ids"]) and torch.equal(out["labels"][2:3], alone["labels"])
    assert not torch.equal(out["labels"][1], out["labels"][3])  # same block, another epoch


def test_whole_word_masking_masks_every_piece_of_a_word(tokenizer):
    text = " ".join(["internationalization configuration serialization"] * 40)
    ids = np.array(tokenizer(text)["input_ids"])
    masker = MaskTokens(tokenizer, MaskingConfig(whole_word=True, seed=0))
    begins = masker.word_begins[ids]
    assert begins.mean() < 0.7  # the words really are split into pieces
    for index in range(5):
        _, labels = masker.mask_row(ids, epoch=0, index=index)
        picked = labels != IGNORE
        assert picked.any()
        word = np.cumsum(begins)  # word number of every position
        for w in np.unique(word[picked]):
            assert picked[(word == w) & ~masker.special[ids]].all()


def test_full_sentences_blocks_cross_documents_and_cover_the_stream(data_dir, tokenizer):
    loader = MLMBlockLoader(data_dir, "train", seq_len=64, batch_size=4, packing="full", epochs=1, shuffle=False)
    rows = torch.cat([b["input_ids"] for b in loader])
    assert (rows[:, 0] == tokenizer.bos_token_id).all() and rows.shape[1] == 64
    stream = np.concatenate([loader._read(0, loader.total_tokens)])
    body = rows[:, 1:].reshape(-1).numpy()
    assert np.array_equal(body, stream[:len(body)])  # blocks are the stream, back to back
    eos, bos = tokenizer.eos_token_id, tokenizer.bos_token_id
    crossing = ((rows[:, 1:-1] == eos) & (rows[:, 2:] == bos)).any(dim=1)
    assert crossing.any()  # some rows hold the end of one document and the start of the next
    assert (rows != tokenizer.pad_token_id).all()


def test_doc_sentences_blocks_stay_in_one_document(data_dir, tokenizer):
    loader = MLMBlockLoader(data_dir, "train", seq_len=64, batch_size=4, packing="doc", epochs=1, shuffle=False,
                            drop_last=False)
    batches = list(loader)
    rows = torch.cat([b["input_ids"] for b in batches])
    mask = torch.cat([b["attention_mask"] for b in batches])
    eos, bos = tokenizer.eos_token_id, tokenizer.bos_token_id
    assert not ((rows[:, 1:-1] == eos) & (rows[:, 2:] == bos)).any()  # never two documents in a row
    assert ((rows == tokenizer.pad_token_id) == (mask == 0)).all()
    assert (mask == 0).any() and (rows[:, 0] == bos).all()
    n_docs = len(loader._doc_starts) - 1
    assert (rows[:, 1:] == eos).sum() == n_docs  # every document ends exactly once


def test_static_masking_duplicates_the_data_with_fixed_masks(data_dir, tokenizer):
    dynamic = MLMBlockLoader(data_dir, "train", seq_len=64, batch_size=2, masking="dynamic", epochs=2)
    static = MLMBlockLoader(data_dir, "train", seq_len=64, batch_size=2, masking="static", copies=3, epochs=2)
    assert static.n_windows == 3 * dynamic.n_windows
    seen = {}
    for epoch, batch in enumerate(_epoch_batches(static)):
        for idx, key in zip(batch["sample_index"].tolist(), batch["mask_epoch"].tolist()):
            seen.setdefault(idx, []).append(key)
    assert all(sorted(keys) == [0, 0, 1, 1, 2, 2] for keys in seen.values())  # 3 copies, seen once per epoch
    keys = {}
    for batch in _epoch_batches(dynamic):
        for idx, key in zip(batch["sample_index"].tolist(), batch["mask_epoch"].tolist()):
            keys.setdefault(idx, []).append(key)
    assert all(sorted(k) == [0, 1] for k in keys.values())  # dynamic: a new mask each epoch


def _epoch_batches(loader):
    batches = []
    for b in loader:
        batches.append(b)
    return batches


def _recipe(data_dir, out, **mlm):
    return load_config(None, [f"data.dir={data_dir}", "data.seq_len=32", "data.batch_size=4", "model.preset=roberta-tiny",
                              "model.config={dim: 32, n_layers: 2, n_heads: 2, ffn_dim: 64, max_positions: 40}",
                              "objective=mlm", "train.max_steps=6", "train.save_every=3", "train.warmup_steps=2",
                              "train.lr=1e-3", "train.eval_batches=2", "train.progress=false", "train.log_every=1",
                              "train.keep_last=0", f"out={out}"] + [f"mlm.{k}={v}" for k, v in mlm.items()])


@pytest.mark.parametrize("mlm", [dict(packing="full", masking="dynamic"),
                                 dict(packing="doc", masking="static", copies=2, whole_word=True)])
def test_pretrain_mlm_resumes_mid_epoch_exactly(data_dir, tmp_path, mlm):
    cfg = _recipe(data_dir, tmp_path / "a", **mlm)
    assert isinstance(cfg, PretrainConfig)
    result = run(cfg)
    assert result["val_ppl"] > 1 and result["step"] == 6
    loader = MLMBlockLoader(data_dir, "train", 32, 4, packing=mlm["packing"])
    assert 6 * 4 < loader.n_windows  # step 3 is mid-epoch
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    shutil.rmtree(tmp_path / "b" / "checkpoints" / "step-000006")
    resumed = run(_recipe(data_dir, tmp_path / "b", **mlm), resume="auto")
    assert resumed["step"] == 6
    a = load_file(tmp_path / "a" / "checkpoints" / "step-000006" / "model.safetensors")
    b = load_file(tmp_path / "b" / "checkpoints" / "step-000006" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    losses = lambda d: [r["loss"] for r in map(json.loads, (d / "metrics.jsonl").read_text().splitlines())
                        if "loss" in r]
    assert losses(tmp_path / "a") == losses(tmp_path / "b")
    model, tok = slm.load(tmp_path / "a" / "checkpoints" / "step-000006")
    assert model.config.head == "mlm" and tok.mask_token_id is not None


def test_pretrain_mlm_refuses_a_decoder(data_dir, tmp_path):
    cfg = _recipe(data_dir, tmp_path / "x")
    cfg.model.preset, cfg.model.config = "nano", {"dim": 32, "n_layers": 1, "n_heads": 2, "n_kv_heads": 1,
                                                  "ffn_dim": 64, "max_seq_len": 64}
    with pytest.raises(slm.ConfigError, match="MLM head"):
        run(cfg)
