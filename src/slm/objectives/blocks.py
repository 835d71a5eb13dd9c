"""Encoder training rows from prepared shards: RoBERTa's FULL-SENTENCES and DOC-SENTENCES blocks, dynamic or
static masking keys, through PackedLoader's order, ranks and exact resume.

Every row is `<s>` + a block of up to seq_len - 1 tokens of the split's stream (documents back to back, each
`<s> ... </s>` as `slm data prepare` writes them with a RoBERTa tokenizer):
  full  FULL-SENTENCES: block i is stream[i*L : (i+1)*L], L = seq_len - 1; blocks cross document boundaries,
        where the documents' own </s><s> is the separator. No padding, no attention mask. No NSP.
  doc   DOC-SENTENCES: blocks never cross a document; a document (its leading <s> dropped) is cut into blocks of
        L tokens, and the last, shorter one is padded (attention_mask marks the real tokens).
Each row carries `sample_index` (its block) and `mask_epoch`, the key slm.objectives.MaskTokens masks it by:
  dynamic  mask_epoch = the epoch: a new mask every pass over the data (RoBERTa).
  static   the data is duplicated `copies` times (the window count is copies x blocks, shuffled together) and
           mask_epoch = the copy: each copy's mask is fixed once and repeats every epoch (the paper's baseline,
           10 copies).
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from slm.data.loader import PackedLoader
from slm.errors import SlmError


class MLMBlockLoader(PackedLoader):
    def __init__(self, data_dir: str | Path, split: str = "train", seq_len: int | None = None,
                 batch_size: int | None = None, *, packing: Literal["full", "doc"] = "full",
                 masking: Literal["dynamic", "static"] = "dynamic", copies: int = 10, pad_id: int = 1, **kwargs):
        if packing not in ("full", "doc") or masking not in ("dynamic", "static"):
            raise SlmError(f"packing must be full or doc and masking dynamic or static, got {packing!r}, {masking!r}")
        if seq_len is None or seq_len < 2:
            raise SlmError("MLM blocks need seq_len >= 2 (<s> plus at least one token)")
        self.block = seq_len - 1
        # The base class checks the split and maps the shards; its windows are redefined below.
        super().__init__(data_dir, split, self.block, batch_size, **kwargs)
        self.seq_len, self.packing, self.masking, self.pad_id = seq_len, packing, masking, pad_id
        self.copies = copies if masking == "static" else 1
        if self.copies < 1:
            raise SlmError(f"static masking needs copies >= 1, got {copies}")
        tok = self.index["tokenizer"]
        self.bos = tok["bos_token_id"]
        if self.bos is None:
            raise SlmError(f"{data_dir}: the tokenizer has no <s> (bos) token to start rows with")
        if packing == "full":
            n = self.total_tokens // self.block
            self._starts, self._lengths = np.arange(n, dtype=np.int64) * self.block, np.full(n, self.block)
        else:
            self._starts, self._lengths = self._document_blocks(skip_bos=bool(tok.get("adds_bos")))
        self.n_blocks = len(self._starts)
        if self.n_blocks == 0:
            raise SlmError(f"{data_dir}: the {split} split has no block of {self.block} tokens")
        self.n_windows = self.n_blocks * self.copies
        total = None if self.epochs is None else self.epochs * self.n_windows
        if total is not None and self.drop_last and total < self.global_batch:
            raise SlmError(f"{data_dir}: the {split} split holds {self.n_windows} rows, fewer than one global batch "
                           f"of {self.global_batch}")
        self._total_windows = total

    def _document_blocks(self, skip_bos: bool) -> tuple[np.ndarray, np.ndarray]:
        doc_starts = np.asarray(self._doc_starts, dtype=np.int64)
        begin, end = doc_starts[:-1].copy(), doc_starts[1:]
        if skip_bos and len(begin):
            begin += np.array([self._read(int(s), 1)[0] == self.bos for s in begin], dtype=np.int64)
        length = end - begin
        n = -(-length // self.block)  # blocks per document (ceil)
        first = np.repeat(begin, n)
        k = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)  # block number within its document
        starts = first + k * self.block
        return starts, np.minimum(self.block, np.repeat(end, n) - starts)

    def _window_order(self, start: int, count: int) -> np.ndarray:
        # The base iterator asks for the windows of each global batch here; remember their epochs for _batch.
        self._epochs_of_order = (start + np.arange(count)) // self.n_windows
        return super()._window_order(start, count)

    def _batch(self, windows: np.ndarray) -> dict:
        import torch

        epochs = self._epochs_of_order[self.rank::self.world_size][:len(windows)]
        copy, blocks = np.divmod(windows, self.n_blocks)
        rows = np.full((len(windows), self.seq_len), self.pad_id, dtype=np.int64)
        rows[:, 0] = self.bos
        lengths = self._lengths[blocks]
        for r, (b, n) in enumerate(zip(blocks, lengths)):
            rows[r, 1:1 + n] = self._read(int(self._starts[b]), int(n))
        out = {"input_ids": torch.from_numpy(rows), "sample_index": torch.from_numpy(blocks.astype(np.int64)),
               "mask_epoch": torch.from_numpy((epochs if self.masking == "dynamic" else copy).astype(np.int64))}
        if self.packing == "doc":
            out["attention_mask"] = torch.from_numpy((np.arange(self.seq_len)[None, :] <= lengths[:, None])
                                                     .astype(np.int64))
        return out

    def state_dict(self) -> dict:
        return {**super().state_dict(), "packing": self.packing, "masking": self.masking, "copies": self.copies}

    def load_state_dict(self, state: dict) -> None:
        for key in ("packing", "masking", "copies"):
            if state.get(key) != getattr(self, key):
                raise SlmError(f"cannot resume the data loader: the checkpoint has {key}={state.get(key)!r}, this "
                               f"run {key}={getattr(self, key)!r}")
        super().load_state_dict(state)
