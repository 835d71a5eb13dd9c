"""Data pipeline throughput: slm against the usual peers, in one run.

prepare: `slm.data.prepare` (tokenize in worker processes, dedup, split, write shards + index) against the
         nanoGPT recipe (openwebtext/prepare.py): HF `datasets` .map(tokenize, num_proc) then concatenation into
         one uint16 np.memmap. Same tokenizer, same documents (the embedded stdlib corpus), same worker count.
loader:  `PackedLoader` batches (input_ids, labels, document_ids, position_ids, resumable position) against
         nanoGPT's get_batch (random offsets into the memmap, torch.stack): the bare minimum a loader does.

    .venv/bin/python benchmarks/data_pipeline.py [--files 400] [--workers 2]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def peer_prepare(texts, tokenizer, out: Path, workers: int) -> int:
    """nanoGPT's openwebtext/prepare.py, with the HF tokenizer in place of tiktoken."""
    import datasets

    eos = tokenizer.eos_token_id

    def process(batch):
        ids = tokenizer(batch["text"], add_special_tokens=False)["input_ids"]
        return {"ids": [x + [eos] for x in ids], "len": [len(x) + 1 for x in ids]}

    ds = datasets.Dataset.from_dict({"text": texts})
    tokenized = ds.map(process, batched=True, remove_columns=["text"], num_proc=workers if workers > 1 else None,
                       desc="peer tokenizing")
    total = int(np.sum(tokenized["len"], dtype=np.uint64))
    arr = np.memmap(out / "train.bin", dtype=np.uint16, mode="w+", shape=(total,))
    idx = 0
    for shard in range(16):
        batch = tokenized.shard(num_shards=16, index=shard, contiguous=True).with_format("numpy")
        chunk = np.concatenate(batch["ids"]) if len(batch) else np.zeros(0, np.uint16)
        arr[idx:idx + len(chunk)] = chunk
        idx += len(chunk)
    arr.flush()
    return total


def nanogpt_batches(path: Path, seq_len: int, batch_size: int, steps: int):
    import torch

    data = np.memmap(path, dtype=np.uint16, mode="r")
    for _ in range(steps):
        ix = torch.randint(len(data) - seq_len, (batch_size,))
        x = torch.stack([torch.from_numpy(data[i:i + seq_len].astype(np.int64)) for i in ix])
        y = torch.stack([torch.from_numpy(data[i + 1:i + 1 + seq_len].astype(np.int64)) for i in ix])
        yield x, y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=400, help="stdlib files in the corpus")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=300, help="loader batches to time")
    args = parser.parse_args()

    import slm
    from slm.data import PackedLoader, prepare
    from slm.data.sources import iter_stdlib_texts, stdlib_documents
    from slm.tokenizer import save_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tokenizer = slm.train_tokenizer(iter_stdlib_texts(50), vocab_size=args.vocab_size, kind="byte-bpe")
        save_tokenizer(tokenizer, tmp / "tok")
        docs = list(stdlib_documents(args.files))
        print(f"corpus: {len(docs)} stdlib files, {sum(len(d.text) for d in docs) / 1e6:.1f} MB; "
              f"tokenizer: byte-bpe {len(tokenizer)}; workers: {args.workers}")

        t0 = time.perf_counter()
        index = prepare(docs, tmp / "tok", tmp / "slm", val_fraction=0.01, workers=args.workers, progress=False)
        slm_s = time.perf_counter() - t0
        slm_tokens = sum(s["tokens"] for s in index["splits"].values())
        (tmp / "peer").mkdir()
        t0 = time.perf_counter()
        peer_tokens = peer_prepare([d.text for d in docs], tokenizer, tmp / "peer", args.workers)
        peer_s = time.perf_counter() - t0
        print(f"prepare  slm: {slm_tokens / slm_s / 1e3:8.0f} k tokens/s ({slm_s:.1f} s, {slm_tokens:,} tokens, "
              f"{index['counts']['duplicates_removed']} duplicates removed)")
        print(f"prepare peer: {peer_tokens / peer_s / 1e3:8.0f} k tokens/s ({peer_s:.1f} s, {peer_tokens:,} tokens; "
              "datasets.map + memmap, nanoGPT recipe)")
        print(f"prepare ratio slm/peer (tokens/s): {(slm_tokens / slm_s) / (peer_tokens / peer_s):.2f}")

        loader = iter(PackedLoader(tmp / "slm", seq_len=args.seq_len, batch_size=args.batch_size, seed=0))
        next(loader)
        t0 = time.perf_counter()
        for _ in range(args.steps):
            next(loader)
        slm_rate = args.steps / (time.perf_counter() - t0)
        peer = nanogpt_batches(tmp / "peer" / "train.bin", args.seq_len, args.batch_size, args.steps + 1)
        next(peer)
        t0 = time.perf_counter()
        for _ in peer:
            pass
        peer_rate = args.steps / (time.perf_counter() - t0)
        tokens = args.seq_len * args.batch_size
        print(f"loader  slm: {slm_rate:8.0f} batches/s ({slm_rate * tokens / 1e6:.1f} M tokens/s; "
              f"with document_ids, position_ids)")
        print(f"loader peer: {peer_rate:8.0f} batches/s ({peer_rate * tokens / 1e6:.1f} M tokens/s; nanoGPT get_batch)")
        print(f"loader ratio slm/peer (batches/s): {slm_rate / peer_rate:.2f}")


if __name__ == "__main__":
    main()
