"""Training one PET model (one pattern, one seed) and the final distilled classifier, through the one Trainer.

The pattern model's loss (PET code, wrapper.py `mlm_train_step` with `--lm_training`):
    loss = alpha * L_task + (1 - alpha) * L_MLM           alpha = 0.9999 by default (the code's convention;
                                                         the EACL paper writes (1 - a) L_CE + a L_MLM, a = 1e-4)
L_task is the cross entropy over the label scores (single-token verbalizers) or the hinge loss of the parallel
multi-token scores; L_MLM is the masked-LM loss (15%, 80/10/10: slm.objectives.mlm's masking) on
pattern-formatted unlabelled text. Without lm_training the loss is L_task alone.

The final classifier (PET's `train_classifier` with use_logits): a sequence classifier over the same MLM body,
trained only on the unlabelled set with the ensemble's merged logits as soft targets, loss
KL(softmax(t/T) || softmax(s/T)) T^2 / batch (slm.finetune.pet.ensemble.distillation_loss).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from slm.errors import ConfigError
from slm.finetune.pet.pvp import Encoded, VerbalizerTokens, batch_of, mask_logits, single_token_scores


@dataclass
class PETTrainConfig:
    steps: int = 250  # PET's SuperGLUE default (with ALBERT); the recipe sets its own
    batch_size: int = 16
    lr: float = 1e-5
    warmup_steps: int = 0
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    lm_training: bool = False  # the auxiliary MLM loss on unlabelled text
    alpha: float = 0.9999  # the code's convention: alpha * task + (1 - alpha) * MLM
    unlabeled_batch_size: int = 16

    def __post_init__(self):
        if not 0 <= self.alpha <= 1:
            raise ConfigError(f"alpha must be in [0, 1], got {self.alpha}")
        for name in ("steps", "batch_size", "unlabeled_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")


class PETBatches:
    """Endless shuffled labelled batches (epoch e's order: default_rng([seed, e])), each with a batch of
    pattern-formatted unlabelled rows masked for the auxiliary MLM loss when `mlm` is given. Resumable."""

    def __init__(self, enc: Encoded, batch_size: int, pad_id: int, seed: int = 0, unlabeled: Encoded | None = None,
                 unlabeled_batch_size: int = 16, masker=None):
        if len(enc.rows) == 0:
            raise ConfigError("PET training needs at least one labelled example")
        self.enc, self.batch_size, self.pad_id, self.seed = enc, batch_size, pad_id, seed
        self.unlabeled, self.unlabeled_batch_size, self.masker = unlabeled, unlabeled_batch_size, masker
        self.consumed = 0
        self.unlabeled_consumed = 0

    @staticmethod
    def _take(n: int, consumed: int, count: int, seed: int) -> np.ndarray:
        epoch, offset = divmod(consumed, n)
        return np.random.default_rng([seed, epoch]).permutation(n)[offset:offset + count]

    def __iter__(self):
        n = len(self.enc.rows)
        while True:
            order = self._take(n, self.consumed, self.batch_size, self.seed)
            self.consumed += len(order)
            batch = batch_of(self.enc, order.tolist(), self.pad_id)
            if self.unlabeled is not None and self.masker is not None and len(self.unlabeled.rows):
                m = len(self.unlabeled.rows)
                epoch = self.unlabeled_consumed // m
                picked = self._take(m, self.unlabeled_consumed, self.unlabeled_batch_size, self.seed + 1)
                self.unlabeled_consumed += len(picked)
                plain = batch_of(self.unlabeled, picked.tolist(), self.pad_id)
                masked = self.masker({"input_ids": plain["input_ids"], "sample_index": torch.from_numpy(picked),
                                      "mask_epoch": torch.full((len(picked),), epoch)})
                batch["mlm_input_ids"], batch["mlm_labels"] = masked["input_ids"], masked["labels"]
                batch["mlm_attention_mask"] = plain["attention_mask"]
            yield batch

    def state_dict(self) -> dict:
        return {"consumed": self.consumed, "unlabeled_consumed": self.unlabeled_consumed, "n": len(self.enc.rows),
                "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        if state.get("n") != len(self.enc.rows) or state.get("seed") != self.seed:
            raise ConfigError("cannot resume: the checkpoint was trained on other PET data or another seed")
        self.consumed, self.unlabeled_consumed = int(state["consumed"]), int(state["unlabeled_consumed"])


def task_loss(model, batch: dict, tokens: VerbalizerTokens) -> torch.Tensor:
    """Mean over the batch: CE over the label scores (single token) or the parallel hinge loss (multi-token)."""
    logits = mask_logits(model, batch, tokens.num_masks)
    if tokens.single_token:
        return F.cross_entropy(single_token_scores(logits[:, 0].float(), tokens), batch["labels"])
    from slm.finetune.pet.multitoken import hinge_loss, parallel_scores

    scores = parallel_scores(logits, tokens.label_token_ids())
    return hinge_loss(scores, batch["labels"]) / batch["labels"].numel()


def pet_loss(tokens: VerbalizerTokens, alpha: float = 0.9999):
    """The Trainer's loss_fn: (alpha * task + (1 - alpha) * MLM) summed over the batch, and the batch size."""
    def loss_fn(model, batch: dict):
        loss = task_loss(model, batch, tokens)
        if "mlm_input_ids" in batch:
            labels = batch["mlm_labels"]
            chosen = labels != -100
            if chosen.any():
                logits = model(batch["mlm_input_ids"], attention_mask=batch["mlm_attention_mask"], select=chosen)
                mlm = F.cross_entropy(logits.float(), labels[chosen])
                loss = alpha * loss + (1 - alpha) * mlm
        n = batch["labels"].numel()
        return loss * n, n
    return loss_fn


def train_config(cfg: PETTrainConfig, seed: int, steps: int | None = None):
    from slm.config import build
    from slm.train import TrainConfig

    steps = steps or cfg.steps
    return build(TrainConfig, {"max_steps": steps, "lr": cfg.lr, "min_lr": 0.0, "warmup_steps": cfg.warmup_steps,
                               "weight_decay": cfg.weight_decay, "grad_clip": cfg.grad_clip, "seed": seed,
                               "betas": [0.9, 0.999], "eps": 1e-8, "progress": False, "keep_last": 1,
                               "log_every": max(1, steps // 5)}, "train")


def train_pattern_model(mlm, tokenizer, tokens: VerbalizerTokens, train: Encoded, cfg: PETTrainConfig, seed: int,
                        out_dir: str | Path, unlabeled: Encoded | None = None):
    """A copy of the MLM `mlm` fine-tuned on one pattern's labelled examples; returns (model, trainer result)."""
    from slm.train import Trainer

    model = copy.deepcopy(mlm)
    masker = None
    if cfg.lm_training and unlabeled is not None:
        from slm.objectives.mlm import MaskingConfig, MaskTokens

        masker = MaskTokens(tokenizer, MaskingConfig(seed=seed), vocab_size=model.config.vocab_size)
    data = PETBatches(train, cfg.batch_size, tokenizer.pad_token_id, seed, unlabeled if masker else None,
                      cfg.unlabeled_batch_size, masker)
    trainer = Trainer(model, train_config(cfg, seed), data, out_dir=out_dir, tokenizer=tokenizer,
                      loss_fn=pet_loss(tokens, cfg.alpha))
    result = trainer.fit()
    model.eval()
    return model, result


def distillation_loss_fn(temperature: float = 2.0):
    """The Trainer's loss_fn for the final classifier: batch["labels"] holds the teacher's merged logits."""
    from slm.finetune.pet.ensemble import distillation_loss

    def loss_fn(model, batch: dict):
        logits = model(batch["input_ids"], attention_mask=batch["attention_mask"]).float()
        n = logits.shape[0]
        return distillation_loss(logits, batch["labels"].float(), temperature) * n, n
    return loss_fn


def train_distilled_classifier(mlm, tokenizer, rows: list[list[int]], teacher_logits: np.ndarray,
                               labels: list[str], cfg: PETTrainConfig, seed: int, out_dir: str | Path,
                               temperature: float = 2.0, steps: int | None = None):
    """A sequence classifier on the MLM's body, trained only on `rows` (the unlabelled set, no pattern) with the
    teacher's logits as soft targets."""
    from slm.finetune.classify import ClassificationBatches
    from slm.models.encoder import with_head
    from slm.train import Trainer

    model = with_head(mlm, "sequence", labels=labels, seed=seed)
    data = ClassificationBatches(rows, np.asarray(teacher_logits, dtype=np.float32), cfg.batch_size,
                                 tokenizer.pad_token_id, seed)
    trainer = Trainer(model, train_config(cfg, seed, steps), data, out_dir=out_dir, tokenizer=tokenizer,
                      loss_fn=distillation_loss_fn(temperature))
    result = trainer.fit()
    model.eval()
    return model, result
