"""The TinyGSM pipeline at CPU scale: data -> generator (SFT) -> verifier -> selection, for several seeds.

Per seed:
  1. split the templates into the generator's and held-out ones, and the held-out ones in two: verifier
     templates and test templates; generate problems from each; filter (short / numberless questions, code
     that does not run) and 13-gram-decontaminate the training and verifier sets against the test questions.
     (Or read TinyGSM / GSM8K JSONL files instead.)
  2. train a byte-level BPE on the training programs and fine-tune a small decoder on prompt -> program
     (slm.finetune packing + slm.train.Trainer), keeping checkpoints along the way;
  3. sample programs for the verifier questions from several generator checkpoints at temperatures 0.5
     and 0.7, run them in the sandbox, label them by their answer, and train the verifier (initialised from
     the final generator) token by token through the same Trainer;
  4. on the held-out test questions: one greedy program and N samples per question, all executed in the
     sandbox; report greedy, pass@1, majority@N, verifier@N and pass@N.
"""
from __future__ import annotations

import json
import math
import os
import random
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from slm.errors import ConfigError, SlmError

METRICS = ("greedy", "pass@1", "majority@N", "verifier@N", "weighted@N", "pass@N")


@dataclass
class DataConfig:
    train_problems: int = 4000
    verifier_problems: int = 300  # fresh questions whose generator samples train the verifier
    test_problems: int = 300
    held_out_fraction: float = 0.2  # of templates the generator never trains on
    # Where the verifier's questions come from. "held-out": half of the held-out templates (the other half
    # is the test set), so the verifier learns from the mistakes the generator makes on unfamiliar
    # problems, as the paper's verifier learns from GSM8K questions rather than the generator's TinyGSM
    # training set. "train": fresh questions from the generator's own templates.
    verifier_templates: str = "held-out"
    max_steps: int = 2  # steps between a problem's start and its question
    train_file: str | None = None  # TinyGSM JSONL (question, code) to train on instead of generated problems
    test_file: str | None = None  # TinyGSM or GSM8K JSONL to evaluate on instead of held-out templates
    min_words: int = 8  # questions shorter than this are dropped (the paper's "too short")
    ngram: int = 13  # decontamination n-gram length


@dataclass
class ModelSection:
    vocab_size: int = 1024  # of the byte-level BPE trained on the programs
    # One token per digit: a number copied from the question into the code is then the same tokens
    # in both places, which is what a small generator and verifier must compare.
    split_digits: bool = False
    dim: int = 128
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int = 2
    ffn_dim: int = 352
    max_seq_len: int = 320


@dataclass
class GeneratorConfig:
    steps: int = 800
    batch_size: int = 16  # packed rows of seq_len tokens
    seq_len: int = 320
    lr: float = 3e-3
    min_lr: float = 3e-4
    warmup_steps: int = 50
    weight_decay: float = 0.01  # the paper's
    checkpoints: int = 3  # evenly spaced; the verifier's samples come from all of them


@dataclass
class VerifierConfig:
    temperatures: list[float] = field(default_factory=lambda: [0.5, 0.7])
    samples: int = 4  # per question, checkpoint and temperature
    # Miscopied-number copies per training and verifier problem, added to the verifier's data with their
    # gold programs (negatives.py; not in the paper). 0 = the paper's data only.
    contrast_pairs: int = 0
    steps: int = 400
    batch_size: int = 16
    seq_len: int = 320
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 30
    weight_decay: float = 0.01


@dataclass
class EvalConfig:
    n_samples: int = 16
    temperature: float = 0.7
    max_tokens: int = 160
    batch_size: int = 256  # rows generated together by the engine


@dataclass
class TinyGSMConfig:
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    out_dir: str = "runs/tinygsm"
    threads: int = 0  # torch threads per seed; 0 = all cores (divided among jobs)
    jobs: int = 1  # seeds run in parallel processes
    sandbox_workers: int = 0  # parallel sandbox processes; 0 = all cores
    progress: bool = False  # tqdm bars for the training runs
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelSection = field(default_factory=ModelSection)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    verifier: VerifierConfig = field(default_factory=VerifierConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self):
        if self.jobs < 1:
            raise ConfigError("jobs must be at least 1")
        if not self.seeds:
            raise ConfigError("seeds must list at least one seed")
        if self.eval.n_samples < 1 or self.verifier.samples < 1:
            raise ConfigError("eval.n_samples and verifier.samples must be at least 1")
        if self.generator.checkpoints < 1 or self.generator.checkpoints > self.generator.steps:
            raise ConfigError("generator.checkpoints must be between 1 and generator.steps")
        if not 0 < self.data.held_out_fraction < 1:
            raise ConfigError("data.held_out_fraction must be between 0 and 1")
        if self.data.verifier_templates not in ("held-out", "train"):
            raise ConfigError(f"data.verifier_templates must be 'held-out' or 'train', not {self.data.verifier_templates!r}")


def _say(message: str) -> None:
    print(f"[tinygsm] {message}", flush=True)


# ------------------------------------------------------------------------------------------------- data

def build_data(cfg: TinyGSMConfig, seed: int) -> dict:
    """Train, verifier and test problems for one seed, filtered and decontaminated, with a report."""
    from slm.recipes.tinygsm import filters, formats, problems

    d = cfg.data
    templates = problems.all_templates(d.max_steps)
    train_t, held_t = problems.template_split(templates, d.held_out_fraction, seed)
    if d.verifier_templates == "held-out":
        test_t, verifier_t = problems.template_split(held_t, 0.5, f"{seed}:verifier")
    else:
        test_t, verifier_t = held_t, train_t
    if d.test_file:
        test = _read_eval_file(d.test_file)
    else:
        test = problems.generate(test_t, d.test_problems, seed=f"{seed}:test")
    if d.train_file:
        train = formats.read_tinygsm_jsonl(d.train_file)
    else:
        train = problems.generate(train_t, d.train_problems, seed=f"{seed}:train")
    options = {"workers": cfg.sandbox_workers or None}
    train, report = filters.apply_filters(train, d.min_words, **options)
    decon = filters.Decontaminator([p.question for p in test], d.ngram)
    train, report = decon.filter(train, report)
    if d.train_file:  # the paper's verifier questions are training questions (GSM8K's, TinyGSM's seeds)
        verifier_qs = random.Random(seed).sample(train, min(d.verifier_problems, len(train)))
    else:
        verifier_qs = problems.generate(verifier_t, d.verifier_problems, seed=f"{seed}:verifier")
        verifier_qs, _ = filters.apply_filters(verifier_qs, d.min_words, **options)
        verifier_qs, _ = decon.filter(verifier_qs)
    if not train:
        raise SlmError(f"no training problem left after filtering ({report.summary()})")
    seen = {p.template for p in train} | {p.template for p in verifier_qs}
    leaked = sum(p.template in seen for p in test if p.template)
    return {"train": train, "verifier": verifier_qs, "test": test, "report": report, "template_leaks": leaked,
            "templates": {"train": len(train_t), "test": len(test_t),
                          "verifier": len(verifier_t) if d.verifier_templates == "held-out" else "train"}}


def _read_eval_file(path: str):
    """An evaluation set: GSM8K JSONL (question, answer) or TinyGSM JSONL (question, code: run for the answer)."""
    from slm.recipes.tinygsm import filters, formats

    with open(path, encoding="utf-8") as f:
        first = next((line for line in f if line.strip()), "")
    try:
        keys = set(json.loads(first)) if first else set()
    except json.JSONDecodeError:
        keys = set()
    if "answer" in keys and "code" not in keys:
        return formats.read_gsm8k_jsonl(path)
    kept, report = filters.apply_filters(formats.read_tinygsm_jsonl(path))
    _say(f"{path}: {report.summary()}")
    return kept


# -------------------------------------------------------------------------------------------- generation

def encode_prompt(tokenizer, question: str) -> list[int]:
    from slm.recipes.tinygsm.formats import prompt_for

    return tokenizer.encode(prompt_for(question))


def encode_completion(tokenizer, body: str) -> list[int]:
    """A program body as the generator is trained on it and emits it: its tokens, then EOS."""
    return tokenizer.encode(body) + [tokenizer.eos_token_id]


def sft_examples(problems, tokenizer):
    """prompt -> program body + EOS, loss on the body only (labels shifted, as slm.finetune renders them)."""
    from slm.finetune import IGNORE, SFTExample
    from slm.recipes.tinygsm.formats import split_program

    out = []
    for p in problems:
        prompt = encode_prompt(tokenizer, p.question)
        body = encode_completion(tokenizer, split_program(p.code)[1])
        ids = prompt + body
        labels = [ids[t + 1] if t + 1 >= len(prompt) else IGNORE for t in range(len(ids) - 1)] + [IGNORE]
        out.append(SFTExample(ids, labels, p.source or p.template))
    return out


def sample_programs(model, tokenizer, questions: list[str], n: int, temperature: float, max_tokens: int,
                    seed: int, batch_size: int):
    """n completions per question (one greedy when temperature is 0), each sample with its own seed."""
    from slm.infer import Engine, SamplingParams

    engine = Engine(model, tokenizer, max_batch_size=batch_size)
    prompts, params = [], []
    for i, q in enumerate(questions):
        ids = encode_prompt(tokenizer, q)
        for j in range(n):
            prompts.append(ids)
            params.append(SamplingParams(max_tokens=max_tokens, temperature=temperature,
                                         seed=None if temperature == 0 else seed * 1_000_003 + i * 1009 + j))
    completions = engine.generate(prompts, params)
    return [completions[i * n:(i + 1) * n] for i in range(len(questions))]


def run_completions(questions: list[str], completions, workers: int | None):
    """Execute each completion as the body of its question's program: [[Execution]] in the same shape."""
    from slm.recipes.tinygsm.formats import completion_body, execute_programs, prompt_for

    flat = [prompt_for(q) + completion_body(c.text) for q, cs in zip(questions, completions) for c in cs]
    runs = execute_programs(flat, workers=workers)
    out, k = [], 0
    for cs in completions:
        out.append(runs[k:k + len(cs)])
        k += len(cs)
    return out


def labelled_samples(model, tokenizer, problems, n: int, temperature: float, max_tokens: int, seed: int,
                     batch_size: int, workers: int | None):
    """n programs per problem (sample_programs), each run in the sandbox and checked against the problem's
    answer: per problem, [(Completion, Execution, correct)]."""
    from slm.recipes.tinygsm.formats import answers_match

    questions = [p.question for p in problems]
    completions = sample_programs(model, tokenizer, questions, n, temperature, max_tokens, seed, batch_size)
    runs = run_completions(questions, completions, workers)
    return [[(c, r, answers_match(r.value, p.answer)) for c, r in zip(cs, rs)]
            for p, cs, rs in zip(problems, completions, runs)]


def verifier_samples(cfg: TinyGSMConfig, seed: int, generator_dir: Path, tokenizer, problems, workers: int | None):
    """The verifier's data as the paper draws it: verifier.samples programs per problem from every generator
    checkpoint at each temperature, labelled by execution: [(problem index, Completion, correct, source)]."""
    from slm.models import load_model
    from slm.train import checkpoint as ckpt

    v, out = cfg.verifier, []
    for step, path in ckpt.list_checkpoints(generator_dir):
        snapshot = load_model(path)
        for ti, temperature in enumerate(v.temperatures):
            rows = labelled_samples(snapshot, tokenizer, problems, v.samples, temperature, cfg.eval.max_tokens,
                                    seed=seed * 7919 + step * 31 + ti, batch_size=cfg.eval.batch_size,
                                    workers=workers)
            out += [(i, c, ok, f"step-{step}/T{temperature}") for i, row in enumerate(rows) for c, _, ok in row]
            correct = sum(ok for row in rows for _, _, ok in row)
            _say(f"seed {seed}: checkpoint {step}, T={temperature}: {correct}/{len(problems) * v.samples} correct")
    return out


# -------------------------------------------------------------------------------------------- training

def _train(model, tokenizer, examples, steps, batch_size, seq_len, lr, min_lr, warmup, weight_decay, out_dir,
           seed, progress, save_every=0, loss_fn=None, resume=None):
    from slm.finetune import SFTBatches
    from slm.train import TrainConfig, Trainer

    batches = SFTBatches(examples, seq_len=seq_len, batch_size=batch_size, pad_id=tokenizer.pad_token_id,
                         pack=True, seed=seed)
    config = TrainConfig(max_steps=steps, lr=lr, min_lr=min_lr, warmup_steps=warmup, weight_decay=weight_decay,
                         betas=(0.9, 0.95), seed=seed, log_every=max(1, steps // 10), save_every=save_every,
                         keep_last=0, progress=progress, device="cpu" if not _cuda() else "auto")
    trainer = Trainer(model, config, batches, out_dir=out_dir, tokenizer=tokenizer, loss_fn=loss_fn)
    result = trainer.fit(resume=resume)
    return trainer, result


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def run_seed(cfg: TinyGSMConfig, seed: int, out_dir: Path) -> dict:
    import torch

    from slm.recipes.tinygsm.selection import Sample, selection_metrics
    from slm.recipes.tinygsm.verifier import score

    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 1)
        clock = now

    workers = cfg.sandbox_workers or None
    random.seed(seed)
    torch.manual_seed(seed)
    data = build_data(cfg, seed)
    train, verifier_qs, test = data["train"], data["verifier"], data["test"]
    _say(f"seed {seed}: {len(train)} training problems ({data['report'].summary()}), "
         f"{len(verifier_qs)} verifier questions, {len(test)} test problems from held-out templates")
    lap("data")
    generator, tokenizer, gen_result = _train_generator(cfg, seed, out_dir, train)
    lap("generator_training")
    verifier, verifier_info = _train_verifier(cfg, seed, out_dir, generator, tokenizer, verifier_qs, train, lap)

    # ---- test: greedy, N samples, execution, verifier scores
    e = cfg.eval
    greedy = labelled_samples(generator, tokenizer, test, 1, 0.0, e.max_tokens, seed, e.batch_size, workers)
    greedy_ok = [row[0][2] for row in greedy]
    sampled = labelled_samples(generator, tokenizer, test, e.n_samples, e.temperature, e.max_tokens,
                               seed=seed * 104729 + 1, batch_size=e.batch_size, workers=workers)
    lap("test_sampling")
    sequences = [encode_prompt(tokenizer, p.question) + c.token_ids for p, row in zip(test, sampled) for c, _, _ in row]
    scores = iter(score(verifier, sequences, pad_id=tokenizer.pad_token_id))
    per_question = [[Sample(r.value, ok, next(scores)) for _, r, ok in row] for row in sampled]
    metrics = selection_metrics(per_question, [p.answer for p in test], greedy_ok)
    lap("test_scoring")
    from slm.io import atomic_write_text

    atomic_write_text(out_dir / "test_samples.jsonl", "".join(
        json.dumps({"question": p.question, "answer": p.answer, "template": p.template, "greedy_correct": g,
                    "samples": [[s.value, s.correct, round(s.score, 5)] for s in row]}) + "\n"
        for p, g, row in zip(test, greedy_ok, per_question)))
    result = {"seed": seed, "metrics": metrics, "n_samples": e.n_samples, "test_problems": len(test),
              "train_problems": len(train), "filter_report": asdict(data["report"]),
              "template_leaks": data["template_leaks"], "templates": data["templates"],
              "verifier_questions": len(verifier_qs), **verifier_info,
              "generator_final_loss": gen_result.get("loss"), "parameters": generator.num_parameters(),
              "seconds": timings, "run_config": _run_config(cfg)}
    atomic_write_text(out_dir / "results.json", json.dumps(result, indent=2) + "\n")
    return result


def _train_generator(cfg: TinyGSMConfig, seed: int, out_dir: Path, train):
    """Tokenizer + SFT with evenly spaced checkpoints; resumed from them when they exist."""
    import slm
    from slm.models import Decoder, ModelConfig
    from slm.train import checkpoint as ckpt

    gen_dir = out_dir / "generator"
    finished = ckpt.list_checkpoints(gen_dir)
    if finished:  # an interrupted or repeated run continues the generator (and keeps its tokenizer)
        tokenizer = slm.load_tokenizer(finished[-1][1])
        _say(f"seed {seed}: resuming the generator from {finished[-1][1]}")
    else:
        tokenizer = slm.train_tokenizer([p.code for p in train], vocab_size=cfg.model.vocab_size, kind="byte-bpe",
                                        split_digits=cfg.model.split_digits)
    m = cfg.model
    model_cfg = ModelConfig(arch="llama", vocab_size=len(tokenizer), dim=m.dim, n_layers=m.n_layers,
                            n_heads=m.n_heads, n_kv_heads=m.n_kv_heads, ffn_dim=m.ffn_dim, max_seq_len=m.max_seq_len,
                            tie_embeddings=True, eos_token_id=tokenizer.eos_token_id,
                            pad_token_id=tokenizer.pad_token_id)
    generator = Decoder(model_cfg).init_weights(seed)
    g = cfg.generator
    every = math.ceil(g.steps / g.checkpoints)
    _, gen_result = _train(generator, tokenizer, sft_examples(train, tokenizer), g.steps, g.batch_size, g.seq_len,
                           g.lr, g.min_lr, g.warmup_steps, g.weight_decay, gen_dir, seed, cfg.progress,
                           save_every=every, resume="auto" if finished else None)
    generator.eval()
    # From here on, the tokenizer is the one saved next to the weights: fresh and resumed runs then sample
    # through exactly the same files.
    tokenizer = slm.load_tokenizer(ckpt.list_checkpoints(gen_dir)[-1][1])
    slm.save(generator, tokenizer, out_dir / "generator-final")
    return generator, tokenizer, gen_result


def _train_verifier(cfg: TinyGSMConfig, seed: int, out_dir: Path, generator, tokenizer, verifier_qs, train, lap):
    """Samples from every generator checkpoint at each temperature, labelled by execution; then the verifier.
    A verifier that finished with the same settings (out_dir/verifier + verifier.json) is reused."""
    from slm.recipes.tinygsm.verifier import Verifier, verifier_example, verifier_loss

    v = cfg.verifier
    marker = out_dir / "verifier-settings.json"
    settings = {"verifier": asdict(v), "run": _run_config(cfg)}
    if marker.is_file() and json.loads(marker.read_text()).get("settings") == settings:
        _say(f"seed {seed}: reusing the verifier in {out_dir / 'verifier'}")
        return Verifier.load(out_dir / "verifier"), json.loads(marker.read_text())["info"]
    workers = cfg.sandbox_workers or None
    prompts = [encode_prompt(tokenizer, p.question) for p in verifier_qs]
    labelled = verifier_samples(cfg, seed, out_dir / "generator", tokenizer, verifier_qs, workers)
    verifier_examples = [verifier_example(prompts[i], c.token_ids, ok, source) for i, c, ok, source in labelled]
    correct_count = sum(ok for _, _, ok, _ in labelled)
    if v.contrast_pairs:
        from slm.recipes.tinygsm.negatives import contrast_pairs

        pairs = contrast_pairs(list(verifier_qs) + list(train), v.contrast_pairs, seed, workers)
        for question, body, ok in pairs:
            verifier_examples.append(verifier_example(encode_prompt(tokenizer, question),
                                                      encode_completion(tokenizer, body), ok, "contrast"))
            correct_count += ok
        _say(f"seed {seed}: {len(pairs)} contrast examples ({sum(ok for *_, ok in pairs)} gold programs)")
    positive = correct_count / max(len(verifier_examples), 1)
    _say(f"seed {seed}: {len(verifier_examples)} verifier samples, {positive:.1%} correct")
    lap("verifier_data")
    verifier = Verifier.from_generator(generator)
    _train(verifier, tokenizer, verifier_examples, v.steps, v.batch_size, v.seq_len, v.lr, v.min_lr, v.warmup_steps,
           v.weight_decay, out_dir / "verifier-run", seed, cfg.progress, loss_fn=verifier_loss)
    verifier.eval()
    verifier.save(out_dir / "verifier", tokenizer)
    info = {"verifier_samples": len(verifier_examples), "verifier_positive_rate": positive}
    marker.write_text(json.dumps({"settings": settings, "info": info}) + "\n")
    lap("verifier_training")
    return verifier, info


def _seed_job(cfg: TinyGSMConfig, seed: int) -> dict:
    import torch

    threads = cfg.threads or max(1, (os.cpu_count() or 1) // min(cfg.jobs, len(cfg.seeds)))
    torch.set_num_threads(threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    out_dir = Path(cfg.out_dir) / f"seed-{seed}"
    done = out_dir / "results.json"
    if done.is_file() and json.loads(done.read_text()).get("run_config") == _run_config(cfg):
        _say(f"seed {seed}: reusing {done} (same settings; delete it to run the seed again)")
        result = json.loads(done.read_text())
    else:
        result = run_seed(cfg, seed, out_dir)
    _say(f"seed {seed}: " + ", ".join(f"{k} {v:.3f}" for k, v in result["metrics"].items())
         + f" ({sum(result['seconds'].values()):.0f}s)")
    return result


def _run_config(cfg: TinyGSMConfig) -> dict:
    """The settings that decide a seed's numbers (not where it runs, how parallel, or which other seeds)."""
    settings = asdict(cfg)
    for key in ("seeds", "out_dir", "threads", "jobs", "sandbox_workers", "progress"):
        settings.pop(key)
    return settings


def run(cfg: TinyGSMConfig) -> dict:
    root = Path(cfg.out_dir)
    root.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if cfg.jobs > 1 and len(cfg.seeds) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("spawn")  # no forked torch or tokenizer thread state
        with ProcessPoolExecutor(min(cfg.jobs, len(cfg.seeds)), mp_context=context) as pool:
            per_seed = list(pool.map(_seed_job, [cfg] * len(cfg.seeds), cfg.seeds))
    else:
        per_seed = [_seed_job(cfg, seed) for seed in cfg.seeds]
    summary = summarize(per_seed)
    summary["config"] = asdict(cfg)
    summary["seconds"] = round(time.perf_counter() - start, 1)
    from slm.io import atomic_write_text

    atomic_write_text(root / "results.json", json.dumps(summary, indent=2) + "\n")
    return summary


def summarize(per_seed: list[dict]) -> dict:
    """Mean and standard deviation over seeds of every metric, plus the per-seed numbers."""
    table = {}
    for name in METRICS:
        values = [r["metrics"][name] for r in per_seed]
        table[name] = {"mean": statistics.fmean(values),
                       "std": statistics.stdev(values) if len(values) > 1 else 0.0, "values": values}
    return {"table": table, "seeds": per_seed}


def format_table(summary: dict) -> str:
    seeds = summary["seeds"]
    n = seeds[0]["n_samples"] if seeds else 0
    lines = [f"held-out templates: {seeds[0]['test_problems'] if seeds else 0} problems x {len(seeds)} seed(s), "
             f"N = {n}", "", f"| {'selector':<12} | {'accuracy (mean ± std)':<22} | per seed |",
             f"|{'-' * 14}|{'-' * 24}|----------|"]
    for name in METRICS:
        row = summary["table"][name]
        label = name.replace("@N", f"@{n}")
        per = " ".join(f"{v:.3f}" for v in row["values"])
        lines.append(f"| {label:<12} | {row['mean']:.3f} ± {row['std']:.3f}{'':<9} | {per} |")
    return "\n".join(lines)
