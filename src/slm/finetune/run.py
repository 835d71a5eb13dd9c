"""`slm finetune`: SFT (full or LoRA) of an HF-directory model, through the one trainer (slm.train.Trainer).

Imported lazily by the CLI (it pulls in torch). This module only assembles parts: the model (plus peft's LoRA), the rendered and packed SFT data, and the
Trainer with its progress bar, metrics.jsonl, checkpoints and exact resume. The single thing a LoRA run
stores differently is the model inside each checkpoint: the adapters merged into a plain HF directory
(what users load), the adapter alone (adapter/), and the raw LoRA tensors for an exact resume.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from slm.errors import SlmError
from slm.finetune.lora import LoraSettings
from slm.train import TrainConfig, Trainer

# Trainer defaults suited to fine-tuning (the Trainer's own are TinyLlama's pretraining ones).
SFT_TRAIN_DEFAULTS = dict(max_steps=200, lr=2e-4, min_lr=2e-5, warmup_steps=10, weight_decay=0.0, log_every=10)
LORA_STATE = "lora_state.safetensors"


@dataclass
class SFTDataConfig:
    path: str = ""  # JSONL: {"messages": [...]} or {"prompt", "completion"} per line; encoder-decoders {"input", "target"}
    val_path: str | None = None  # a held-out JSONL for the validation loss
    val_fraction: float = 0.0  # or hold out this fraction of `path` (seeded)
    seq_len: int | None = None  # tokens per row; None: from the data (its longest example, rounded up to 64,
    # capped by the model's max_seq_len), not the model's context: a real model's 8K rows of mostly padding
    # would cost 8K tokens of activations and logits per row
    batch_size: int = 8  # rows per micro-batch (packed rows of seq_len tokens, or padded examples)
    pack: bool = True
    strategy: str = "bfd"  # bfd | greedy
    overlong: str | None = None  # truncate | drop | error; None: truncate (decoders), error (encoder-decoders)
    train_on: str = "assistant"  # assistant | all
    on_bad_line: str = "error"  # error | skip
    chat_template: str | None = None  # a Jinja file to use instead of the tokenizer's template
    seed: int = 0


@dataclass
class FinetuneConfig:
    model: str = ""  # an HF model directory with its tokenizer
    out: str = "runs/finetune"
    data: SFTDataConfig = field(default_factory=SFTDataConfig)
    lora: LoraSettings | None = None  # None: full fine-tuning
    train: dict = field(default_factory=dict)  # slm.train.TrainConfig fields over SFT_TRAIN_DEFAULTS


def build_config(data: dict):
    """A FinetuneConfig (and its TrainConfig) from a nested dict, checking every key and type."""
    from slm.config import build

    cfg = build(FinetuneConfig, data)
    train = build(TrainConfig, {**SFT_TRAIN_DEFAULTS, **cfg.train}, "train")
    return cfg, train


def hold_out(items: list, cfg: SFTDataConfig) -> tuple[list, list]:
    """(kept, held out): a seeded data.val_fraction of the items, each side in file order."""
    if not 0 < cfg.val_fraction < 1:
        raise SlmError(f"data.val_fraction must be in (0, 1), got {cfg.val_fraction}")
    order = list(range(len(items)))
    random.Random(f"slm-sft-val:{cfg.seed}").shuffle(order)
    n_val = max(1, int(len(items) * cfg.val_fraction))
    return [items[i] for i in sorted(order[n_val:])], [items[i] for i in sorted(order[:n_val])]


def row_length(examples, limit: int, multiple: int = 64) -> int:
    """The row length the data needs: its longest example rounded up to `multiple`, at most `limit`."""
    longest = max((len(e.input_ids) for e in examples), default=1)
    return min(limit, -(-longest // multiple) * multiple)


def load_data(cfg: SFTDataConfig, tokenizer, world: tuple[int, int] = (0, 1), say=print, limit: int | None = None):
    """(train batches, validation batches or None) from the JSONL file(s), with every loss of data reported.
    cfg.seq_len None: rows as long as the data needs (row_length), at most `limit` (the model's context)."""
    from slm.finetune.data import load_sft_examples
    from slm.finetune.packing import SFTBatches

    template = None
    if cfg.chat_template:
        path = Path(cfg.chat_template)
        if not path.is_file():
            raise SlmError(f"chat template file not found: {path}")
        template = path.read_text()
    examples, report = load_sft_examples(cfg.path, tokenizer, template, cfg.train_on, cfg.on_bad_line)
    say(f"{cfg.path}: {report.summary()}")
    val_examples = None
    if cfg.val_path:
        val_examples, val_report = load_sft_examples(cfg.val_path, tokenizer, template, cfg.train_on, cfg.on_bad_line)
        say(f"{cfg.val_path}: {val_report.summary()}")
    elif cfg.val_fraction > 0:
        examples, val_examples = hold_out(examples, cfg)
        say(f"held out {len(val_examples)} example(s) for validation")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    rank, world_size = world
    if cfg.seq_len is None:
        if limit is None:
            raise SlmError("data.seq_len is not set and no model context bounds it")
        cfg.seq_len = row_length(examples + (val_examples or []), limit)
        say(f"rows of {cfg.seq_len} tokens: the longest example, rounded up to 64 (at most the model's {limit}; "
            "--seq-len sets it)")
    common = dict(seq_len=cfg.seq_len, batch_size=cfg.batch_size, pad_id=pad_id, pack=cfg.pack,
                  strategy=cfg.strategy, overlong=cfg.overlong or "truncate", rank=rank, world_size=world_size,
                  attention_mask=False)  # the trainer builds the block mask from document_ids, on the device
    train = SFTBatches(examples, seed=cfg.seed, **common)
    stats = train.token_stats()
    say(f"train: {train.report.summary()}; {stats['rows']} row(s), {len(train)} batch(es) per epoch, "
        f"{stats['targets']:,} target tokens of {stats['tokens']:,}, {stats['fill']:.0%} of the row slots filled"
        f"{' (packed, ' + cfg.strategy + ')' if cfg.pack else ' (padded)'}")
    val = SFTBatches(val_examples, seed=cfg.seed, shuffle=False, **common) if val_examples else None
    return train, val


def load_seq2seq_data(cfg: SFTDataConfig, tokenizer, model_config, say=print):
    """(train, validation or None) input/target batches for an encoder-decoder (slm.finetune.seq2seq)."""
    from slm.finetune.seq2seq import Seq2SeqBatches, load_pairs

    limit = model_config.max_seq_len
    load = lambda path: load_pairs(path, tokenizer, min(cfg.seq_len or limit, limit), limit, cfg.overlong or "error",
                                   cfg.on_bad_line)
    pairs = load(cfg.path)
    val_pairs = load(cfg.val_path) if cfg.val_path else None
    if val_pairs is None and cfg.val_fraction > 0:
        pairs, val_pairs = hold_out(pairs, cfg)
    train = Seq2SeqBatches(pairs, cfg.batch_size, tokenizer.pad_token_id or 0, seed=cfg.seed)
    say(f"{cfg.path}: {len(pairs)} input/target pair(s), {len(train)} padded batch(es) per epoch, "
        f"{train.fill():.0%} of the batch slots filled (no packing)")
    val = Seq2SeqBatches(val_pairs, cfg.batch_size, tokenizer.pad_token_id or 0, shuffle=False, epochs=1) \
        if val_pairs else None
    return train, val


class SFTTrainer(Trainer):
    """The Trainer, taught to checkpoint a LoRA model; nothing else about the loop changes."""

    def save_model_files(self, directory: Path, model_state: dict) -> None:
        from slm.finetune.lora import is_lora

        if not is_lora(self.model):
            return super().save_model_files(directory, model_state)
        from safetensors.torch import save_file

        from slm.finetune.lora import ADAPTER_DIR, merged_copy, save_adapter
        from slm.models.hf import write_model_files

        merged = merged_copy(self.model).cpu()
        if self.tokenizer is not None:
            for attr in ("bos_token_id", "eos_token_id", "pad_token_id"):
                if getattr(merged.config, attr) is None:
                    setattr(merged.config, attr, getattr(self.tokenizer, attr, None))
        write_model_files(merged, directory)
        save_adapter(self.model, directory / ADAPTER_DIR)
        lora = {k: v.contiguous() for k, v in model_state.items() if ".lora_" in k}
        save_file(lora, directory / LORA_STATE)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(str(directory))

    def load_model_state(self, directory: Path) -> dict:
        if not (directory / LORA_STATE).is_file():
            return super().load_model_state(directory)
        from safetensors.torch import load_file

        # The base weights are frozen, so the model being resumed already holds them: only LoRA moved.
        state = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        lora = load_file(directory / LORA_STATE)
        unknown = set(lora) - set(state)
        if unknown:
            raise SlmError(f"{directory}: LoRA tensors {sorted(unknown)[:3]} do not fit this model; resume "
                           "with the same --lora settings")
        state.update(lora)
        return state


def finetune(cfg: FinetuneConfig, train_cfg, resume: str | None = None, say=print, task: str | None = None) -> dict:
    """Load the model, the data and (optionally) LoRA, then train with slm.train.Trainer. Returns fit()'s summary.
    Encoder-decoders train on input/target pairs (task "seq2seq", chosen by the model's family); decoders on chats."""
    import os

    import slm
    from slm.finetune.lora import apply_lora, trainable_parameters
    from slm.models.registry import family_of

    if not cfg.model:
        raise SlmError("no model: pass --model DIR (an HF model directory with its tokenizer)")
    if not cfg.data.path:
        raise SlmError("no data: pass --data FILE.jsonl")
    model, tokenizer = slm.load(cfg.model)
    if tokenizer is None:
        raise SlmError(f"{cfg.model} has no tokenizer; SFT renders conversations through the tokenizer's chat template")
    family = family_of(model)
    seq2seq = family is not None and family.seq2seq and not model.config.encoder_only
    if task == "seq2seq" and not seq2seq:
        raise SlmError(f"{cfg.model} is a {getattr(model.config, 'arch', '?')} "
                       f"{family.name if family else 'model'}, not an encoder-decoder: --task seq2seq needs one "
                       "(such as a t5 checkpoint); fine-tune a decoder with --task sft on prompt/completion pairs")
    if cfg.data.seq_len is not None and cfg.data.seq_len > model.config.max_seq_len:
        raise SlmError(f"data.seq_len {cfg.data.seq_len} exceeds the model's max_seq_len {model.config.max_seq_len}")
    world = (int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")))
    rank0_say = say if world[0] == 0 else (lambda *_: None)
    if seq2seq:
        from slm.models.seq2seq import seq2seq_loss

        train_data, val_data = load_seq2seq_data(cfg.data, tokenizer, model.config, rank0_say)
    else:
        train_data, val_data = load_data(cfg.data, tokenizer, world, rank0_say, limit=model.config.max_seq_len)
    if cfg.lora is not None:
        model = apply_lora(model, cfg.lora, seed=train_cfg.seed)
        n_train, n_all = trainable_parameters(model)
        rank0_say(f"LoRA r={cfg.lora.r} alpha={cfg.lora.alpha} on {sorted(model.peft_config['default'].target_modules)}:"
                  f" {n_train:,} trainable parameters of {n_all:,} ({n_train / n_all:.2%})")
    trainer = SFTTrainer(model, train_cfg, train_data, val_data, out_dir=cfg.out, tokenizer=tokenizer,
                         loss_fn=seq2seq_loss if seq2seq else None)
    result = trainer.fit(resume=resume)
    rank0_say(f"fine-tuned model: {result['checkpoint']}"
              + (" (LoRA merged; the adapter alone is in its adapter/ folder)" if cfg.lora is not None else ""))
    return result
