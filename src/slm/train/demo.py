"""The main job on the embedded corpus (the Python standard library's source), end to end:

    tokenizer  ->  token shards  ->  pretrain a CPU-sized Llama for a fixed token budget  ->
    validation loss and perplexity next to a unigram baseline  ->  loss-curve PNG, HF checkpoint, a sample

`slm demo` (and `make demo`) runs the default options: a nano Llama and 1.5M tokens, about 6 minutes of training
on the two unshared cores of the development machine (about 5,000 tokens/s), within 10 on slower ones. The
toy end-to-end test runs the same function with a tiny model and budget.
"""
from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class DemoOptions:
    out: str = "runs/demo"
    corpus_files: int | None = None  # stdlib .py files to pretrain on (None: all of them)
    tokenizer_files: int = 300  # the tokenizer is trained on the first N of them
    vocab_size: int = 4096
    preset: str = "nano"
    model: dict = field(default_factory=dict)  # ModelConfig overrides
    seq_len: int = 256
    batch_size: int = 8  # 2,048 tokens per step: many small steps suit a small model on a small budget
    token_budget: int = 1_500_000
    lr: float = 2e-3
    min_lr: float = 2e-4
    warmup_steps: int = 30
    eval_every: int = 250
    eval_batches: int = 16
    val_fraction: float = 0.02
    prompt: str = "def read_config(path):\n    \"\"\"Return the parsed configuration file.\"\"\"\n"
    sample_tokens: int = 80
    precision: str = "auto"  # slm.train.precision: bf16 autocast where the hardware has native bf16
    compile: bool | None = None  # None: torch.compile when a C++ compiler is present (inductor needs one on CPU)
    seed: int = 0
    workers: int = 2  # tokenizing processes
    progress: bool = True


def unigram_baseline(data_dir: str | Path, targets: np.ndarray) -> float:
    """Cross entropy (nats/token) of `targets` under the train split's unigram distribution (add-one smoothed):
    the loss of a model that knows token frequencies and nothing else."""
    from slm.data.shards import read_index

    data_dir = Path(data_dir)
    index = read_index(data_dir)
    vocab = index["tokenizer"]["vocab_size"]
    counts = np.zeros(vocab, dtype=np.float64)
    for shard in index["splits"]["train"]["shards"]:
        name = shard["file"] if isinstance(shard, dict) else shard
        tokens = np.fromfile(data_dir / name, dtype=np.dtype(index["dtype"]).newbyteorder("<"))
        counts += np.bincount(tokens, minlength=vocab)[:vocab]
    log_p = np.log(counts + 1.0) - math.log(counts.sum() + vocab)
    return float(-log_p[targets].mean())


def validation_targets(loader, batches: int) -> np.ndarray:
    """The target ids the trainer's validation loss is computed on (same loader, same first batches)."""
    out = []
    for i, batch in enumerate(loader):
        if i == batches:
            break
        labels = batch["labels"].numpy().ravel()
        out.append(labels[labels != -100])
    return np.concatenate(out)


def run_demo(opts: DemoOptions) -> dict:
    import slm
    from slm.data.shards import prepare
    from slm.data.sources import iter_stdlib_texts, stdlib_documents
    from slm.train.pretrain import DataSection, ModelSection, PretrainConfig, make_loaders, run as pretrain
    from slm.train.trainer import TrainConfig

    out = Path(opts.out)
    t_start = time.perf_counter()
    print(f"slm demo: pretraining a {opts.preset} Llama on the Python standard library ({out})", flush=True)

    t0 = time.perf_counter()
    tokenizer = slm.train_tokenizer(iter_stdlib_texts(opts.tokenizer_files), vocab_size=opts.vocab_size,
                                    kind="byte-bpe")
    tokenizer.save_pretrained(str(out / "tokenizer"))
    print(f"[1/4] tokenizer: byte-level BPE, {len(tokenizer)} tokens, trained on {opts.tokenizer_files} files "
          f"in {time.perf_counter() - t0:.1f}s", flush=True)

    t0 = time.perf_counter()
    index = prepare(stdlib_documents(opts.corpus_files), out / "tokenizer", out / "data",
                    val_fraction=opts.val_fraction, seed=opts.seed, workers=opts.workers, progress=opts.progress,
                    description=["python stdlib"])
    splits = index["splits"]
    print(f"[2/4] shards: {splits['train']['tokens']:,} train / {splits['val']['tokens']:,} validation tokens "
          f"from {splits['train']['documents'] + splits['val']['documents']} files "
          f"in {time.perf_counter() - t0:.1f}s", flush=True)

    cfg = PretrainConfig(
        model=ModelSection(preset=opts.preset, config={"max_seq_len": opts.seq_len, **opts.model}, seed=opts.seed),
        data=DataSection(dir=str(out / "data"), seq_len=opts.seq_len, batch_size=opts.batch_size, seed=opts.seed),
        train=TrainConfig(max_tokens=opts.token_budget, lr=opts.lr, min_lr=opts.min_lr,
                          warmup_steps=opts.warmup_steps, eval_every=opts.eval_every, eval_batches=opts.eval_batches,
                          log_every=5, keep_last=1, seed=opts.seed, progress=opts.progress,
                          precision=opts.precision,
                          compile=opts.compile if opts.compile is not None else shutil.which("g++") is not None),
        tokenizer=str(out / "tokenizer"), out=str(out / "run"))
    t0 = time.perf_counter()
    print(f"[3/4] pretraining for {opts.token_budget:,} tokens", flush=True)
    result = pretrain(cfg)
    train_s = time.perf_counter() - t0

    _, val_loader = make_loaders(cfg, 0, 1)
    baseline = unigram_baseline(out / "data", validation_targets(val_loader, opts.eval_batches))
    model, tokenizer = result["model"].eval(), result["tokenizer"]
    sample = generate_sample(model, tokenizer, opts.prompt, opts.sample_tokens, opts.seed)

    val_loss = result["val_loss"]
    summary = {"val_loss": val_loss, "val_ppl": math.exp(val_loss), "unigram_loss": baseline,
               "unigram_ppl": math.exp(baseline), "tokens": result["tokens"], "steps": result["step"],
               "train_seconds": train_s, "plot": result["plot"], "checkpoint": result["checkpoint"],
               "sample": sample, "total_seconds": time.perf_counter() - t_start}
    print(f"[4/4] results after {result['tokens']:,} tokens ({result['step']} steps, {train_s / 60:.1f} min training):")
    print(f"  validation loss  {val_loss:.3f} nats/token   perplexity {math.exp(val_loss):8.1f}")
    print(f"  unigram baseline {baseline:.3f} nats/token   perplexity {math.exp(baseline):8.1f}"
          f"   (the model is {baseline - val_loss:+.3f} nats/token better)")
    print(f"  loss curve:  {result['plot']}")
    print(f"  checkpoint:  {result['checkpoint']}  (an HF directory: slm.load or transformers load it)")
    print("  sampled continuation (temperature 0.8, top-k 40):")
    print("  " + "-" * 60)
    print("\n".join("  " + line for line in (opts.prompt + sample).splitlines()))
    print("  " + "-" * 60)
    print(f"done in {summary['total_seconds'] / 60:.1f} min")
    return summary


def generate_sample(model, tokenizer, prompt: str, max_tokens: int, seed: int) -> str:
    """A continuation of `prompt` with slm.infer's engine (KV cache)."""
    from slm.infer import Engine, SamplingParams

    engine = Engine(model, tokenizer)
    budget = min(max_tokens, model.config.max_seq_len - len(tokenizer.encode(prompt)) - 1)
    params = SamplingParams(max_tokens=max(1, budget), temperature=0.8, top_k=40, seed=seed)
    return engine.generate(prompt, params)[0].text
