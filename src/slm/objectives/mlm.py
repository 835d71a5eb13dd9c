"""Masked-LM: fairseq's MaskTokensDataset masking as a batch transform, and the loss over masked positions.

What is exactly fairseq's (fairseq/data/mask_tokens_dataset.py): the generator, legacy numpy seeded with
`int(hash((seed, epoch, index)) % 1e6)` (fairseq's data_utils.numpy_seed), so one (seed, epoch, index) always
masks the same way and the next epoch another; the draw order (U(0,1) for the rounding, the positions, then per
position U < 0.2 for "random or unchanged", then U < 0.5 for which of the two); `num_mask = int(p * n + U)`
positions without replacement; random tokens drawn with weights that exclude special tokens; the targets are
all the chosen positions (80% <mask>, 10% a random token, 10% unchanged). What differs: n counts only the
row's non-special tokens (fairseq counts <s> and </s> too), so special tokens and padding are never chosen
(as in transformers' DataCollatorForLanguageModeling). Whole-word masking draws words instead of tokens and
masks all of a word's tokens alike.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from slm.errors import SlmError

IGNORE = -100


@dataclass
class MaskingConfig:
    mask_prob: float = 0.15
    random_token_prob: float = 0.1  # of the chosen positions
    leave_unmasked_prob: float = 0.1  # of the chosen positions
    whole_word: bool = False
    seed: int = 0

    def __post_init__(self):
        if not 0 < self.mask_prob < 1:
            raise SlmError(f"mask_prob must be in (0, 1), got {self.mask_prob}")
        if self.random_token_prob < 0 or self.leave_unmasked_prob < 0 or \
                self.random_token_prob + self.leave_unmasked_prob > 1:
            raise SlmError("random_token_prob and leave_unmasked_prob must be >= 0 and sum to at most 1")


def fairseq_seed(seed: int, epoch: int, index: int) -> int:
    """fairseq's numpy_seed(seed, epoch, index): a hash of the tuple (ints hash the same in every process)."""
    return int(hash((int(seed), int(epoch), int(index))) % 1e6)


def word_begin_table(tokenizer) -> np.ndarray:
    """Per token id: does it start a word? Byte-level BPE and SentencePiece mark a leading space ('Ġ', '▁');
    WordPiece marks continuations ('##'). Special tokens always stand alone."""
    vocab = tokenizer.get_vocab()
    table = np.zeros(max(vocab.values()) + 1, dtype=bool)
    wordpiece = any(t.startswith("##") for t in vocab)
    for token, i in vocab.items():
        table[i] = not token.startswith("##") if wordpiece else token.startswith(("Ġ", "▁"))
    table[list(tokenizer.all_special_ids)] = True
    return table


class MaskTokens:
    """The batch transform: input_ids [B, T] plus per-row `sample_index` and `mask_epoch` -> masked input_ids and
    labels (the original token at chosen positions, -100 elsewhere). Rows are masked independently of the batch
    they came in, so the masks do not depend on batch size, world size or resumption."""

    def __init__(self, tokenizer, config: MaskingConfig | None = None, vocab_size: int | None = None):
        self.config = config or MaskingConfig()
        if tokenizer.mask_token_id is None:
            raise SlmError("masked-LM needs a tokenizer with a mask token (train one with kind='roberta-bpe')")
        self.mask_id = tokenizer.mask_token_id
        n = vocab_size or len(tokenizer)
        self.special = np.zeros(n, dtype=bool)
        self.special[[i for i in tokenizer.all_special_ids if i < n]] = True
        weights = (~self.special).astype(np.float64)
        self.weights = weights / weights.sum()  # fairseq: random replacements never draw a special token
        self.word_begins = word_begin_table(tokenizer) if self.config.whole_word else None
        self.vocab_size = n

    def mask_row(self, tokens: np.ndarray, epoch: int, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(masked tokens, labels) for one sequence; a pure function of (seed, epoch, index) and the tokens."""
        c = self.config
        rs = np.random.RandomState(fairseq_seed(c.seed, epoch, index))
        maskable = np.flatnonzero(~self.special[tokens])  # positions that may be chosen
        n = len(maskable)
        if self.word_begins is not None:
            # A word starts at a word-begin token or right after a position that cannot be chosen.
            begins = self.word_begins[tokens[maskable]]
            if n:
                begins[0] = True
                begins[1:] |= np.diff(maskable) > 1
            starts = np.flatnonzero(begins)
            word_lens = np.diff(np.append(starts, n))
            sz = len(starts)
        else:
            sz = n
        num_mask = int(c.mask_prob * sz + rs.rand())  # probabilistic rounding, as fairseq
        chosen = np.zeros(sz, dtype=bool)
        chosen[rs.choice(sz, num_mask, replace=False)] = True
        rand_or_unmask_prob = c.random_token_prob + c.leave_unmasked_prob
        unmask = rand = np.zeros(sz, dtype=bool)
        if rand_or_unmask_prob > 0:
            rand_or_unmask = chosen & (rs.rand(sz) < rand_or_unmask_prob)
            if c.random_token_prob == 0:
                unmask = rand_or_unmask
            elif c.leave_unmasked_prob == 0:
                rand = rand_or_unmask
            else:
                decision = rs.rand(sz) < c.leave_unmasked_prob / rand_or_unmask_prob
                unmask, rand = rand_or_unmask & decision, rand_or_unmask & ~decision
        to_mask = chosen & ~unmask & ~rand
        if self.word_begins is not None:
            chosen, to_mask, rand = (np.repeat(a, word_lens) for a in (chosen, to_mask, rand))
        out = tokens.copy()
        labels = np.full(len(tokens), IGNORE, dtype=np.int64)
        labels[maskable[chosen]] = tokens[maskable[chosen]]
        out[maskable[to_mask]] = self.mask_id
        num_rand = int(rand.sum())
        if num_rand:
            out[maskable[rand]] = rs.choice(self.vocab_size, num_rand, p=self.weights)
        return out, labels

    def __call__(self, batch: dict) -> dict:
        ids = batch["input_ids"].numpy()
        if "sample_index" not in batch or "mask_epoch" not in batch:
            raise SlmError("masked-LM batches need sample_index and mask_epoch (slm.objectives.MLMBlockLoader)")
        out, labels = np.empty_like(ids), np.empty(ids.shape, dtype=np.int64)
        for r, (index, epoch) in enumerate(zip(batch["sample_index"].tolist(), batch["mask_epoch"].tolist())):
            out[r], labels[r] = self.mask_row(ids[r], epoch, index)
        return {**batch, "input_ids": torch.from_numpy(out), "labels": torch.from_numpy(labels)}


def mlm_loss(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross entropy over the masked positions and their count (the Trainer's loss_fn contract).
    The MLM head runs only on the chosen positions (about 15% of them), not on every token."""
    labels = batch["labels"]
    chosen = labels != IGNORE
    logits = model(batch["input_ids"], attention_mask=batch.get("attention_mask"), select=chosen)
    loss = F.cross_entropy(logits.float(), labels[chosen], reduction="sum")
    return loss, chosen.sum()
