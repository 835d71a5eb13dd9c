"""Orca 2's progressive learning and its evaluation: stages of SFT, each from the last one's checkpoint, each
resumable; then greedy answers to held-out items under the generic (or cautious) system message.

    final = train_stages(base, [Stage("direct", ["lookup"], 40), Stage("mixed", None, 160)], records, out, ...)
    scores = evaluate_student(final, prompts, held_out, system="generic")

A stage whose final checkpoint exists is skipped; one that stopped part way resumes from its newest checkpoint
(slm.train's exact resume), so an interrupted recipe reruns only what it had not finished.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from slm.errors import ConfigError


@dataclass
class Stage:
    name: str
    families: list[str] | None = None  # None: every family
    steps: int = 100


@dataclass
class FinetuneSection:
    batch_size: int = 8
    lr: float = 1e-3
    warmup_steps: int = 10
    save_every: int = 0
    seq_len: int | None = None  # None: the longest example, rounded up to 64


def train_stages(base: Path, stages: list[Stage], records: dict[str, list[dict]], out: Path, seed: int,
                 settings: FinetuneSection, say=lambda *_: None) -> Path:
    """The checkpoint after the last stage; `records` are the training chats of each family."""
    from slm.finetune.run import build_config, finetune
    from slm.io import atomic_write_jsonl
    from slm.train.checkpoint import step_dir

    current = Path(base)
    for index, stage in enumerate(stages, 1):
        stage_out = out / f"stage-{index}-{stage.name}"
        final = step_dir(stage_out, stage.steps)
        if (final / "config.json").is_file():
            current = final
            continue
        unknown = set(stage.families or ()) - set(records)
        if unknown:
            raise ConfigError(f"stage {stage.name!r}: unknown families {sorted(unknown)}; known: {', '.join(records)}")
        chats = [r for name in (stage.families or list(records)) for r in records[name]]
        if not chats:
            raise ConfigError(f"stage {stage.name!r} has no training chats (every teacher answer failed its check?)")
        stage_out.mkdir(parents=True, exist_ok=True)
        data = stage_out / "train.jsonl"
        atomic_write_jsonl(data, chats)
        s = settings
        ft_cfg, train_cfg = build_config({
            "model": str(current), "out": str(stage_out),
            "data": {"path": str(data), "batch_size": s.batch_size, "seed": seed, "seq_len": s.seq_len},
            "train": {"max_steps": stage.steps, "lr": s.lr, "min_lr": s.lr / 10, "warmup_steps": s.warmup_steps,
                      "seed": seed, "progress": False, "keep_last": 1, "save_every": s.save_every,
                      "log_every": max(1, stage.steps // 5)},
        })
        current = Path(finetune(ft_cfg, train_cfg, resume="auto", say=say)["checkpoint"])
    return current


def student_prompts(tokenizer, prompts, items: list[dict], system: str = "generic") -> list[str]:
    """The held-out questions as the student is asked them: ChatML under the generic or cautious system message."""
    return [tokenizer.apply_chat_template(prompts.inference_messages(item["question"], system), tokenize=False,
                                          add_generation_prompt=True) for item in items]


def evaluate_student(checkpoint: Path, prompts, held_out: dict[str, list[dict]], system: str = "generic",
                     max_tokens: int = 64, batch_size: int = 16) -> dict:
    """{family: {accuracy, strategy_match, shown: {strategy: count}}} of greedy answers to the held-out items."""
    import slm
    from slm.eval.harness import generate_texts
    from slm.eval.tasks import TaskSpec
    from slm.recipes.orca2.families import correct

    model, tokenizer = slm.load(checkpoint)
    asked = [(name, item) for name, items in held_out.items() for item in items]
    texts = student_prompts(tokenizer, prompts, [item for _, item in asked], system)
    spec = TaskSpec(name="orca2", kind="generate", data="", max_tokens=max_tokens, stop=["<|im_end|>"])
    outputs = [o[0] for o in generate_texts(model, tokenizer, texts, spec, batch_size=batch_size, seed=0)]
    scores: dict = {}
    for (name, item), text in zip(asked, outputs):
        family = prompts.families[name]
        s = scores.setdefault(name, {"n": 0, "correct": 0, "matched": 0, "shown": {}})
        shown = prompts.shown_strategy(text)
        s["n"] += 1
        s["correct"] += correct(text, item, family.check)
        s["matched"] += shown == family.strategy
        s["shown"][shown] = s["shown"].get(shown, 0) + 1
    for s in scores.values():
        s["accuracy"], s["strategy_match"] = s["correct"] / s["n"], s["matched"] / s["n"]
    return scores
