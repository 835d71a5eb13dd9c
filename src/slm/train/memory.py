"""A training step's memory, estimated from the model and the first batch before the first step, and the check
that it fits the memory the machine has free (a run that cannot fit stops with one line, before any work,
instead of being killed by the kernel).

    est = estimate(model, batch, checkpointing=False)
    print(est.summary(available_bytes()))
    check_fits(est, available_bytes())      # SlmError naming what to change when it cannot fit

The estimate counts what a step holds at its peak: the weights, their gradients and AdamW's two moments (for
the trainable ones), the activations autograd keeps for the backward pass (per token and layer, from the
model's dims; with activation checkpointing only each block's input, plus one block recomputed), the
attention probabilities when a mask forces SDPA's math kernel, and one chunk of the loss's logits
(slm.models.layers.chunked_lm_loss). It is an estimate: tests hold it within a factor of 2 of measured peaks.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from slm.errors import SlmError

GB = 1024 ** 3


@dataclass(frozen=True)
class MemoryEstimate:
    weights: int
    gradients: int
    optimizer: int
    activations: int
    logits: int

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations + self.logits

    def summary(self, available: int | None = None) -> str:
        unit, size = ("GB", GB) if self.total >= GB else ("MB", 2 ** 20)
        parts = ", ".join(f"{name} {getattr(self, name) / size:.2f}" for name in
                          ("weights", "gradients", "optimizer", "activations", "logits"))
        free = f" of {available / GB:.1f} GB free" if available else ""
        return f"memory estimate: {self.total / size:.2f} {unit} a step{free} ({parts} {unit})"


def _parameters(model) -> tuple[int, int, int]:
    """(all parameter bytes, trainable element count, trainable bytes), each tensor counted once."""
    seen, total, trainable, trainable_bytes = set(), 0, 0, 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel() * p.element_size()
        if p.requires_grad:
            trainable += p.numel()
            trainable_bytes += p.numel() * p.element_size()
    return total, trainable, trainable_bytes


def estimate(model, batch: dict, checkpointing: bool = False, activation_bytes: int = 4) -> MemoryEstimate:
    from slm.models.hf import unwrap
    from slm.models.layers import LOSS_CHUNK_LOGITS

    inner = unwrap(model)
    inner = inner.get_base_model() if hasattr(inner, "get_base_model") else inner
    cfg = inner.config
    weights, trainable, trainable_bytes = _parameters(inner)
    ids = batch["input_ids"]
    tokens, seq = ids.numel(), ids.shape[-1]
    dim = cfg.dim
    heads = getattr(cfg, "n_heads", 1)
    head_dim = getattr(cfg, "head_dim", None) or dim // heads
    kv = getattr(cfg, "n_kv_heads", None) or heads
    ffn = getattr(cfg, "ffn_dim", 4 * dim)
    layers = getattr(cfg, "n_layers", 1)
    # Kept per token in a block: the two norms' inputs and outputs, q, k, v, the attention output, the MLP's two
    # inputs, its gate and up projections and their product (llama's SwiGLU; phi's GELU MLP keeps about as much).
    per_token = 6 * dim + 2 * heads * head_dim + 2 * kv * head_dim + 3 * ffn
    materialised_mask = batch.get("attention_mask") is not None or batch.get("document_ids") is not None
    if materialised_mask:  # SDPA's math kernel keeps the probabilities (and their mask) for the backward pass
        per_token += 2 * heads * seq
    block = tokens * per_token * activation_bytes
    if checkpointing:
        activations = tokens * dim * activation_bytes * layers + block
    else:
        activations = block * layers
    activations += tokens * dim * activation_bytes * 2  # embeddings and the final norm
    targets = int((batch["labels"] != -100).sum()) if "labels" in batch else tokens
    vocab = cfg.vocab_size
    chunk = min(targets, max(1, LOSS_CHUNK_LOGITS // vocab))
    logits = chunk * vocab * 4 * 3  # the logits, their softmax and its gradient
    return MemoryEstimate(weights, trainable_bytes, 8 * trainable, activations, logits)


def available_bytes() -> int | None:
    """The memory the kernel can give without swapping (MemAvailable), or None where it does not say."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def summary_for(est: MemoryEstimate, available: int | None, processes: int = 1) -> str:
    line = est.summary(available)
    return line if processes == 1 else f"{line}, per process; {processes} processes share the machine"


def check_fits(est: MemoryEstimate, available: int | None, headroom: float = 0.9, processes: int = 1) -> None:
    need = est.total * processes
    if available is None or need <= headroom * available:
        return
    raise SlmError(f"this run needs about {need / GB:.1f} GB a step but {available / GB:.1f} GB is free "
                   f"(activations {est.activations / GB:.1f} GB, optimizer {est.optimizer / GB:.1f} GB): lower "
                   "--seq-len or --batch-size (gradient accumulation keeps the tokens per step), use --lora, or set "
                   "train.activation_checkpointing=true; train.memory_check=false skips this check")
