"""One setting of the PET recipe (one seed, one labelled-set size): every row of the table for it."""
from __future__ import annotations

import statistics
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from slm.finetune.pet.ensemble import accuracy, merge_logits
from slm.finetune.pet.pvp import Encoded, encode_pvp, label_scores, pvp_tokens


@dataclass
class Scored:
    """One pattern model's raw label scores on the unlabelled and test sets, and its ensemble weight."""
    pattern: str
    unlabeled: np.ndarray
    test: np.ndarray
    weight: float


@dataclass
class PatternData:
    tokens: object
    train: Encoded
    unlabeled: Encoded
    test: Encoded
    weight: float  # the pattern's accuracy on the labelled set before training (wmean's weight)
    zero_shot_unlabeled: np.ndarray
    zero_shot_test: np.ndarray


def _hide_labels(examples):
    return [replace(e, label=None) for e in examples]


def _plain_rows(tokenizer, examples, max_len: int) -> list[list[int]]:
    """`<s> text </s>` (pairs: the tokenizer's pair template) cut to max_len, keeping </s>: the classifier's input."""
    rows = []
    for e in examples:
        ids = tokenizer(e.text, e.text_pair)["input_ids"] if e.text_pair else tokenizer(e.text)["input_ids"]
        rows.append(ids if len(ids) <= max_len else ids[:max_len - 1] + ids[-1:])
    return rows


def _classifier_accuracy(model, tokenizer, examples, label_names, max_len: int) -> float:
    from slm.finetune.classify import collate

    rows = _plain_rows(tokenizer, examples, max_len)
    gold = np.array([label_names.index(e.label) for e in examples])
    preds = []
    model.eval()
    with torch.no_grad():
        for i in range(0, len(rows), 64):
            b = collate(rows[i:i + 64], tokenizer.pad_token_id)
            preds.append(model(b["input_ids"], attention_mask=b["attention_mask"]).argmax(-1).numpy())
    return float((np.concatenate(preds) == gold).mean())


def cls_head(cfg, mlm, tokenizer, labelled, test, label_names, seed: int, out: Path) -> float:
    """The supervised baseline: a CLS-head classifier on the same labelled examples (slm.finetune.classify's
    batches and loss through the Trainer), its test accuracy."""
    from slm.finetune.classify import ClassificationBatches, classification_loss
    from slm.finetune.pet.train import train_config
    from slm.models.encoder import with_head
    from slm.train import Trainer

    model = with_head(mlm, "sequence", labels=label_names, seed=seed)
    rows = _plain_rows(tokenizer, labelled, cfg.max_len)
    ys = np.array([label_names.index(e.label) for e in labelled], dtype=np.int64)
    data = ClassificationBatches(rows, ys, cfg.cls.batch_size, tokenizer.pad_token_id, seed)
    stage = replace(cfg.pet, steps=cfg.cls.steps, batch_size=cfg.cls.batch_size, lr=cfg.cls.lr)
    Trainer(model, train_config(stage, seed), data, out_dir=out, tokenizer=tokenizer,
            loss_fn=classification_loss).fit()
    return _classifier_accuracy(model, tokenizer, test, label_names, cfg.max_len)


def prepare_patterns(cfg, mlm, tokenizer, pvps, label_names, labelled, unlabelled, test) -> dict[str, PatternData]:
    pad = tokenizer.pad_token_id
    out = {}
    for pvp in pvps:
        tokens = pvp_tokens(pvp, tokenizer, label_names)
        enc = [encode_pvp(pvp, tokenizer, xs, cfg.max_len, label_names) for xs in (labelled, unlabelled, test)]
        zero = [label_scores(mlm, e, tokens, pad).numpy() for e in enc]
        out[pvp.name] = PatternData(tokens, enc[0], enc[1], enc[2], accuracy(zero[0], enc[0].labels.numpy()),
                                    zero[1], zero[2])
    return out


def _extend(train: Encoded, unlabeled: Encoded, index: list[int], labels: list[int]) -> Encoded:
    """T plus the drawn unlabelled examples, labelled as the other models said."""
    return Encoded(train.rows + [unlabeled.rows[i] for i in index], train.mask_pos + [unlabeled.mask_pos[i] for i in index],
                   torch.cat([train.labels, torch.tensor(labels, dtype=torch.long)]), train.num_masks)


def train_generation(cfg, mlm, tokenizer, patterns: dict[str, PatternData], seed: int, out: Path,
                     drawn=None, base_train: dict[str, Encoded] | None = None) -> list[Scored]:
    """patterns x repetitions models, each trained on its pattern's T (plus its own drawn examples in iPET's later
    generations, drawn[i] for model i in this order), scored on the unlabelled and test sets."""
    from slm.finetune.pet.train import train_pattern_model

    pad = tokenizer.pad_token_id
    scored = []
    i = 0
    for name, p in patterns.items():
        for r in range(cfg.repetitions):
            train = base_train[name] if base_train else p.train
            if drawn is not None:
                train = _extend(train, p.unlabeled, drawn[i].index, drawn[i].labels)
            i += 1
            model, _ = train_pattern_model(mlm, tokenizer, p.tokens, train, cfg.pet, seed * 100 + r, out / f"{name}-r{r}",
                                           unlabeled=p.unlabeled)
            scored.append(Scored(name, label_scores(model, p.unlabeled, p.tokens, pad).numpy(),
                                 label_scores(model, p.test, p.tokens, pad).numpy(), p.weight))
    return scored


def distill(cfg, mlm, tokenizer, unlabelled, test, label_names, models: list[Scored], seed: int, out: Path,
            reduction: str | None = None) -> float:
    from slm.finetune.pet.train import train_distilled_classifier

    teacher = merge_logits([m.unlabeled for m in models], [m.weight for m in models], reduction or cfg.reduction)
    stage = replace(cfg.pet, batch_size=cfg.distill.batch_size, lr=cfg.distill.lr)
    model, _ = train_distilled_classifier(mlm, tokenizer, _plain_rows(tokenizer, unlabelled, cfg.max_len), teacher,
                                          label_names, stage, seed, out, cfg.temperature, cfg.distill.steps)
    return _classifier_accuracy(model, tokenizer, test, label_names, cfg.max_len)


def ipet(cfg, mlm, tokenizer, patterns, gen0: list[Scored], train_labels: list[int], num_labels: int, seed: int,
         out: Path, prefix: str, scores: dict) -> list[Scored]:
    """Generations 1..k-1 from gen0; each generation's mean single-model test accuracy goes to scores. Zero-shot
    (no train_labels): the models train on drawn examples only and merge with `mean` (no labelled accuracy exists
    to weight them by, PET's --reduction mean)."""
    from slm.finetune.pet.ipet import next_generation_sets

    reduction = cfg.reduction if train_labels else "mean"
    prev = gen0
    empty = {name: replace(p.train, rows=[], mask_pos=[], labels=p.train.labels[:0]) for name, p in patterns.items()} \
        if not train_labels else None
    for j in range(1, cfg.ipet.generations):
        drawn = next_generation_sets([m.unlabeled for m in prev], [m.weight for m in prev], train_labels, num_labels,
                                     j, cfg.ipet.scale, cfg.ipet.fraction, reduction,
                                     cfg.ipet.n_most_likely if (not train_labels and j == 1) else -1, seed)
        prev = train_generation(cfg, mlm, tokenizer, patterns, seed, out / f"g{j}", drawn, empty)
        scores[f"{prefix} gen {j}"] = statistics.fmean(accuracy(m.test, _gold(patterns)) for m in prev)
    return prev


def _gold(patterns) -> np.ndarray:
    return next(iter(patterns.values())).test.labels.numpy()


def run_setting(cfg, mlm, mlm_dir, tokenizer, pvps, label_names, labelled, unlabelled, test, seed: int,
                out: Path) -> dict[str, float]:
    unlabelled = _hide_labels(unlabelled)
    models = out / "models"
    scores = {"CLS head": cls_head(cfg, mlm, tokenizer, labelled, test, label_names, seed, models / "cls")}
    patterns = prepare_patterns(cfg, mlm, tokenizer, pvps, label_names, labelled, unlabelled, test)
    gold = _gold(patterns)
    scores["zero-shot pattern"] = statistics.fmean(accuracy(p.zero_shot_test, gold) for p in patterns.values())
    gen0 = train_generation(cfg, mlm, tokenizer, patterns, seed, models / "g0")
    scores["PET single pattern"] = statistics.fmean(accuracy(m.test, gold) for m in gen0)
    scores["PET ensemble"] = accuracy(merge_logits([m.test for m in gen0], [m.weight for m in gen0], cfg.reduction),
                                      gold)
    scores["PET distilled"] = distill(cfg, mlm, tokenizer, unlabelled, test, label_names, gen0, seed,
                                      models / "distilled")
    train_labels = next(iter(patterns.values())).train.labels.tolist()
    if cfg.ipet.generations > 1:
        scores["iPET gen 0"] = scores["PET single pattern"]
        last = ipet(cfg, mlm, tokenizer, patterns, gen0, train_labels, len(label_names), seed, models, "iPET", scores)
        scores["iPET distilled"] = distill(cfg, mlm, tokenizer, unlabelled, test, label_names, last, seed,
                                           models / "ipet-distilled")
        if cfg.ipet.zero_shot:
            zero = [Scored(name, p.zero_shot_unlabeled, p.zero_shot_test, 1.0) for name, p in patterns.items()
                    for _ in range(cfg.repetitions)]
            last = ipet(cfg, mlm, tokenizer, patterns, zero, [], len(label_names), seed, models / "zero-shot",
                        "zero-shot iPET", scores)
            scores["zero-shot iPET distilled"] = distill(cfg, mlm, tokenizer, unlabelled, test, label_names, last,
                                                         seed, models / "zero-shot-distilled", "mean")
    return scores
