"""Token shards: documents -> tokenized, de-duplicated, split, memory-mappable files plus an index.

Layout of a prepared data directory (every file is deterministic: the same inputs give the same bytes,
whatever the worker count):

    index.json              format, dtype, tokenizer (name, vocab size, fingerprint, bos/eos convention),
                            counts, and per split: its shard files with their token/document counts
    train-00000.bin ...     the split's token stream: raw little-endian uint16 (vocab <= 65536) or uint32,
                            documents back to back, each as [bos?] tokens [eos]
    train.offsets.npy       int64 [documents + 1]: where each document starts in the split's stream
                            (the stream is the concatenation of the split's shards in order)
    train.docs.jsonl        one line per document, same order: {"source": provenance, "hash": content hash}
    val-00000.bin ...       the same for the validation split
    tokenizer/              a copy of the tokenizer the shards were made with (load_data_tokenizer)

A document goes to validation when a hash of (seed, its normalized text) falls below val_fraction, so the
split depends on neither the order of the sources nor the number of workers, and a document keeps its
split when the corpus grows. Exact duplicates (same normalized text) are kept once: the first occurrence.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import unicodedata
from array import array
from collections import deque
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from slm.data.sources import Document
from slm.errors import SlmError
from slm.io import atomic_directory

FORMAT = "slm-token-shards"
VERSION = 1
SPLITS = ("train", "val")
DEFAULT_SHARD_TOKENS = 256 * 1024 * 1024  # 512 MiB per shard at uint16
CHUNK_DOCS = 64  # documents per task sent to a worker
TOKENIZER_DIR = "tokenizer"
START_METHOD: str | None = None  # worker start method; None = fork on Linux, spawn elsewhere  # a copy of the tokenizer inside the data directory


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 holds ids 0..65535, so a vocabulary of up to 65536 tokens fits; larger ones need uint32."""
    return np.dtype("<u2") if vocab_size <= 1 << 16 else np.dtype("<u4")


def normalize_text(text: str) -> str:
    """What 'the same document' means for de-duplication: NFC, \\n line ends, no trailing spaces, no outer blanks."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    return "\n".join(line.rstrip() for line in text.split("\n")).strip()


def content_hash(text: str) -> str:
    """Hex digest of the normalized text; '' for a document that is empty once normalized."""
    norm = normalize_text(text)
    return hashlib.blake2b(norm.encode("utf-8"), digest_size=16).hexdigest() if norm else ""


def is_validation(doc_hash: str, val_fraction: float, seed: int) -> bool:
    """A uniform number from (seed, content) compared with val_fraction: independent of order and workers."""
    if val_fraction <= 0:
        return False
    h = hashlib.blake2b(f"{seed}:{doc_hash}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64 < val_fraction


def tokenizer_fingerprint(tokenizer, size: int | None = None) -> str:
    """Identifies a vocabulary: token -> id for every token (or for the first `size` ids), plus the special
    tokens. Robust to save/load round trips (unlike the serialized tokenizer.json), and what decides whether
    shards fit a model."""
    vocab = sorted(((t, i) for t, i in tokenizer.get_vocab().items() if size is None or i < size),
                   key=lambda kv: kv[1])
    specials = {k: getattr(tokenizer, f"{k}_token_id", None) for k in ("bos", "eos", "pad", "unk")}
    payload = json.dumps([vocab, specials], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]


def special_token_convention(tokenizer) -> dict:
    """Does this tokenizer's own convention put bos in front / eos behind? Compare with add_special_tokens=False."""
    plain = tokenizer("x", add_special_tokens=False)["input_ids"]
    full = tokenizer("x")["input_ids"]
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    return {"adds_bos": bos is not None and len(full) > len(plain) and full[0] == bos,
            "adds_eos": eos is not None and len(full) > len(plain) and full[-1] == eos}


def tokenizer_info(tokenizer, name: str) -> dict:
    convention = special_token_convention(tokenizer)
    return {"name": name, "vocab_size": len(tokenizer), "fingerprint": tokenizer_fingerprint(tokenizer),
            "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id, **convention}


# ----------------------------------------------------------------------------------------------- tokenizing
# The worker state: one tokenizer per process, set once by the pool initializer.
_worker: dict = {}


def _init_worker(tokenizer, prefix: list[int], suffix: list[int], dtype: str, pooled: bool = True) -> None:
    if pooled:
        os.environ["TOKENIZERS_PARALLELISM"] = "false"  # the pool is the parallelism; no threads inside a worker
    _worker.update(tokenizer=tokenizer, prefix=prefix, suffix=suffix, dtype=np.dtype(dtype))


def _encode_chunk(texts: list[str]) -> list[tuple[str, np.ndarray]]:
    """(content hash, token ids with bos/eos added) per text; empty documents come back with no tokens."""
    tok, dtype = _worker["tokenizer"], _worker["dtype"]
    hashes = [content_hash(t) for t in texts]
    keep = [t for t, h in zip(texts, hashes) if h]
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is not None:  # the Rust tokenizer directly: no per-call Python overhead, no length warnings
        ids = [e.ids for e in backend.encode_batch(keep, add_special_tokens=False)] if keep else []
    else:
        ids = [tok(t, add_special_tokens=False)["input_ids"] for t in keep]
    out, it = [], iter(ids)
    for h in hashes:
        tokens = np.asarray(_worker["prefix"] + next(it) + _worker["suffix"], dtype=dtype) if h else \
            np.zeros(0, dtype)
        out.append((h, tokens))
    return out


def _chunks(documents: Iterable[Document], size: int) -> Iterator[list[Document]]:
    chunk = []
    for doc in documents:
        chunk.append(doc)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _encoded(documents: Iterable[Document], workers: int,
             init_args: tuple) -> Iterator[tuple[Document, str, np.ndarray]]:
    """(document, hash, tokens) in source order. With workers > 1 a process pool tokenizes; at most a few chunks per
    worker are in flight, so a corpus of any size streams through in bounded memory."""
    if workers <= 1:
        _init_worker(*init_args, pooled=False)
        for chunk in _chunks(documents, CHUNK_DOCS):
            yield from ((doc, h, t) for doc, (h, t) in zip(chunk, _encode_chunk([d.text for d in chunk])))
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    # fork on Linux: workers inherit the loaded tokenizer and start at once (spawn re-imports torch and transformers
    # in each: seconds per worker). Workers only run the Rust tokenizer (its thread pool off, see _init_worker)
    # and numpy. Elsewhere spawn (fork is unsafe on macOS), which pickles the tokenizer over.
    # An executor, not mp.Pool: a worker that dies is an error here, not an endless respawn.
    method = START_METHOD or ("fork" if sys.platform.startswith("linux") else "spawn")
    with ProcessPoolExecutor(workers, mp_context=mp.get_context(method), initializer=_init_worker,
                             initargs=init_args) as pool:
        pending: deque = deque()
        try:
            for chunk in _chunks(documents, CHUNK_DOCS):
                pending.append((chunk, pool.submit(_encode_chunk, [d.text for d in chunk])))
                while len(pending) >= 4 * workers:
                    yield from _drain(pending.popleft())
            while pending:
                yield from _drain(pending.popleft())
        finally:
            for _, future in pending:
                future.cancel()


def _drain(item) -> Iterator[tuple[Document, str, np.ndarray]]:
    chunk, result = item
    for doc, (h, tokens) in zip(chunk, result.result()):
        yield doc, h, tokens


# ------------------------------------------------------------------------------------------------- writing
class _SplitWriter:
    """Appends documents to one split's shard files (a new shard once one holds shard_tokens), its provenance
    file line by line, and its offsets to a compact array: memory stays small however large the corpus."""

    def __init__(self, directory: Path, split: str, dtype: np.dtype, shard_tokens: int):
        self.directory, self.split, self.dtype, self.shard_tokens = directory, split, dtype, shard_tokens
        self.shards: list[dict] = []
        self.offsets = array("q", [0])
        self._shard_file = None
        self._docs_file = open(directory / f"{split}.docs.jsonl", "w", encoding="utf-8", newline="\n")

    def add(self, tokens: np.ndarray, doc: Document, doc_hash: str) -> None:
        if self._shard_file is None or self.shards[-1]["tokens"] >= self.shard_tokens:
            self._open_shard()
        tokens.astype(self.dtype, copy=False).tofile(self._shard_file)
        self.shards[-1]["tokens"] += len(tokens)
        self.shards[-1]["documents"] += 1
        self.offsets.append(self.offsets[-1] + len(tokens))
        self._docs_file.write(json.dumps({"source": doc.source, "hash": doc_hash}, ensure_ascii=False) + "\n")

    def _open_shard(self) -> None:
        if self._shard_file is not None:
            self._shard_file.close()
        name = f"{self.split}-{len(self.shards):05d}.bin"
        self._shard_file = open(self.directory / name, "wb")
        self.shards.append({"file": name, "tokens": 0, "documents": 0})

    def close(self) -> None:
        for f in (self._shard_file, self._docs_file):
            if f is not None:
                f.close()
        self._shard_file = self._docs_file = None

    def finish(self) -> dict:
        self.close()
        np.save(self.directory / f"{self.split}.offsets.npy", np.frombuffer(self.offsets, dtype=np.int64))
        return {"documents": len(self.offsets) - 1, "tokens": int(self.offsets[-1]), "shards": self.shards,
                "offsets": f"{self.split}.offsets.npy", "docs": f"{self.split}.docs.jsonl"}


def prepare(sources: Iterable[Document], tokenizer_dir: str | Path, out_dir: str | Path, val_fraction: float = 0.01,
            seed: int = 0, workers: int = 1, dedup: bool = True, append_eos: bool = True,
            shard_tokens: int = DEFAULT_SHARD_TOKENS, description: list[str] | None = None,
            progress: bool = True) -> dict:
    """Tokenize `sources` (an iterable of Documents) with the tokenizer in `tokenizer_dir` into a data directory
    at `out_dir` (written atomically) and return its index. See the module docstring for the layout.

    Each document is tokenized with add_special_tokens=False, then given the tokenizer's own bos when its
    convention adds one, and an eos (append_eos) so that the model learns where documents end.
    """
    from tqdm import tqdm

    from slm.tokenizer import load_tokenizer

    if not 0 <= val_fraction < 1:
        raise SlmError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if shard_tokens < 1:
        raise SlmError(f"shard_tokens must be positive, got {shard_tokens}")
    tokenizer = load_tokenizer(tokenizer_dir)
    info = {**tokenizer_info(tokenizer, name=str(tokenizer_dir)), "dir": TOKENIZER_DIR}
    if append_eos and info["eos_token_id"] is None:
        raise SlmError(f"{tokenizer_dir}: the tokenizer has no eos token to end documents with (use append_eos=False)")
    dtype = token_dtype(info["vocab_size"])
    prefix = [info["bos_token_id"]] if info["adds_bos"] else []
    suffix = [info["eos_token_id"]] if append_eos else []
    init_args = (tokenizer, prefix, suffix, dtype.str)

    counts = {"documents_read": 0, "duplicates_removed": 0, "empty_skipped": 0}
    seen: set[bytes] = set()
    start, n_tokens = time.perf_counter(), 0
    with atomic_directory(out_dir) as tmp:
        writers = {s: _SplitWriter(tmp, s, dtype, shard_tokens) for s in SPLITS}
        bar = tqdm(desc="tokenizing", unit="doc", disable=not progress, dynamic_ncols=True)
        try:
            for doc, doc_hash, tokens in _encoded(sources, max(1, workers), init_args):
                counts["documents_read"] += 1
                bar.update(1)
                if not doc_hash:
                    counts["empty_skipped"] += 1
                    continue
                if dedup:  # after tokenizing (in the workers, in parallel): duplicates are the rare case
                    key = bytes.fromhex(doc_hash)  # 16 bytes a document, so millions fit in memory
                    if key in seen:
                        counts["duplicates_removed"] += 1
                        continue
                    seen.add(key)
                split = "val" if is_validation(doc_hash, val_fraction, seed) else "train"
                writers[split].add(tokens, doc, doc_hash)
                n_tokens += len(tokens)
                if counts["documents_read"] % 64 == 0:
                    bar.set_postfix(tokens=n_tokens, tok_s=f"{n_tokens / (time.perf_counter() - start):.0f}")
        finally:
            bar.close()
            for w in writers.values():
                w.close()
        splits = {s: w.finish() for s, w in writers.items()}
        if splits["train"]["documents"] == 0:
            raise SlmError("no documents to train on: the sources were empty (or all went to validation)")
        index = {"format": FORMAT, "version": VERSION, "dtype": dtype.name, "tokenizer": info,
                 "seed": seed, "val_fraction": val_fraction, "dedup": dedup, "append_eos": append_eos,
                 "sources": list(description or []), "counts": counts, "splits": splits}
        tokenizer.save_pretrained(str(tmp / TOKENIZER_DIR))  # the data directory carries its own tokenizer
        (tmp / "index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return index


def read_index(data_dir: str | Path) -> dict:
    """The index.json of a prepared data directory, checked for format and version."""
    path = Path(data_dir) / "index.json"
    if not path.is_file():
        raise SlmError(f"{data_dir} is not a prepared data directory (no index.json); run `slm data prepare` first")
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise SlmError(f"{path}: corrupt index ({e})") from None
    if index.get("format") != FORMAT or index.get("version") != VERSION:
        raise SlmError(f"{path}: not a {FORMAT} v{VERSION} index (format {index.get('format')!r}, "
                       f"version {index.get('version')!r})")
    return index


def load_data_tokenizer(data_dir: str | Path):
    """The tokenizer a data directory was prepared with (its own copy, wherever the original went)."""
    from slm.tokenizer import load_tokenizer

    index = read_index(data_dir)
    return load_tokenizer(Path(data_dir) / index["tokenizer"].get("dir", TOKENIZER_DIR))


def check_tokenizer(index: dict, tokenizer, where: str = "data") -> None:
    """Refuse a tokenizer other than the one the shards were made with: the ids would mean other strings. One
    that only adds tokens after them (UL2's mode tokens and sentinels, say) reads the shards the same way."""
    info = index["tokenizer"]
    if tokenizer_fingerprint(tokenizer, info["vocab_size"]) != info["fingerprint"]:
        raise SlmError(f"{where}: prepared with the tokenizer {info['name']!r} ({info['vocab_size']} tokens, "
                       f"fingerprint {info['fingerprint'][:12]}), but the model's tokenizer differs "
                       f"({len(tokenizer)} tokens, fingerprint {tokenizer_fingerprint(tokenizer)[:12]}); "
                       "re-run `slm data prepare` with the model's tokenizer")
