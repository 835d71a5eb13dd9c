"""A training step's memory, estimated from the model and the first batch before the first step, and the check
that it fits the memory the machine has free (a run that cannot fit stops with one line, before any work,
instead of being killed by the kernel).

    est = estimate(model, batch, checkpointing=False)
    print(est.summary(available_bytes()))
    check_fits(est, available_bytes())      # SlmError naming what to change when it cannot fit
    p = plan(model, batch, available_bytes())   # the cheapest fit: as asked, rows in chunks, checkpointing
    with MemoryWatchdog() as dog: ...       # dog.tripped: why free memory fell too low during training

The estimate counts what a step holds at its peak: the weights, their gradients and AdamW's two moments (for
the trainable ones), the activations autograd keeps for the backward pass (per token and layer, from the
model's dims; with activation checkpointing only each block's input, plus one block recomputed), a padding or
packing mask (SDPA's CPU flash kernel takes it, so attention probabilities are never kept: measured on one
layer at 4 x 2048 tokens, 140 MB with a document mask against 1.8 GB through the math kernel), LoRA adapters'
backward transients, and one chunk of the loss's logits
(slm.models.layers.chunked_lm_loss). It is an estimate: tests hold it within a factor of 2 of measured peaks.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from slm.errors import SlmError

GB = 1024 ** 3


def human(n: int) -> str:
    """Bytes as GB, or as MB under one GB."""
    return f"{n / GB:.2f} GB" if n >= GB else f"{n / 2**20:.1f} MB"


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
    block = tokens * per_token * activation_bytes
    if checkpointing:
        activations = tokens * dim * activation_bytes * layers + block
    else:
        activations = block * layers
    activations += tokens * dim * activation_bytes * 2  # embeddings and the final norm
    # LoRA: each adapted linear's backward makes a [tokens, in] and a [tokens, out] transient (the adapter's
    # input gradient, summed with the frozen layer's, and the scaled branch's gradient), which the allocator
    # keeps; measured on the real model at about 75 MB per adapted module at 512 tokens.
    adapted = sum(m.base_layer.in_features + m.base_layer.out_features for m in unwrap(model).modules()
                  if hasattr(m, "lora_A") and hasattr(getattr(m, "base_layer", None), "in_features"))
    activations += tokens * adapted * activation_bytes
    if batch.get("attention_mask") is not None or batch.get("document_ids") is not None:
        # A padding or packing mask [rows, 1, seq, seq] (bool), kept once for every layer's backward, and the
        # kernel's transient copy; SDPA's CPU flash kernel takes the mask, so no probabilities are kept.
        activations += tokens * seq * 3
    targets = int((batch["labels"] != -100).sum()) if "labels" in batch else tokens
    vocab = cfg.vocab_size
    chunk = min(targets, max(1, LOSS_CHUNK_LOGITS // vocab))
    logits = chunk * vocab * 4 * 3  # the logits, their softmax and its gradient
    return MemoryEstimate(weights, trainable_bytes, 8 * trainable, activations, logits)


def _proc_bytes(path: str, field: str) -> int | None:
    """A `Field:   123 kB` line of a /proc file, in bytes; None where there is no such file or line."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def available_bytes() -> int | None:
    """The memory the kernel can give without swapping (MemAvailable), or None where it does not say."""
    return _proc_bytes("/proc/meminfo", "MemAvailable")


def summary_for(est: MemoryEstimate, available: int | None, processes: int = 1) -> str:
    line = est.summary(available)
    return line if processes == 1 else f"{line}, per process; {processes} processes share the machine"


@dataclass(frozen=True)
class MemoryPlan:
    estimate: MemoryEstimate
    checkpointing: bool  # activation checkpointing on (asked for, or turned on because the plan needs it)
    row_splits: int  # each micro-batch's rows run in this many chunks (the tokens per optimizer step are kept)
    rows: int

    def summary(self, available: int | None, asked_checkpointing: bool, processes: int = 1) -> str:
        changes = []
        if self.checkpointing and not asked_checkpointing:
            changes.append("activation checkpointing turned on")
        if self.row_splits > 1:
            changes.append(f"each micro-batch of {self.rows} rows runs as {self.row_splits} chunks of "
                           f"{-(-self.rows // self.row_splits)} (tokens per step kept)")
        line = summary_for(self.estimate, available, processes)
        return line + (f"; to fit: {', '.join(changes)}" if changes else "")


def plan(model, batch: dict, available: int | None, checkpointing: bool = False, can_checkpoint: bool = True,
         headroom: float = 0.9, processes: int = 1) -> MemoryPlan:
    """The cheapest way the step fits: as asked; else each micro-batch's rows split into 2, 4, ... chunks run
    one after another (the gradient of a sum over rows is the same, so the step is unchanged, and no work is
    added); else the same with activation checkpointing (when the model has it: it recomputes each block's
    forward, about a third more work). Raises check_fits' error when even one row cannot fit."""
    rows = batch["input_ids"].shape[0]
    options = [checkpointing] + ([True] if can_checkpoint and not checkpointing else [])
    splits = [1]
    while splits[-1] < rows:
        splits.append(min(rows, splits[-1] * 2))
    est = None
    for ckpt in options:
        for n_splits in splits:
            est = estimate(model, split_rows(batch, n_splits)[0], ckpt)
            if available is None or est.total * processes <= headroom * available:
                return MemoryPlan(est, ckpt, n_splits, rows)
    check_fits(est, available, headroom, processes)  # raises with the smallest plan's need
    raise AssertionError("unreachable")


def split_rows(batch: dict, n_splits: int) -> list[dict]:
    """The batch as `n_splits` batches of consecutive rows (tensors whose first dim is the row count)."""
    if n_splits <= 1:
        return [batch]
    n = batch["input_ids"].shape[0]
    size = -(-n // n_splits)
    return [{k: v[i:i + size] if hasattr(v, "shape") and v.dim() and v.shape[0] == n else v
             for k, v in batch.items()} for i in range(0, n, size)]


def check_fits(est: MemoryEstimate, available: int | None, headroom: float = 0.9, processes: int = 1) -> None:
    need = est.total * processes
    if available is None or need <= headroom * available:
        return
    raise SlmError(f"this run needs at least {need / GB:.1f} GB a step but {available / GB:.1f} GB is free "
                   f"(activations {est.activations / GB:.1f} GB, optimizer {est.optimizer / GB:.1f} GB): lower "
                   "--seq-len or --batch-size (gradient accumulation keeps the tokens per step), use --lora, or set "
                   "train.activation_checkpointing=true; train.memory_check=false skips this check")


def peak_resident_bytes() -> int | None:
    """This process's peak resident memory (VmHWM), or None without /proc."""
    return _proc_bytes("/proc/self/status", "VmHWM")


def reset_peak() -> bool:
    """Start VmHWM afresh from the resident memory now (Linux: `5` to /proc/self/clear_refs), so the next peak
    is the training step's and not the model load's; False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def resident_bytes() -> int | None:
    """This process's resident memory now (VmRSS), or None without /proc."""
    return _proc_bytes("/proc/self/status", "VmRSS")


def total_bytes() -> int | None:
    return _proc_bytes("/proc/meminfo", "MemTotal")


class MemoryWatchdog:
    """Watches the machine's free memory from a thread while training runs; `tripped` says why once it fell
    under `floor` (default: 3% of the machine's memory, at least 256 MB), so the loop can stop after the step,
    save a checkpoint and say what to change, instead of the kernel's OOM killer ending the process silently."""

    def __init__(self, floor: int | None = None, interval: float = 0.5, read=None):
        import threading

        total = total_bytes() or 0
        self.floor = floor if floor is not None else max(256 * 2**20, int(0.03 * total))
        self.interval, self.read = interval, read or (lambda: available_bytes())
        self.tripped: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="slm-memory-watchdog", daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            free = self.read()
            if free is not None and free < self.floor:
                self.tripped = (f"the machine's free memory fell to {free / GB:.2f} GB, under the "
                                f"{self.floor / GB:.2f} GB floor")
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> "MemoryWatchdog":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
