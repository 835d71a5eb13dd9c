"""PackedLoader: fixed-length training sequences cut from a prepared split, resumable and rank-aware.

Packing. A split is one token stream (its documents back to back, each ending in eos). Window i is
stream[i*T : i*T + T + 1]: its first T tokens are the inputs and its last T the labels, so labels are
already shifted (labels[b, t] is the token after input_ids[b, t]) and every token of the stream is a
target exactly once per epoch. Windows cross document boundaries; `document_ids` says which document each
position belongs to (0, 1, 2, ... within a row) so that an objective can keep attention inside documents
(slm.models.make_attention_mask(..., document_ids=...)), and `position_ids` restart at 0 where a document
starts (a document already running at the row's start counts from 0 at the row's start, so positions stay
below T). The label of a document's last token (its eos) is the first token of the next document: the same
unconditional "what starts a document" target that GPT-style pretraining has.

Order. The windows of epoch e come in the permutation np.random.default_rng([seed, e]).permutation(n):
a fixed function of (seed, epoch), so every process computes the same order without communication.
Epochs are laid end to end into one sequence of windows, and global batch g is the next
batch_size * world_size windows of it (a batch may hold the end of one epoch and the start of the next).

Ranks. batch_size is per rank; the global batch is batch_size * world_size rows, and rank r of W takes rows
r::W of it. So W ranks with batch_size B together see exactly the rows that one process sees with batch_size
B*W (rank r's row i is the single process's row i*W + r): the global batch is identical, which is what makes
a DDP run (gradients averaged over ranks) equal to a single-process run with the larger batch.

Resumption. The position is one number, the count of windows consumed (k global batches in: k times the
global batch); state_dict() after k batches and load_state_dict() on a new loader make it yield batch k+1
next. Because the position counts windows, not batches, a run may even resume with another world size.
Iterating again continues from the current position (a finite loader that is used up yields nothing more).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from slm.data.shards import check_tokenizer, read_index
from slm.errors import SlmError

STATE_VERSION = 1


class PackedLoader:
    def __init__(self, data_dir: str | Path, split: str = "train", seq_len: int | None = None,
                 batch_size: int | None = None, *, seed: int = 0, rank: int = 0, world_size: int = 1,
                 epochs: int | None = None, shuffle: bool = True, drop_last: bool = True):
        """seq_len and batch_size are required; batch_size counts the rows of THIS rank's batches (the global
        batch is batch_size * world_size). epochs=None repeats forever. With a finite epoch count the last
        global batch, if partial, is dropped (drop_last, the default, which keeps every rank at the same batch
        count); drop_last=False yields it (ranks then split a short batch, some possibly getting fewer rows:
        meant for single-process evaluation)."""
        if seq_len is None or batch_size is None:
            raise SlmError("PackedLoader needs seq_len and batch_size")
        self.data_dir = Path(data_dir)
        self.index = read_index(self.data_dir)
        if split not in self.index["splits"]:
            raise SlmError(f"{data_dir}: no split {split!r}; splits are {sorted(self.index['splits'])}")
        if seq_len < 1 or batch_size < 1:
            raise SlmError(f"seq_len and batch_size must be positive (got {seq_len}, {batch_size})")
        if not 0 <= rank < world_size:
            raise SlmError(f"rank {rank} is outside world size {world_size}")
        if epochs is not None and epochs < 1:
            raise SlmError(f"epochs must be positive or None (forever), got {epochs}")
        info = self.index["splits"][split]
        self.split, self.seq_len, self.batch_size, self.seed = split, seq_len, batch_size, seed
        self.rank, self.world_size, self.epochs = rank, world_size, epochs
        self.shuffle, self.drop_last = shuffle, drop_last
        self.global_batch = batch_size * world_size

        dtype = np.dtype(self.index["dtype"])
        shards = [s for s in info["shards"] if s["tokens"] > 0]  # np.memmap cannot map an empty file
        self._shards = [np.memmap(self.data_dir / s["file"], dtype=dtype, mode="r", shape=(s["tokens"],))
                        for s in shards]
        self._shard_starts = np.cumsum([0] + [s["tokens"] for s in shards])
        self.total_tokens = int(self._shard_starts[-1])
        self._doc_starts = np.load(self.data_dir / info["offsets"], mmap_mode="r")
        if int(self._doc_starts[-1]) != self.total_tokens:
            raise SlmError(f"{data_dir}: the {split} offsets and shards disagree ({self._doc_starts[-1]} vs "
                           f"{self.total_tokens} tokens); the directory is damaged, prepare it again")
        self.n_windows = (self.total_tokens - 1) // seq_len if self.total_tokens else 0
        if self.n_windows == 0:
            raise SlmError(f"{data_dir}: the {split} split has {self.total_tokens} tokens, fewer than one sequence "
                           f"of seq_len {seq_len} + 1")
        total = None if epochs is None else epochs * self.n_windows
        if total is not None and drop_last and total < self.global_batch:
            raise SlmError(f"{data_dir}: the {split} split holds {self.n_windows} sequences of {seq_len} tokens, "
                           f"fewer than one global batch of {self.global_batch} for {epochs} epoch(s)")
        self._total_windows = total
        self._consumed = 0
        self._perm_epoch, self._perm = -1, None

    # ---------------------------------------------------------------------------------------------- facts
    @property
    def vocab_size(self) -> int:
        return self.index["tokenizer"]["vocab_size"]

    @property
    def epoch(self) -> int:
        """The epoch the next batch starts in (0-based)."""
        return self._consumed // self.n_windows

    @property
    def tokens_per_batch(self) -> int:
        """Input tokens per global batch (all ranks together)."""
        return self.global_batch * self.seq_len

    def __len__(self) -> int:
        """Batches in the whole run (finite epochs only)."""
        if self._total_windows is None:
            raise TypeError("a PackedLoader with epochs=None is endless")
        full, rest = divmod(self._total_windows, self.global_batch)
        return full + (1 if rest and not self.drop_last else 0)

    def check_tokenizer(self, tokenizer) -> None:
        """Raise SlmError unless `tokenizer` is the one these shards were made with."""
        check_tokenizer(self.index, tokenizer, where=str(self.data_dir))

    # ------------------------------------------------------------------------------------------- iterate
    def __iter__(self) -> Iterator[dict]:
        while True:
            take = self.global_batch
            if self._total_windows is not None:
                take = min(take, self._total_windows - self._consumed)
                if take <= 0 or (self.drop_last and take < self.global_batch):
                    return
            windows = self._window_order(self._consumed, take)[self.rank::self.world_size]
            # Advance before yielding: state_dict() taken after receiving a batch points at the next one.
            self._consumed += take
            yield self._batch(windows)

    def _window_order(self, start: int, count: int) -> np.ndarray:
        """Window indices at positions start .. start+count-1 of the endless sequence of epoch permutations."""
        out = np.empty(count, dtype=np.int64)
        done = 0
        while done < count:
            epoch, offset = divmod(start + done, self.n_windows)
            n = min(count - done, self.n_windows - offset)
            out[done:done + n] = self._permutation(epoch)[offset:offset + n]
            done += n
        return out

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._perm_epoch:
            self._perm = (np.random.default_rng([self.seed, epoch]).permutation(self.n_windows) if self.shuffle
                          else np.arange(self.n_windows))
            self._perm_epoch = epoch
        return self._perm

    def _read(self, start: int, length: int) -> np.ndarray:
        """stream[start : start+length] across shard files."""
        pieces, pos, end = [], start, start + length
        shard = int(np.searchsorted(self._shard_starts, start, side="right")) - 1
        while pos < end:
            base = int(self._shard_starts[shard])
            stop = min(end, int(self._shard_starts[shard + 1]))
            pieces.append(self._shards[shard][pos - base:stop - base])
            pos, shard = stop, shard + 1
        return np.concatenate(pieces) if len(pieces) > 1 else pieces[0]

    def _batch(self, windows: np.ndarray) -> dict:
        import torch

        T = self.seq_len
        starts = windows * T
        tokens = np.stack([self._read(int(s), T + 1) for s in starts]).astype(np.int64) if len(starts) else \
            np.zeros((0, T + 1), np.int64)
        positions = starts[:, None] + np.arange(T)[None, :]
        doc = np.searchsorted(self._doc_starts, positions, side="right") - 1
        begin = np.maximum(self._doc_starts[doc], starts[:, None])  # a running document counts from the row start
        return {
            "input_ids": torch.from_numpy(np.ascontiguousarray(tokens[:, :-1])),
            "labels": torch.from_numpy(np.ascontiguousarray(tokens[:, 1:])),
            "document_ids": torch.from_numpy(doc - doc[:, :1]),
            "position_ids": torch.from_numpy(positions - begin),
        }

    # ------------------------------------------------------------------------------------------ position
    def state_dict(self) -> dict:
        return {"version": STATE_VERSION, "consumed_windows": self._consumed, "split": self.split,
                "seed": self.seed, "seq_len": self.seq_len, "n_windows": self.n_windows, "shuffle": self.shuffle,
                "fingerprint": self.index["tokenizer"]["fingerprint"]}

    def load_state_dict(self, state: dict) -> None:
        """Continue exactly where the loader that produced `state` stopped. The data, split, seed, seq_len and
        shuffling must match (else the saved position would point at other windows); batch size and world size
        may differ."""
        if state.get("version") != STATE_VERSION:
            raise SlmError(f"loader state version {state.get('version')!r} is not {STATE_VERSION}")
        mine = self.state_dict()
        for key in ("split", "seed", "seq_len", "n_windows", "shuffle", "fingerprint"):
            if state.get(key) != mine[key]:
                raise SlmError(f"cannot resume the data loader: the checkpoint has {key}={state.get(key)!r} but "
                               f"this loader has {key}={mine[key]!r} (same data and loader settings needed)")
        consumed = int(state["consumed_windows"])
        if consumed < 0:
            raise SlmError(f"loader state has a negative position {consumed}")
        self._consumed = consumed
