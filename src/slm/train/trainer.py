"""The one training loop every recipe uses: pretraining, SFT, distillation, LoRA.

    trainer = Trainer(model, TrainConfig(max_steps=1000), train_data, val_data, out_dir="runs/x", tokenizer=tok)
    trainer.fit(resume="auto")

Hooks (a recipe supplies these instead of copying the loop):
  train_data / val_data  any iterable of batches: dicts of tensors with `input_ids` [B, T] and `labels` [B, T]
                         (already shifted; -100 = ignored), optional `position_ids`, `attention_mask` (2-D padding
                         or 4-D boolean) and `document_ids`. If the iterable has `state_dict()/load_state_dict()`
                         its position goes into checkpoints and resumes exactly. Under torchrun each rank's
                         iterable yields that rank's rows (slm.data.loader.PackedLoader does).
  batch_transform(batch) -> batch   applied to every batch on the CPU before it moves to the device
                         (an SFT collator's masking, UL2 noise, ...).
  loss_fn(model, batch) -> (loss_sum, n_target_tokens)   a SUM over target tokens and their count. The trainer adds
                         both over all micro-batches and ranks of a step and divides once, so gradient accumulation
                         and data parallelism weigh every target token equally (sum-then-divide). Default:
                         `causal_lm_loss`, next-token cross entropy over `labels`.
  evaluators             callables (model) -> {name: float}, run every `eval_every` steps next to the validation
                         loss; their numbers go to the same metrics.jsonl. Under FSDP they run on every rank
                         (the forward pass is collective); only rank 0's numbers are logged.
  save_model_files / load_model_state   methods a subclass may override for models that are not a slm Decoder
                         (the default writes an HF directory for a Decoder and model_state.safetensors otherwise).

Per optimizer step: `accumulation` micro-batches (from batch_tokens or grad_accum), bf16 autocast where the
hardware has native bf16 (slm.train.precision),
backward of each micro-batch's loss sum, gradients scaled by world/targets, clipping, AdamW, the schedule.
"""
from __future__ import annotations

import contextlib
import functools
import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Literal

import torch
import torch.nn.functional as F
from torch import nn

from slm.errors import CheckpointError, ConfigError, SlmError
from slm.train import checkpoint as ckpt
from slm.train import distributed as D
from slm.train.allocator import retain_freed_memory
from slm.train.memory import MemoryWatchdog, human, peak_resident_bytes, split_rows
from slm.train.metrics import MetricsLog
from slm.train.optim import build_optimizer, lr_at
from slm.train.precision import resolve_precision


@dataclass
class TrainConfig:
    """One training run. Defaults are TinyLlama's (lit-gpt pretrain script) except the step counts."""

    max_steps: int = 1000
    max_tokens: int | None = None  # a token budget; when set it decides the number of steps
    batch_tokens: int | None = None  # tokens per optimizer step over all ranks; sets gradient accumulation
    grad_accum: int = 1  # micro-batches per optimizer step when batch_tokens is not set
    lr: float = 4e-4
    min_lr: float = 4e-5
    warmup_steps: int = 2000
    decay_steps: int | None = None  # end of the cosine; None: the last step
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    grad_clip: float = 1.0  # 0 disables clipping
    # auto: bf16 autocast on CUDA and on a CPU with native bf16 (AVX512-BF16 or AMX), fp32 elsewhere
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    compile: bool = False  # torch.compile the model (in one process, together with the loss)
    activation_checkpointing: bool = False
    # CPU: keep freed memory in the process instead of unmapping it (slm.train.allocator); 7-17% per step at nano
    retain_cpu_memory: bool = True
    strategy: Literal["auto", "ddp", "fsdp"] = "auto"  # used under torchrun; auto means DDP
    device: str = "auto"
    seed: int = 0
    log_every: int = 10
    eval_every: int = 0  # 0: evaluate only at the end
    eval_batches: int = 20
    save_every: int = 0  # 0: checkpoint only at the end
    keep_last: int = 3  # checkpoints kept; 0 keeps all
    progress: bool = True
    # CPU: estimate a step's memory from the first batch and fit it to what is free (checkpointing, then rows in
    # chunks), stop before any work if it cannot fit, and stop cleanly with a checkpoint if memory runs low
    memory_check: bool = True

    def __post_init__(self):
        for name in ("max_steps", "grad_accum", "eval_batches", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be at least 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "eval_every", "save_every", "keep_last"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name} must not be negative")
        if not 0 <= self.min_lr <= self.lr:
            raise ConfigError(f"train.min_lr ({self.min_lr}) must be between 0 and lr ({self.lr})")


def model_inputs(batch: dict) -> dict:
    """The keyword arguments a slm Decoder takes from a batch; document_ids become a packing mask."""
    from slm.models import make_attention_mask

    mask = batch.get("attention_mask")
    if mask is None and batch.get("document_ids") is not None:
        mask = make_attention_mask(batch["input_ids"].shape[1], 0, document_ids=batch["document_ids"],
                                   device=batch["input_ids"].device)
    return {"position_ids": batch.get("position_ids"), "attention_mask": mask}


def causal_lm_loss(model: nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed next-token cross entropy over `labels` (already shifted, -100 ignored) and the number of targets.
    A model whose forward takes `labels` (slm's decoders) computes it itself, without full-vocabulary logits."""
    labels = batch["labels"]
    if _takes_labels(model):
        return model(batch["input_ids"], **model_inputs(batch), labels=labels)
    logits = model(batch["input_ids"], **model_inputs(batch))
    # cross_entropy upcasts bf16 logits itself (autocast); no extra fp32 copy of the logits is made here.
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100,
                           reduction="sum")
    return loss, (labels != -100).sum()


def _takes_labels(model: nn.Module) -> bool:
    from slm.models.hf import unwrap

    # A class attribute, not a signature check: this runs inside the compiled loss, where inspection breaks graphs.
    return getattr(unwrap(model), "computes_lm_loss", False)


class Trainer:
    def __init__(self, model: nn.Module, config: TrainConfig, train_data: Iterable[dict],
                 val_data: Iterable[dict] | None = None, out_dir: str | Path = "runs/train", tokenizer=None,
                 loss_fn: Callable | None = None, batch_transform: Callable[[dict], dict] | None = None,
                 evaluators: Iterable[Callable[[nn.Module], dict]] = ()):
        self.model = model
        self.config = config
        self.train_data = train_data
        self.val_data = val_data
        self.out_dir = Path(out_dir)
        self.tokenizer = tokenizer
        self.loss_fn = loss_fn or causal_lm_loss
        self.batch_transform = batch_transform
        self.evaluators = list(evaluators)
        self.step = 0
        self.tokens = 0
        self.history: list[dict] = []  # every record written to metrics.jsonl by this process (rank 0)

    # ----------------------------------------------------------------------------------------- setup
    def _setup(self) -> None:
        cfg = self.config
        self.dist = D.setup(cfg.device)
        self.device = self.dist.device
        self.precision = resolve_precision(cfg.precision, self.device)
        self.row_splits, self.memory_estimate, self._resident_before = 1, None, None  # set by _plan_memory
        self.autocast = (torch.autocast(self.device.type, dtype=torch.bfloat16) if self.precision.bf16
                         else contextlib.nullcontext())
        torch.manual_seed(cfg.seed)
        if cfg.retain_cpu_memory and self.device.type == "cpu":
            retain_freed_memory()
        self.model.to(self.device).train()
        if cfg.activation_checkpointing:
            inner = _unwrap(self.model)
            if not hasattr(inner, "gradient_checkpointing"):
                raise ConfigError("activation_checkpointing: this model has no gradient_checkpointing switch")
            inner.gradient_checkpointing = True
        from slm.models.registry import block_classes

        self.wrapped = D.wrap(self.model, cfg.strategy, self.dist, layer_types=block_classes())
        if cfg.compile and not self.dist.enabled:
            # One process: the loss is compiled together with the model, so the cross entropy is fused with
            # the LM head's output instead of running eagerly over a materialised [tokens, vocab] tensor.
            # (Under DDP/FSDP the wrapper itself is what torch.compile is given.)
            self.compute_loss = torch.compile(functools.partial(self.loss_fn, self.wrapped))
        else:
            model = torch.compile(self.wrapped) if cfg.compile else self.wrapped
            self.compute_loss = functools.partial(self.loss_fn, model)
        self.optimizer = build_optimizer(self.wrapped, cfg.lr, cfg.weight_decay, cfg.betas, cfg.eps, self.device)
        self.params = [p for p in self.wrapped.parameters() if p.requires_grad]

    def _say(self, message: str) -> None:
        if self.dist.is_main:
            print(message, flush=True)

    # ------------------------------------------------------------------------------------------- fit
    def fit(self, resume: str | None = None) -> dict:
        """Train to the step or token budget; `resume="auto"` continues from the newest good checkpoint."""
        self._setup()
        cfg, d = self.config, self.dist
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if d.is_main:
            ckpt.remove_partial(self.out_dir)
        start = self._find_checkpoint(resume)
        if start is not None:
            self._restore(Path(start))
            self._say(f"resumed from {start} at step {self.step}")
        elif resume == "auto":
            self._say(f"no checkpoint in {self.out_dir}/checkpoints: starting fresh")
        self.log = MetricsLog(self.out_dir, resume_step=self.step if start else None) if d.is_main else None
        try:
            return self._loop()
        finally:
            if self.log is not None:
                self.log.close()

    def _plan_memory(self, batch: dict) -> None:
        """Print the step's estimated memory and fit it to what is free: activation checkpointing, then the
        micro-batch's rows in chunks (slm.train.memory.plan); refuse (one line, exit 2) a run that cannot fit
        at all. The processes of a CPU run share one machine's memory."""
        from slm.train import memory

        inner = _unwrap(self.model)
        free = memory.available_bytes()
        try:
            plan = memory.plan(self.model, batch, free, self.config.activation_checkpointing,
                               can_checkpoint=hasattr(inner, "gradient_checkpointing"),
                               processes=self.dist.world_size)
        except AttributeError:
            return  # a model without slm's config dims (a test's toy module): nothing to estimate from
        self._say(plan.summary(free, self.config.activation_checkpointing, self.dist.world_size))
        if plan.checkpointing:
            inner.gradient_checkpointing = True
        self.row_splits = plan.row_splits
        self.memory_estimate = plan.estimate
        self._resident_before = memory.resident_bytes() if memory.reset_peak() else None

    def _find_checkpoint(self, resume: str | None) -> str | None:
        """Rank 0 picks (and verifies) the checkpoint; every rank gets its path or its error."""
        found = error = None
        if self.dist.is_main:
            try:
                path = ckpt.resolve(self.out_dir, resume, self._say)
                found = str(path) if path else None
            except CheckpointError as e:
                error = str(e)
        found, error = D.broadcast_object((found, error), self.dist)
        if error:
            raise CheckpointError(error)
        return found

    def _loop(self) -> dict:
        cfg, d = self.config, self.dist
        batches = iter(self.train_data)
        first = self._next(batches)
        if first is None:
            raise ConfigError("the training data yielded no batches")
        pending = [first]
        micro_tokens = first["input_ids"].numel() * d.world_size
        self.accumulation = self._accumulation(micro_tokens)
        step_tokens = micro_tokens * self.accumulation
        max_steps = math.ceil(cfg.max_tokens / step_tokens) if cfg.max_tokens else cfg.max_steps
        self.max_steps = max_steps
        decay_steps = cfg.decay_steps or max_steps
        self._say(f"training {max_steps} steps of {step_tokens:,} tokens ({self.accumulation} micro-batch(es) x "
                  f"{d.world_size} process(es)) on {self.device} in {self.precision.name} ({self.precision.reason})")
        watchdog = contextlib.nullcontext()
        if cfg.memory_check and self.device.type == "cpu":
            self._plan_memory(first)
            watchdog = MemoryWatchdog()
        with watchdog as dog:
            return self._steps(batches, pending, max_steps, decay_steps, step_tokens, dog)

    def _steps(self, batches, pending: list, max_steps: int, decay_steps: int, step_tokens: int, dog) -> dict:
        cfg = self.config
        bar = self._progress(max_steps)
        train_time, interval_tokens, interval_time = 0.0, 0, 0.0
        last = {}
        while self.step < max_steps:
            t0 = time.perf_counter()
            lr = lr_at(self.step, cfg.lr, cfg.min_lr, cfg.warmup_steps, decay_steps)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            result = self._train_step(batches, pending)
            if result is None:
                self._say(f"training data exhausted after step {self.step}; stopping early")
                break
            loss, grad_norm = result
            self.step += 1
            if self.step == 1 and self.memory_estimate and peak_resident_bytes() and self._resident_before:
                # The weights were resident before the step; what the step added is the rest of the estimate.
                added = peak_resident_bytes() - self._resident_before
                rest = self.memory_estimate.total - self.memory_estimate.weights
                self._say(f"memory: peak resident {human(peak_resident_bytes())} after the first step, "
                          f"{human(self._resident_before)} before it: the step added {human(added)}, "
                          f"estimated {human(rest)} ({added / max(rest, 1):.2f}x)")
            self.tokens += step_tokens
            elapsed = time.perf_counter() - t0
            train_time += elapsed
            interval_tokens += step_tokens
            interval_time += elapsed
            if self.step % cfg.log_every == 0 or self.step == max_steps:
                last = {"step": self.step, "loss": loss, "lr": lr, "tokens": self.tokens,
                        "tokens_per_s": interval_tokens / max(interval_time, 1e-9), "grad_norm": grad_norm,
                        "precision": self.precision.name}
                self._record(last)
                interval_tokens, interval_time = 0, 0.0
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}",
                                tok_s=f"{step_tokens / max(elapsed, 1e-9):,.0f}", refresh=False)
            final = self.step == max_steps
            if self.val_data is not None or self.evaluators:
                if final or (cfg.eval_every and self.step % cfg.eval_every == 0):
                    last.update(self.evaluate())
            if final or (cfg.save_every and self.step % cfg.save_every == 0):
                self.save_checkpoint()
            if dog is not None and not final and self._memory_ran_low(dog):
                if bar is not None:
                    bar.close()
                if not (cfg.save_every and self.step % cfg.save_every == 0):
                    self.save_checkpoint()
                why = dog.tripped or "another process's free memory ran low"
                raise SlmError(f"stopped after step {self.step}: {why}. The checkpoint is saved in "
                               f"{ckpt.step_dir(self.out_dir, self.step)}; resume with --resume auto after lowering "
                               "--batch-size or --seq-len, or with --lora")
        if bar is not None:
            bar.close()
        if self.step < max_steps and self.step > 0:
            self.save_checkpoint()
        return dict(last, step=self.step, tokens=self.tokens, train_seconds=train_time,
                    checkpoint=str(ckpt.step_dir(self.out_dir, self.step)), peak_resident_bytes=peak_resident_bytes(),
                    memory_estimate_bytes=self.memory_estimate.total if self.memory_estimate else None)

    def _memory_ran_low(self, dog) -> bool:
        """Whether any process's watchdog tripped (every rank stops together, so none waits in a collective)."""
        if not self.dist.enabled:
            return dog.tripped is not None
        flag = torch.tensor([float(dog.tripped is not None)], device=self.device)
        return D.all_reduce_sum(flag, self.dist).item() > 0

    def _accumulation(self, micro_tokens: int) -> int:
        cfg = self.config
        if cfg.batch_tokens is None:
            return cfg.grad_accum
        if cfg.batch_tokens % micro_tokens:
            raise ConfigError(f"train.batch_tokens ({cfg.batch_tokens}) must be a multiple of the tokens in one "
                              f"micro-batch over all processes ({micro_tokens} = rows x seq_len x processes)")
        return cfg.batch_tokens // micro_tokens

    def _next(self, batches) -> dict | None:
        try:
            batch = next(batches)
        except StopIteration:
            return None
        return self.batch_transform(batch) if self.batch_transform else batch

    def _to_device(self, batch: dict) -> dict:
        return {k: v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v
                for k, v in batch.items()}

    def _sync_gradients(self, sync: bool):
        from torch.nn.parallel import DistributedDataParallel

        if isinstance(self.wrapped, DistributedDataParallel) and not sync:
            return self.wrapped.no_sync()
        if self.dist.enabled and D.is_fsdp(self.wrapped):
            self.wrapped.set_requires_gradient_sync(sync)
        return contextlib.nullcontext()

    def _train_step(self, batches, pending: list) -> tuple[float, float] | None:
        """One optimizer step; (loss, grad norm) or None when the data ran out before it could start."""
        loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        targets = torch.zeros((), device=self.device, dtype=torch.float64)
        for micro in range(self.accumulation):
            batch = pending.pop() if pending else self._next(batches)
            if batch is None:
                if micro == 0:
                    return None
                break  # a short last step still uses what it has
            chunks = split_rows(self._to_device(batch), self.row_splits)
            for i, chunk in enumerate(chunks):  # more than one when the memory plan split the rows
                final_chunk = micro == self.accumulation - 1 and i == len(chunks) - 1
                with self._sync_gradients(final_chunk), self.autocast:
                    micro_loss, micro_targets = self.compute_loss(chunk)
                micro_loss.backward()
                loss_sum += micro_loss.detach().double()
                targets += micro_targets.detach().double() if torch.is_tensor(micro_targets) else micro_targets
        totals = D.all_reduce_sum(torch.stack([loss_sum, targets]), self.dist).tolist()
        n = max(totals[1], 1.0)
        # DDP and FSDP average gradients over ranks; times world / targets turns that into the mean per target token.
        scale = self.dist.world_size / n
        for p in self.params:
            if p.grad is not None:
                p.grad.mul_(scale)
        clip = self.config.grad_clip if self.config.grad_clip > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        grad_norm = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm
        return totals[0] / n, float(grad_norm)

    # -------------------------------------------------------------------------------------- evaluate
    @torch.no_grad()
    def evaluate(self) -> dict:
        """Validation loss and perplexity over `eval_batches` batches (the same ones every time), then evaluators."""
        out: dict = {}
        self.wrapped.eval()
        try:
            if self.val_data is not None:
                if not hasattr(self, "_val_start"):
                    self._val_start = self.val_data.state_dict() if hasattr(self.val_data, "state_dict") else None
                elif self._val_start is not None:
                    self.val_data.load_state_dict(self._val_start)
                totals = torch.zeros(2, device=self.device, dtype=torch.float64)
                batches = iter(self.val_data)
                for _ in range(self.config.eval_batches):
                    batch = self._next(batches)
                    if batch is None:
                        break
                    with self.autocast:
                        loss, n = self.compute_loss(self._to_device(batch))
                    totals += torch.stack([loss.double(), torch.as_tensor(n, device=self.device).double()])
                loss_sum, n = D.all_reduce_sum(totals, self.dist).tolist()
                if n > 0:
                    out["val_loss"] = loss_sum / n
                    out["val_ppl"] = math.exp(min(out["val_loss"], 700.0))
            for evaluator in self.evaluators:
                out.update(evaluator(_inner(self.wrapped)))
        finally:
            self.wrapped.train()
        if out:
            self._record({"step": self.step, **out})
            if self.dist.is_main and "val_loss" in out:
                self._say(f"step {self.step}: val loss {out['val_loss']:.4f}, perplexity {out['val_ppl']:.2f}")
        return out

    # ----------------------------------------------------------------------------------- checkpoints
    def save_checkpoint(self) -> Path:
        """Write RUN_DIR/checkpoints/step-N atomically (a collective under torchrun: every rank calls it)."""
        d = self.dist
        model_state, optim_state = D.full_state_dicts(self.wrapped, self.optimizer)
        rng = D.all_gather_objects(_rng_state(self.device), d)
        data = D.all_gather_objects(
            self.train_data.state_dict() if hasattr(self.train_data, "state_dict") else None, d)
        path = ckpt.step_dir(self.out_dir, self.step)
        if d.is_main:
            def write(tmp: Path) -> None:
                self.save_model_files(tmp, model_state)
                torch.save({"optimizer": optim_state, "torch_rng": [r.pop("torch") for r in rng],
                            "cuda_rng": [r.pop("cuda") for r in rng]}, tmp / "trainer_state.pt")
                state = {"step": self.step, "tokens": self.tokens, "world_size": d.world_size,
                         "accumulation": self.accumulation, "python_numpy_rng": rng, "data": data,
                         "config": asdict(self.config)}
                (tmp / "trainer_state.json").write_text(json.dumps(state, default=_jsonable) + "\n")
            path = ckpt.save(self.out_dir, self.step, write, self.config.keep_last)
        D.barrier(d)
        return path

    def save_model_files(self, directory: Path, model_state: dict) -> None:
        """An HF model directory for a model of a slm family (plus tokenizer); others get model_state.safetensors."""
        from slm.models.hf import write_model_files
        from slm.models.registry import family_of

        inner = _unwrap(self.model)
        family = family_of(inner)
        if family is not None:
            with torch.device("meta"):
                cpu_model = family.module_class(inner.config)
            cpu_model.load_state_dict(model_state, strict=False, assign=True)
            family.finish_load(cpu_model)
            if self.tokenizer is not None:
                for attr in ("bos_token_id", "eos_token_id", "pad_token_id"):
                    if getattr(cpu_model.config, attr) is None:
                        setattr(cpu_model.config, attr, getattr(self.tokenizer, attr, None))
            write_model_files(cpu_model, directory)
        else:
            from safetensors.torch import save_file

            seen, tensors = set(), {}
            for name, t in model_state.items():  # safetensors refuses shared storage (tied weights)
                key = (t.data_ptr(), t.shape)
                tensors[name] = t.clone() if key in seen else t.contiguous()
                seen.add(key)
            save_file(tensors, directory / "model_state.safetensors")
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(str(directory))

    def load_model_state(self, directory: Path) -> dict:
        from slm.models.hf import load_model

        if (directory / "model_state.safetensors").is_file():
            from safetensors.torch import load_file

            return load_file(directory / "model_state.safetensors")
        return load_model(directory).state_dict()

    def _restore(self, directory: Path) -> None:
        d = self.dist
        try:
            state = json.loads((directory / "trainer_state.json").read_text())
            tensors = torch.load(directory / "trainer_state.pt", weights_only=True, map_location="cpu")
        except (OSError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{directory}: cannot read the trainer state ({e})") from None
        D.load_full_state_dicts(self.wrapped, self.optimizer, self.load_model_state(directory), tensors["optimizer"])
        self.step, self.tokens = int(state["step"]), int(state["tokens"])
        same_world = state["world_size"] == d.world_size
        if not same_world:
            self._say(f"note: the checkpoint was written by {state['world_size']} process(es), this run has "
                      f"{d.world_size}; data positions and RNG continue from rank 0's")
        r = d.rank if same_world else 0
        _set_rng_state(state["python_numpy_rng"][r], tensors["torch_rng"][r], tensors["cuda_rng"][r], self.device)
        if state["data"][r] is not None and hasattr(self.train_data, "load_state_dict"):
            self.train_data.load_state_dict(state["data"][r])

    # --------------------------------------------------------------------------------------- display
    def _record(self, record: dict) -> None:
        if self.dist.is_main:
            record = {**record, "time": round(time.time(), 3)}
            self.history.append(record)
            self.log.write(record)

    def _progress(self, total: int):
        if not (self.dist.is_main and self.config.progress):
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=self.step, desc="train", unit="step", dynamic_ncols=True)


def _unwrap(model: nn.Module) -> nn.Module:
    from slm.models.hf import unwrap

    return unwrap(model)


def _inner(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)


def _rng_state(device: torch.device) -> dict:
    import numpy as np

    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"python": random.getstate(), "numpy": [kind, keys.tolist(), pos, has_gauss, gauss],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.zeros(0, dtype=torch.uint8)}


def _set_rng_state(py_np: dict, torch_state: torch.Tensor, cuda_state: torch.Tensor, device: torch.device) -> None:
    import numpy as np

    version, internal, gauss = py_np["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = py_np["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch_state)
    if device.type == "cuda" and cuda_state.numel():
        torch.cuda.set_rng_state(cuda_state, device)


def _jsonable(obj):
    """Loader states may hold numpy scalars or small arrays; JSON takes their plain values."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"cannot store a {type(obj).__name__} in trainer_state.json")
