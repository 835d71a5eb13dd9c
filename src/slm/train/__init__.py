"""Training: one loop for every recipe, torchrun scale-out (DDP / FSDP2), atomic checkpoints with exact resume.

    from slm.train import Trainer, TrainConfig
    Trainer(model, TrainConfig(max_steps=100), train_batches, val_batches, out_dir="runs/x").fit(resume="auto")

See slm.train.trainer for the hooks (loss_fn, batch_transform, evaluators) that recipes plug in.
"""
from slm.train.optim import lr_at, param_groups
from slm.train.trainer import TrainConfig, Trainer, causal_lm_loss, model_inputs

__all__ = ["TrainConfig", "Trainer", "causal_lm_loss", "lr_at", "model_inputs", "param_groups"]
