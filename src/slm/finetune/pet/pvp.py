"""Pattern-verbalizer pairs: an input as a cloze question, labels as the words that may fill its mask.

    pvp = PVP("{text} It was {mask} .", {"positive": ["good", "great"], "negative": ["bad"]})
    enc = encode_pvp(pvp, tokenizer, examples, max_len=64)     # ids with the mask slots, label ids
    scores = label_scores(model, enc, pvp_tokens(pvp, tokenizer))  # [N, labels]: the MLM logits at the mask

A template holds literal text, the fields {text} and {text_pair}, and one {mask} slot. As in the PET code
(pvp.py, `encode`), every part is tokenized on its own with a leading space, so a verbalizer word (" good")
is the token the MLM predicts after " was"; the <mask> slot becomes max_y |v(y)| mask tokens, and the fields
are the parts that are cut (the longest first) when the sequence would exceed max_len. The sequence is RoBERTa's
`<s> parts </s>`; a pair's fields sit in the one sequence, where the template puts them.

Label scores (single-token verbalizers): the raw MLM logit of each label's word at the mask; several words for
one label are averaged (PET's `_convert_single_mlm_logits_to_cls_logits`: the filler words' logits summed and
divided by their count). Multi-token verbalizers (one word per label, split by the tokenizer into k tokens) are
scored by `slm.finetune.pet.multitoken`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

from slm.errors import ConfigError, SlmError

FIELDS = ("text", "text_pair")
_SLOT = re.compile(r"\{(text|text_pair|mask)\}")


@dataclass
class PVP:
    pattern: str
    verbalizer: dict[str, list[str]]  # label -> words (the label's score averages their logits)
    name: str = ""

    def __post_init__(self):
        slots = _SLOT.findall(self.pattern)
        if slots.count("mask") != 1:
            raise ConfigError(f"pattern {self.pattern!r} must have exactly one {{mask}} slot")
        if "text" not in slots:
            raise ConfigError(f"pattern {self.pattern!r} must use the {{text}} field")
        stray = re.findall(r"\{[^}]*\}", _SLOT.sub("", self.pattern))
        if stray:
            raise ConfigError(f"pattern {self.pattern!r}: unknown slot(s) {stray}; use {{text}}, {{text_pair}}, {{mask}}")
        if not self.verbalizer:
            raise ConfigError(f"pattern {self.pattern!r} has an empty verbalizer")
        self.verbalizer = {str(k): [str(w) for w in (v if isinstance(v, list) else [v])]
                           for k, v in self.verbalizer.items()}
        for label, words in self.verbalizer.items():
            if not words or any(not w.strip() for w in words):
                raise ConfigError(f"verbalizer of label {label!r} needs at least one non-empty word")
        self.name = self.name or self.pattern

    @property
    def labels(self) -> list[str]:
        return list(self.verbalizer)

    def parts(self) -> list[tuple[str, str]]:
        """(kind, value): kind 'literal' (value = its text), 'field' (value = text or text_pair) or 'mask'."""
        out, pos = [], 0
        for m in _SLOT.finditer(self.pattern):
            literal = self.pattern[pos:m.start()].strip()
            if literal:
                out.append(("literal", literal))
            out.append(("mask", "") if m.group(1) == "mask" else ("field", m.group(1)))
            pos = m.end()
        if self.pattern[pos:].strip():
            out.append(("literal", self.pattern[pos:].strip()))
        return out


@dataclass
class VerbalizerTokens:
    """A PVP's verbalizer as token ids: per label, per word, the word's tokens (with a leading space)."""
    labels: list[str]
    words: list[list[list[int]]]  # [label][word] -> token ids
    num_masks: int = field(init=False)

    def __post_init__(self):
        self.num_masks = max(len(t) for label_words in self.words for t in label_words)

    @property
    def single_token(self) -> bool:
        return self.num_masks == 1

    def word_matrix(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids [labels, max words], weights [labels, max words]): single-token words padded with weight 0."""
        width = max(len(w) for w in self.words)
        ids = torch.zeros(len(self.labels), width, dtype=torch.long)
        weights = torch.zeros(len(self.labels), width)
        for i, label_words in enumerate(self.words):
            for j, tokens in enumerate(label_words):
                ids[i, j], weights[i, j] = tokens[0], 1.0 / len(label_words)
        return ids, weights

    def label_token_ids(self) -> torch.Tensor:
        """[labels, num_masks] the one word of each label, its tokens, padded with -100 (multi-token PVPs)."""
        out = torch.full((len(self.labels), self.num_masks), -100, dtype=torch.long)
        for i, label_words in enumerate(self.words):
            out[i, :len(label_words[0])] = torch.tensor(label_words[0])
        return out


def word_ids(tokenizer, word: str) -> list[int]:
    """A word's tokens as it follows another word: tokenized with a leading space (PET's add_prefix_space)."""
    return tokenizer(" " + word.strip(), add_special_tokens=False)["input_ids"]


def pvp_tokens(pvp: PVP, tokenizer, labels: list[str] | None = None) -> VerbalizerTokens:
    """The verbalizer's token ids, labels in `labels` order (default: the verbalizer's own)."""
    labels = labels or pvp.labels
    missing = [lab for lab in labels if lab not in pvp.verbalizer]
    if missing:
        raise ConfigError(f"pattern {pvp.name!r}: no verbalizer word for label(s) {missing}")
    words = [[word_ids(tokenizer, w) for w in pvp.verbalizer[lab]] for lab in labels]
    tokens = VerbalizerTokens(labels, words)
    if not tokens.single_token:
        many = [lab for lab, ws in zip(labels, words) if len(ws) > 1]
        if many:
            raise ConfigError(f"pattern {pvp.name!r}: a multi-token verbalizer takes one word per label "
                              f"({many} have several)")
    return tokens


@dataclass
class Encoded:
    """Examples under one pattern: token rows, the first mask position of each row and the gold label ids."""
    rows: list[list[int]]
    mask_pos: list[int]
    labels: torch.Tensor  # [N] label ids (-1: unlabelled)
    num_masks: int


def encode_pvp(pvp: PVP, tokenizer, examples, max_len: int, labels: list[str] | None = None,
               num_masks: int | None = None) -> Encoded:
    """Each example (text, text_pair, label; label None = unlabelled) as `<s> P(x) </s>` with num_masks masks
    (default: the verbalizer's longest word); the fields are cut, longest first, to fit max_len."""
    if tokenizer.mask_token_id is None:
        raise SlmError("PET needs a tokenizer with a mask token (an encoder's: kind='roberta-bpe')")
    labels = labels or pvp.labels
    index = {lab: i for i, lab in enumerate(labels)}
    k = num_masks or pvp_tokens(pvp, tokenizer, labels).num_masks
    parts = pvp.parts()
    literal_ids = {v: tokenizer(" " + v, add_special_tokens=False)["input_ids"] for kind, v in parts if kind == "literal"}
    rows, positions, ys = [], [], []
    for ex in examples:
        values = {"text": ex.text, "text_pair": getattr(ex, "text_pair", None)}
        if any(kind == "field" and values[v] is None for kind, v in parts):
            raise SlmError(f"{getattr(ex, 'where', '') or 'an example'}: pattern {pvp.name!r} needs a text_pair")
        fields = {v: tokenizer(" " + values[v], add_special_tokens=False)["input_ids"]
                  for kind, v in parts if kind == "field"}
        fixed = 2 + k + sum(len(literal_ids[v]) for kind, v in parts if kind == "literal")
        budget = max_len - fixed
        if budget < len(fields):
            raise SlmError(f"pattern {pvp.name!r} leaves no room for the text within {max_len} tokens")
        while sum(len(f) for f in fields.values()) > budget:  # PET's truncate: cut the longest shortenable part
            longest = max(fields, key=lambda name: len(fields[name]))
            fields[longest] = fields[longest][:-1]
        ids = [tokenizer.bos_token_id]
        for kind, v in parts:
            if kind == "mask":
                positions.append(len(ids))
                ids.extend([tokenizer.mask_token_id] * k)
            else:
                ids.extend(literal_ids[v] if kind == "literal" else fields[v])
        ids.append(tokenizer.eos_token_id)
        rows.append(ids)
        label = getattr(ex, "label", None)
        if label is not None and label not in index:
            raise SlmError(f"{getattr(ex, 'where', '') or 'an example'}: label {label!r} is not in the verbalizer "
                           f"({', '.join(labels)})")
        ys.append(-1 if label is None else index[label])
    return Encoded(rows, positions, torch.tensor(ys, dtype=torch.long), k)


def mask_select(input_ids: torch.Tensor, mask_pos: torch.Tensor, num_masks: int) -> torch.Tensor:
    """A boolean [B, T]: the num_masks positions from each row's mask_pos (the encoder's `select`)."""
    columns = torch.arange(input_ids.shape[1], device=input_ids.device)
    start = mask_pos.view(-1, 1)
    return (columns >= start) & (columns < start + num_masks)


def single_token_scores(mask_logits: torch.Tensor, tokens: VerbalizerTokens) -> torch.Tensor:
    """[B, V] logits at the mask -> [B, labels]: each label's words' logits averaged."""
    ids, weights = tokens.word_matrix()
    ids, weights = ids.to(mask_logits.device), weights.to(mask_logits.device, mask_logits.dtype)
    return (mask_logits[:, ids] * weights).sum(-1)


def mask_logits(model, batch: dict, num_masks: int) -> torch.Tensor:
    """The MLM logits at the mask slots: [B, num_masks, V] (the head runs on those positions only)."""
    select = mask_select(batch["input_ids"], batch["mask_pos"], num_masks)
    logits = model(batch["input_ids"], attention_mask=batch["attention_mask"], select=select)
    return logits.view(batch["input_ids"].shape[0], num_masks, -1)


def batch_of(enc: Encoded, index, pad_id: int) -> dict:
    from slm.finetune.classify import collate

    index = list(index)
    batch = collate([enc.rows[i] for i in index], pad_id)
    batch["mask_pos"] = torch.tensor([enc.mask_pos[i] for i in index], dtype=torch.long)
    batch["labels"] = enc.labels[index]
    return batch


@torch.no_grad()
def label_scores(model, enc: Encoded, tokens: VerbalizerTokens, pad_id: int, batch_size: int = 64) -> torch.Tensor:
    """[N, labels] PET's label scores s_p(l|x) for every encoded example (float32, on the CPU)."""
    if not tokens.single_token:
        from slm.finetune.pet.multitoken import max_first_scores

        return max_first_scores(model, enc, tokens, pad_id)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(enc.rows), batch_size):
        batch = {k: v.to(device) for k, v in batch_of(enc, range(i, min(i + batch_size, len(enc.rows))),
                                                      pad_id).items()}
        out.append(single_token_scores(mask_logits(model, batch, 1)[:, 0].float(), tokens).cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, len(tokens.labels))


def load_pvps(data: dict | list, where: str = "patterns") -> list[PVP]:
    """PVPs from YAML data: a list of {pattern, verbalizer[, name]}, or {patterns: [...], verbalizer: {...}}
    where one verbalizer serves every pattern (a pattern entry may still carry its own)."""
    shared = None
    if isinstance(data, dict):
        shared = data.get("verbalizer")
        unknown = set(data) - {"patterns", "verbalizer"}
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; expected patterns and verbalizer")
        data = data.get("patterns")
    if not isinstance(data, list) or not data:
        raise ConfigError(f"{where}: expected a non-empty list of patterns")
    out = []
    for i, entry in enumerate(data):
        if isinstance(entry, str):
            entry = {"pattern": entry}
        if not isinstance(entry, dict) or "pattern" not in entry:
            raise ConfigError(f"{where}[{i}]: expected a pattern string or {{pattern, verbalizer}}")
        verbalizer = entry.get("verbalizer", shared)
        if not isinstance(verbalizer, dict):
            raise ConfigError(f"{where}[{i}]: no verbalizer (a mapping label -> word or list of words)")
        out.append(PVP(str(entry["pattern"]), verbalizer, str(entry.get("name", f"p{i}"))))
    return out


def read_pvps(path) -> list[PVP]:
    from pathlib import Path

    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"patterns file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not YAML ({str(e).splitlines()[0]})") from None
    return load_pvps(data, str(path))
