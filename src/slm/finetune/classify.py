"""Sequence classification fine-tuning of an encoder checkpoint, through the one Trainer (`slm finetune --task classify`).

    examples = read_examples("train.jsonl")                       # JSONL or CSV: text, optional text_pair, label
    result = finetune_classifier(ClassifyConfig(model="runs/mlm/checkpoints/step-000400", data="train.jsonl"))
    scores = evaluate_classifier(model, tokenizer, read_examples("test.jsonl"))   # acc, macro_f1, mcc

An MLM checkpoint gets a fresh classification head (RoBERTa's or BERT's shape) over the label set of the training
data, sorted; a classifier checkpoint keeps its head when its labels cover the data. Bad input is one SlmError
line: a missing text/label column, a label the model was not trained on, a text longer than the model (unless
overlong=truncate), a checkpoint whose family has no classification head.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from slm.errors import SlmError

CLASSIFY_TRAIN_DEFAULTS = dict(max_steps=200, lr=5e-4, min_lr=5e-5, warmup_steps=20, weight_decay=0.01,
                               betas=(0.9, 0.98), eps=1e-6, log_every=10)


@dataclass
class Example:
    text: str
    label: str
    text_pair: str | None = None
    where: str = ""


@dataclass
class ClassifyConfig:
    model: str = ""  # an encoder HF directory with its tokenizer
    data: str = ""  # JSONL or CSV with text, optional text_pair, label
    val_data: str | None = None
    out: str = "runs/classify"
    batch_size: int = 16
    seq_len: int | None = None  # None: the model's longest input
    overlong: str = "error"  # error | truncate
    seed: int = 0
    train: dict = field(default_factory=dict)  # TrainConfig fields over CLASSIFY_TRAIN_DEFAULTS


def read_examples(path: str | Path) -> list[Example]:
    """Examples from JSONL (one object a line) or CSV (a header row); `text` and `label` are required."""
    path = Path(path)
    if not path.is_file():
        raise SlmError(f"classification data not found: {path}")
    records = []
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            for column in ("text", "label"):
                if column not in (reader.fieldnames or []):
                    raise SlmError(f"{path}: no {column!r} column (columns: {reader.fieldnames})")
            records = [(f"{path}:{i}", row) for i, row in enumerate(reader, 2)]
    else:
        from slm.io import iter_jsonl

        records = list(iter_jsonl(path))
    out = []
    for where, row in records:
        for column in ("text", "label"):
            if row.get(column) in (None, ""):
                raise SlmError(f"{where}: no {column!r} field")
        pair = row.get("text_pair")
        out.append(Example(str(row["text"]), str(row["label"]), str(pair) if pair not in (None, "") else None, where))
    if not out:
        raise SlmError(f"{path}: no examples")
    return out


def encode(examples: list[Example], tokenizer, labels: list[str], max_len: int, overlong: str = "error"):
    """(input_ids rows, label ids): the tokenizer's own template (<s> A </s></s> B </s> for RoBERTa)."""
    index = {name: i for i, name in enumerate(labels)}
    rows, ys = [], []
    for ex in examples:
        if ex.label not in index:
            raise SlmError(f"{ex.where}: label {ex.label!r} is not one the model knows ({', '.join(labels)})")
        ids = tokenizer(ex.text, ex.text_pair)["input_ids"] if ex.text_pair is not None else \
            tokenizer(ex.text)["input_ids"]
        if len(ids) > max_len:
            if overlong != "truncate":
                raise SlmError(f"{ex.where}: the text is {len(ids)} tokens, longer than the model's {max_len} "
                               "(pass overlong=truncate to cut it)")
            ids = ids[:max_len - 1] + ids[-1:]  # keep the closing </s>
        rows.append(ids)
        ys.append(index[ex.label])
    return rows, np.array(ys, dtype=np.int64)


def collate(rows: list[list[int]], pad_id: int) -> dict:
    T = max(len(r) for r in rows)
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
        mask[i, :len(r)] = 1
    return {"input_ids": ids, "attention_mask": mask}


class ClassificationBatches:
    """Shuffled padded batches, endless epochs, resumable: the position is the count of examples consumed and the
    order of epoch e is default_rng([seed, e]).permutation(n)."""

    def __init__(self, rows, labels, batch_size: int, pad_id: int, seed: int = 0):
        self.rows, self.labels, self.batch_size, self.pad_id, self.seed = rows, labels, batch_size, pad_id, seed
        self.consumed = 0

    def __iter__(self):
        n = len(self.rows)
        while True:
            epoch, offset = divmod(self.consumed, n)
            order = np.random.default_rng([self.seed, epoch]).permutation(n)[offset:offset + self.batch_size]
            self.consumed += len(order)
            batch = collate([self.rows[i] for i in order], self.pad_id)
            batch["labels"] = torch.from_numpy(self.labels[order])
            yield batch

    def state_dict(self) -> dict:
        return {"consumed": self.consumed, "n": len(self.rows), "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        if state.get("n") != len(self.rows) or state.get("seed") != self.seed:
            raise SlmError("cannot resume: the checkpoint was trained on other classification data or another seed")
        self.consumed = int(state["consumed"])


def classification_loss(model, batch: dict):
    logits = model(batch["input_ids"], attention_mask=batch["attention_mask"])
    return F.cross_entropy(logits.float(), batch["labels"], reduction="sum"), batch["labels"].numel()


def metrics(gold: np.ndarray, pred: np.ndarray) -> dict:
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    return {"acc": float(accuracy_score(gold, pred)), "macro_f1": float(f1_score(gold, pred, average="macro")),
            "mcc": float(matthews_corrcoef(gold, pred))}


def require_classifier(model, where: str = "model") -> list[str]:
    """The label names of a sequence classifier; a model without such a head is one clear error."""
    cfg = getattr(model, "config", None)
    if getattr(cfg, "head", None) != "sequence":
        kind = getattr(cfg, "head", None) or type(model).__name__
        raise SlmError(f"{where} has no sequence classification head ({kind}); fine-tune one with "
                       "`slm finetune --task classify`")
    return cfg.labels or [f"LABEL_{i}" for i in range(cfg.num_labels)]


@torch.no_grad()
def predict(model, tokenizer, examples: list[Example], batch_size: int = 32, overlong: str = "error") -> dict:
    labels = require_classifier(model)
    rows, gold = encode(examples, tokenizer, labels, model.config.max_seq_len, overlong)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    preds = []
    for i in range(0, len(rows), batch_size):
        batch = collate(rows[i:i + batch_size], tokenizer.pad_token_id or 0)
        logits = model(batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device))
        preds.append(logits.argmax(-1).cpu().numpy())
    model.train(was_training)
    return {"gold": gold, "pred": np.concatenate(preds), "labels": labels}


def evaluate_classifier(model, tokenizer, examples: list[Example], batch_size: int = 32) -> dict:
    out = predict(model, tokenizer, examples, batch_size)
    return {"n": len(examples), **metrics(out["gold"], out["pred"])}


def classifier_from(model, labels: list[str], seed: int = 0):
    """The model as a sequence classifier over `labels`: kept when its head already covers them, else a new head."""
    from slm.models.encoder import with_head

    head = getattr(model.config, "head", None)
    if head is None or not hasattr(model, "hidden_states"):
        raise SlmError(f"a {type(model).__name__} has no classification head to fine-tune (its family has none); "
                       "use an encoder checkpoint (RoBERTa, BERT)")
    if head == "sequence" and set(labels) <= set(model.config.labels or []):
        return model
    return with_head(model, "sequence", labels=labels, seed=seed)


def finetune_classifier(cfg: ClassifyConfig, resume: str | None = None, say=print) -> dict:
    import slm
    from slm.config import build
    from slm.train import TrainConfig, Trainer

    if not cfg.model or not cfg.data:
        raise SlmError("classification fine-tuning needs --model DIR and --data FILE (JSONL or CSV)")
    if cfg.overlong not in ("error", "truncate"):
        raise SlmError(f"overlong must be error or truncate, got {cfg.overlong!r}")
    model, tokenizer = slm.load(cfg.model)
    if tokenizer is None:
        raise SlmError(f"{cfg.model} has no tokenizer")
    train_examples = read_examples(cfg.data)
    labels = sorted({ex.label for ex in train_examples})
    model = classifier_from(model, labels, cfg.seed)
    labels = model.config.labels
    max_len = min(cfg.seq_len or model.config.max_seq_len, model.config.max_seq_len)
    rows, ys = encode(train_examples, tokenizer, labels, max_len, cfg.overlong)
    pad = tokenizer.pad_token_id or 0
    train = ClassificationBatches(rows, ys, cfg.batch_size, pad, cfg.seed)
    evaluators = []
    if cfg.val_data:
        val_examples = read_examples(cfg.val_data)
        encode(val_examples, tokenizer, labels, max_len, cfg.overlong)  # unseen labels fail now, not at the end

        def evaluator(m):
            return {f"val_{k}": v for k, v in evaluate_classifier(m, tokenizer, val_examples).items() if k != "n"}

        evaluators.append(evaluator)
    train_cfg = build(TrainConfig, {**CLASSIFY_TRAIN_DEFAULTS, "seed": cfg.seed, **cfg.train}, "train")
    say(f"{cfg.data}: {len(train_examples)} examples, {len(labels)} labels ({', '.join(labels)})")
    trainer = Trainer(model, train_cfg, train, None, out_dir=cfg.out, tokenizer=tokenizer,
                      loss_fn=classification_loss, evaluators=evaluators)
    result = trainer.fit(resume=resume)
    result["model"], result["tokenizer"] = model, tokenizer
    say(f"classifier: {result['checkpoint']}" + "".join(f"; {k} {result[k]:.4f}" for k in
                                                         ("val_acc", "val_macro_f1", "val_mcc") if k in result))
    return result
