"""Batches of SFT examples, packed without cross-contamination or padded one example per row.

Packing puts several examples in one row of `seq_len` tokens. Each example attends only to itself:
position ids restart at 0 for every example and the attention mask is block-diagonal causal
(`slm.models.make_attention_mask(..., document_ids=...)`, a boolean SDPA mask). Every example's last
label is -100, so no token is trained to predict the next example. The loss of a packed row is therefore
the sum of the losses of its examples run one by one (tests/finetune/test_packing.py checks it).

`SFTBatches` is the resumable data source the trainer iterates: the plan of each epoch (shuffle, bins,
batch order) is a pure function of (seed, epoch), so `state_dict()` is just {epoch, batch} and a resumed
run sees exactly the batches an uninterrupted one would.
"""
from __future__ import annotations

import bisect
import random
from dataclasses import dataclass
from typing import Iterator, Literal

import torch

from slm.errors import SlmError
from slm.finetune.data import IGNORE, SFTExample

Strategy = Literal["bfd", "greedy"]
Overlong = Literal["truncate", "drop"]


def plan_bins(lengths: list[int], capacity: int, strategy: Strategy = "bfd",
              order: list[int] | None = None) -> list[list[int]]:
    """Group example indices into bins whose lengths sum to at most `capacity`.

    bfd: best-fit decreasing (longest first, each into the fullest bin it still fits): few, full bins.
    greedy: next-fit in `order`: a new bin whenever the next example does not fit the current one.
    `order` (default 0..n-1) breaks ties, so a shuffled order gives a different but seeded plan.
    """
    order = list(range(len(lengths))) if order is None else order
    if any(lengths[i] > capacity or lengths[i] <= 0 for i in order):
        raise ValueError(f"every length must be in 1..{capacity}")
    bins: list[list[int]] = []
    if strategy == "greedy":
        room = 0
        for i in order:
            if not bins or lengths[i] > room:
                bins.append([])
                room = capacity
            bins[-1].append(i)
            room -= lengths[i]
        return bins
    if strategy != "bfd":
        raise SlmError(f"packing strategy must be 'bfd' or 'greedy', got {strategy!r}")
    free: list[tuple[int, int]] = []  # sorted (room left, bin index)
    for i in sorted(order, key=lambda j: -lengths[j]):  # sorted() is stable: ties keep `order`
        k = bisect.bisect_left(free, (lengths[i], -1))
        if k == len(free):
            bins.append([i])
            b, room = len(bins) - 1, capacity
        else:
            room, b = free.pop(k)
            bins[b].append(i)
        if room - lengths[i] > 0:
            bisect.insort(free, (room - lengths[i], b))
    return bins


def collate_packed(rows: list[list[SFTExample]], seq_len: int, pad_id: int,
                   with_mask: bool = True) -> dict[str, torch.Tensor]:
    """Rows of examples -> input_ids, labels, position_ids, document_ids [B, seq_len] and the 4-D mask.

    The padding at the end of a row is its own 'document' (id -1) with no targets.
    """
    B = len(rows)
    input_ids = torch.full((B, seq_len), pad_id, dtype=torch.long)
    labels = torch.full((B, seq_len), IGNORE, dtype=torch.long)
    position_ids = torch.zeros((B, seq_len), dtype=torch.long)
    document_ids = torch.full((B, seq_len), -1, dtype=torch.long)
    for b, row in enumerate(rows):
        t = 0
        for d, ex in enumerate(row):
            n = len(ex)
            input_ids[b, t:t + n] = torch.tensor(ex.input_ids)
            labels[b, t:t + n] = torch.tensor(ex.labels)
            position_ids[b, t:t + n] = torch.arange(n)
            document_ids[b, t:t + n] = d
            t += n
        if t > seq_len:
            raise ValueError(f"row {b} holds {t} tokens, more than seq_len {seq_len}")
        position_ids[b, t:] = torch.arange(seq_len - t)
    batch = {"input_ids": input_ids, "labels": labels, "position_ids": position_ids, "document_ids": document_ids}
    if with_mask:
        from slm.models import make_attention_mask

        batch["attention_mask"] = make_attention_mask(seq_len, 0, document_ids=document_ids)
    return batch


def padded_width(lengths: list[int], multiple: int = 8, max_len: int | None = None) -> int:
    longest = max(lengths)
    width = -(-longest // multiple) * multiple
    return min(width, max(max_len or width, longest))


def collate_padded(examples: list[SFTExample], pad_id: int, pad_to_multiple_of: int = 8,
                   max_len: int | None = None) -> dict[str, torch.Tensor]:
    """One example per row, right-padded to the longest in the batch (rounded up to a multiple of
    `pad_to_multiple_of`, but never past `max_len`), with a 2-D padding mask."""
    T = padded_width([len(ex) for ex in examples], pad_to_multiple_of, max_len)
    input_ids = torch.full((len(examples), T), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), T), IGNORE, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), T), dtype=torch.long)
    for b, ex in enumerate(examples):
        n = len(ex)
        input_ids[b, :n] = torch.tensor(ex.input_ids)
        labels[b, :n] = torch.tensor(ex.labels)
        attention_mask[b, :n] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


@dataclass
class PackingReport:
    examples: int = 0
    truncated: int = 0
    dropped_overlong: int = 0
    dropped_no_targets: int = 0  # truncation cut away every assistant token

    def summary(self) -> str:
        parts = [f"{self.examples} example(s)"]
        if self.truncated:
            parts.append(f"{self.truncated} truncated to seq_len")
        if self.dropped_overlong:
            parts.append(f"{self.dropped_overlong} longer than seq_len dropped")
        if self.dropped_no_targets:
            parts.append(f"{self.dropped_no_targets} dropped (no assistant token within seq_len)")
        return ", ".join(parts)


class SFTBatches:
    """A resumable, seeded iterable of SFT batches, packed (default) or padded, cycling over epochs.

    epochs=None iterates forever (the trainer stops at its step budget); each rank of a distributed run
    takes every world_size-th batch of the same plan.
    """

    def __init__(self, examples: list[SFTExample], seq_len: int, batch_size: int, pad_id: int, pack: bool = True,
                 strategy: Strategy = "bfd", overlong: Overlong = "truncate", seed: int = 0, shuffle: bool = True,
                 epochs: int | None = None, rank: int = 0, world_size: int = 1, attention_mask: bool = True):
        if seq_len <= 1 or batch_size <= 0:
            raise SlmError(f"seq_len must be > 1 and batch_size > 0 (got {seq_len}, {batch_size})")
        if overlong not in ("truncate", "drop"):
            raise SlmError(f"overlong must be 'truncate' or 'drop', got {overlong!r}")
        if pack and strategy not in ("bfd", "greedy"):
            raise SlmError(f"packing strategy must be 'bfd' or 'greedy', got {strategy!r}")
        # Pad positions are masked and carry no target, so any id will do when the tokenizer names none.
        self.seq_len, self.batch_size, self.pad_id = seq_len, batch_size, 0 if pad_id is None else pad_id
        self.pack, self.strategy, self.seed, self.shuffle, self.epochs = pack, strategy, seed, shuffle, epochs
        self.rank, self.world_size, self.with_mask = rank, world_size, attention_mask
        self.report = PackingReport()
        self.examples = self._fit(examples, overlong)
        if not self.examples:
            raise SlmError(f"no SFT example fits in seq_len {seq_len} ({self.report.summary()})")
        self.epoch, self.batch = 0, 0
        self._plan_cache: tuple[int, list[list[int]]] | None = None
        if self.batches_per_epoch == 0:
            raise SlmError(f"{len(self.examples)} examples make fewer batches than the {world_size} ranks")

    def _fit(self, examples: list[SFTExample], overlong: str) -> list[SFTExample]:
        kept = []
        for ex in examples:
            if len(ex) > self.seq_len:
                if overlong == "drop":
                    self.report.dropped_overlong += 1
                    continue
                ex = ex.truncated(self.seq_len)
                if ex.num_targets == 0:
                    self.report.dropped_no_targets += 1
                    continue
                self.report.truncated += 1
            kept.append(ex)
        self.report.examples = len(kept)
        return kept

    # ---- the plan: a pure function of (seed, epoch)

    def _rows(self, epoch: int) -> list[list[int]]:
        order = list(range(len(self.examples)))
        rng = random.Random(f"slm-sft:{self.seed}:{epoch}")
        if self.shuffle:
            rng.shuffle(order)
        if not self.pack:
            return [[i] for i in order]
        rows = plan_bins([len(ex) for ex in self.examples], self.seq_len, self.strategy, order)
        if self.shuffle:
            rng.shuffle(rows)  # bfd emits long-first rows; do not feed the model a length curriculum
        return rows

    def _batches(self, epoch: int) -> list[list[int]]:
        if self._plan_cache is None or self._plan_cache[0] != epoch:
            rows = self._rows(epoch)
            batches = [sum(rows[i:i + self.batch_size], []) if not self.pack else rows[i:i + self.batch_size]
                       for i in range(0, len(rows), self.batch_size)]
            self._plan_cache = (epoch, batches)
        return self._plan_cache[1]

    @property
    def batches_per_epoch(self) -> int:
        """Batches this rank sees per epoch (equal on every rank: the remainder is left out)."""
        return len(self._batches(0)) // self.world_size

    def rows_per_epoch(self) -> int:
        return len(self._rows(0))

    def __len__(self) -> int:
        return self.batches_per_epoch

    def make_batch(self, epoch: int, index: int) -> dict[str, torch.Tensor]:
        """The index-th batch of this rank in `epoch`."""
        plan = self._batches(epoch)[index * self.world_size + self.rank]
        if self.pack:
            return collate_packed([[self.examples[i] for i in row] for row in plan], self.seq_len, self.pad_id,
                                  self.with_mask)
        return collate_padded([self.examples[i] for i in plan], self.pad_id, max_len=self.seq_len)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        while self.epochs is None or self.epoch < self.epochs:
            while self.batch < self.batches_per_epoch:
                batch = self.make_batch(self.epoch, self.batch)
                self.batch += 1  # the state already counts this batch: a checkpoint after it resumes past it
                yield batch
            self.epoch, self.batch = self.epoch + 1, 0

    def _signature(self) -> dict:
        return {"seed": self.seed, "examples": len(self.examples), "pack": self.pack, "seq_len": self.seq_len,
                "batch_size": self.batch_size, "world_size": self.world_size}

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "batch": self.batch, **self._signature()}

    def load_state_dict(self, state: dict) -> None:
        for key, now in self._signature().items():
            if key in state and state[key] != now:
                raise SlmError(f"cannot resume: the data's {key} was {state[key]!r} and is now {now!r}; "
                               "resume with the same data and settings")
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])

    def token_stats(self) -> dict:
        """Real tokens, target tokens and the fraction of row slots that hold real tokens (packing efficiency)."""
        rows = self._rows(0)
        real = sum(len(ex) for ex in self.examples)
        targets = sum(ex.num_targets for ex in self.examples)
        if self.pack:
            slots = len(rows) * self.seq_len
        else:
            slots = sum(len(b) * padded_width([len(self.examples[i]) for i in b], max_len=self.seq_len)
                        for b in self._batches(0))
        return {"tokens": real, "targets": targets, "rows": len(rows), "fill": real / slots}
