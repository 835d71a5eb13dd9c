"""Seq2seq SFT data: JSONL pairs for encoder-decoders, `{"input": ..., "target": ...}` per line (also
`prompt`/`completion`), tokenized with the model's tokenizer (T5's appends </s> to both) and batched padded.

No packing: T5-style example packing needs segment ids through both stacks and the cross-attention; at the
lengths the recipes use the padded batches are already mostly full (`Seq2SeqBatches.fill` reports it).
Batches: input_ids + attention_mask [B, S] (right-padded), labels [B, T] (-100 past each target's end); the loss
is slm.models.seq2seq.seq2seq_loss. Order is a seeded permutation per epoch; state_dict resumes exactly.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch

from slm.errors import SlmError
from slm.finetune.data import IGNORE
from slm.io import iter_jsonl


@dataclass
class Pair:
    input_ids: list[int]
    labels: list[int]
    source: str = ""


def record_to_pair(record) -> tuple[str, str]:
    if not isinstance(record, dict):
        raise ValueError("expected a JSON object with 'input' and 'target'")
    for a, b in (("input", "target"), ("prompt", "completion")):
        if a in record and b in record:
            if not isinstance(record[a], str) or not isinstance(record[b], str):
                raise ValueError(f"'{a}' and '{b}' must be strings")
            return record[a], record[b]
    raise ValueError(f"expected 'input' and 'target' (or 'prompt' and 'completion'), got keys {sorted(record)}")


def _encode(tokenizer, text: str) -> list[int]:
    ids = tokenizer.encode(text)
    if tokenizer.eos_token_id is not None and (not ids or ids[-1] != tokenizer.eos_token_id):
        ids = ids + [tokenizer.eos_token_id]  # the encoder and the decoder both see where a text ends
    return ids


def load_pairs(path: str | Path, tokenizer, max_input: int, max_target: int, overlong: str = "error",
               on_bad_line: str = "error") -> list[Pair]:
    """Tokenized pairs; an input or target past the model's limit is an error naming its line (or, with
    overlong="truncate", cut to fit with its </s> kept)."""
    if overlong not in ("error", "truncate", "drop"):
        raise SlmError(f"overlong must be error, truncate or drop, got {overlong!r}")
    if on_bad_line not in ("error", "skip"):
        raise SlmError(f"on_bad_line must be 'error' or 'skip', got {on_bad_line!r}")
    skip = (lambda where, why: None) if on_bad_line == "skip" else None
    pairs = []
    for where, record in iter_jsonl(path, skip):
        try:
            text, target = record_to_pair(record)
        except ValueError as e:
            if on_bad_line == "skip":
                continue
            raise SlmError(f"{where}: {e}") from None
        src, tgt = _encode(tokenizer, text), _encode(tokenizer, target)
        for name, ids, limit in (("input", src, max_input), ("target", tgt, max_target)):
            if len(ids) > limit and overlong == "error":
                side = "encoder" if name == "input" else "decoder"
                raise SlmError(f"{where}: the {name} has {len(ids)} tokens, more than the {side}'s limit of {limit} "
                               f"(max_seq_len); shorten it, or pass overlong=truncate or drop")
        if overlong == "drop" and (len(src) > max_input or len(tgt) > max_target):
            continue
        pairs.append(Pair(src[:max_input - 1] + src[-1:] if len(src) > max_input else src,
                          tgt[:max_target - 1] + tgt[-1:] if len(tgt) > max_target else tgt, where))
    if not pairs:
        raise SlmError(f"{path}: no usable input/target pairs")
    return pairs


def collate_pairs(pairs: list[Pair], pad_id: int) -> dict[str, torch.Tensor]:
    S, T = max(len(p.input_ids) for p in pairs), max(len(p.labels) for p in pairs)
    ids = torch.full((len(pairs), S), pad_id, dtype=torch.long)
    mask = torch.zeros((len(pairs), S), dtype=torch.long)
    labels = torch.full((len(pairs), T), IGNORE, dtype=torch.long)
    for r, p in enumerate(pairs):
        ids[r, :len(p.input_ids)] = torch.tensor(p.input_ids)
        mask[r, :len(p.input_ids)] = 1
        labels[r, :len(p.labels)] = torch.tensor(p.labels)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


class Seq2SeqBatches:
    """Endless padded batches over the pairs, a new seeded order each epoch; resumable."""

    def __init__(self, pairs: list[Pair], batch_size: int, pad_id: int, seed: int = 0, shuffle: bool = True,
                 epochs: int | None = None):
        self.pairs, self.batch_size, self.pad_id, self.seed = pairs, batch_size, pad_id, seed
        self.shuffle, self.epochs = shuffle, epochs
        self.position = 0  # batches handed out

    def __len__(self) -> int:
        return -(-len(self.pairs) // self.batch_size)

    def _order(self, epoch: int) -> list[int]:
        order = list(range(len(self.pairs)))
        if self.shuffle:
            random.Random(f"slm-seq2seq:{self.seed}:{epoch}").shuffle(order)
        return order

    def __iter__(self):
        while self.epochs is None or self.position < self.epochs * len(self):
            epoch, index = divmod(self.position, len(self))
            rows = self._order(epoch)[index * self.batch_size:(index + 1) * self.batch_size]
            self.position += 1
            yield collate_pairs([self.pairs[i] for i in rows], self.pad_id)

    def state_dict(self) -> dict:
        return {"position": self.position, "pairs": len(self.pairs), "batch_size": self.batch_size}

    def load_state_dict(self, state: dict) -> None:
        if (state.get("pairs"), state.get("batch_size")) != (len(self.pairs), self.batch_size):
            raise SlmError("cannot resume: the data or batch size changed since the checkpoint")
        self.position = int(state["position"])

    def fill(self) -> float:
        """The fraction of padded batch slots (inputs and targets) that hold tokens."""
        used = slots = 0
        order = self._order(0)
        for i in range(len(self)):
            rows = [self.pairs[j] for j in order[i * self.batch_size:(i + 1) * self.batch_size]]
            used += sum(len(p.input_ids) + len(p.labels) for p in rows)
            slots += len(rows) * (max(len(p.input_ids) for p in rows) + max(len(p.labels) for p in rows))
        return used / max(slots, 1)
