"""Instruction tasks as FLAN writes them: examples (fields) phrased by several templates, classification with an
`OPTIONS:` list, chain-of-thought targets, and the metadata the mixtures and held-out splits read.

    task = Task("docstring_match", cluster="nli", metric="rank_classification", options_field="options",
                examples=[{"doc": ..., "code": ..., "answer": "yes", "options": ["yes", "no"]}, ...],
                templates=[Template("{{code}}\n\nDoes the docstring describe it? {{doc}}", "{{answer}}"), ...])
    render(task, example, template=2, seed=0)   # -> Rendered(input, target, options, ...)

Templates are Jinja over the example's fields. A template that "turns the task around" (FLAN: up to 3 of 10)
is marked `turned=True`; it makes a new task out of the same fields (e.g. write the code for a docstring) and is
left out of evaluation. Rendering is a pure function of (seed, task, example index, template, variant): the
option format (FLAN's randomised `OPTIONS:` headers and bullets) comes from a generator seeded by them.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

from slm.errors import ConfigError

Metric = Literal["exact_match", "rank_classification", "rougeL"]
# Flan 2022's option formats, a few of each: the header and how each option is listed.
OPTION_HEADERS = ("OPTIONS:", "Options:", "Choose from:", "Pick your answer from:", "Possible answers:",
                  "Select from the following.")
OPTION_BULLETS = ("- ", "* ", "({letter}) ", "{letter}. ", "[{number}] ")
COT_TRIGGERS = ("Let's think step by step.", "Step-by-step reasoning process:", "Think it through, then answer.")


@dataclass(frozen=True)
class Template:
    input: str
    target: str = "{{answer}}"
    turned: bool = False  # turns the task around: a different task from the same fields


@dataclass
class Task:
    name: str
    cluster: str
    metric: Metric
    examples: list[dict]
    templates: list[Template]
    options_field: str | None = None  # classification: the field with the options (the target is one of them)
    cot_field: str | None = None  # chain of thought: the field with the reasoning before "The answer is X"
    overlaps: tuple[str, ...] = ()  # tasks sharing data with this one: removed from training when it is held out

    def __post_init__(self):
        if not self.templates:
            raise ConfigError(f"task {self.name}: give at least one template")
        if not any(not t.turned for t in self.templates):
            raise ConfigError(f"task {self.name}: every template turns the task around; keep one that does not")
        if self.metric == "rank_classification" and not self.options_field:
            raise ConfigError(f"task {self.name}: rank classification needs options_field")

    @property
    def eval_templates(self) -> list[int]:
        return [i for i, t in enumerate(self.templates) if not t.turned]


@dataclass(frozen=True)
class Rendered:
    input: str
    target: str
    task: str
    template: int
    options: tuple[str, ...] = ()  # the options, in their listed order (empty without OPTIONS)
    answer: str = ""  # the gold answer (for CoT: the final answer, not the reasoning)
    exemplars: int = 0  # few-shot examples prepended


@lru_cache(maxsize=512)
def _compile(source: str):
    import jinja2

    try:
        return jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True).from_string(source)
    except jinja2.TemplateSyntaxError as e:
        raise ConfigError(f"bad template {source[:40]!r}: {e}") from None


def fill(source: str, example: dict) -> str:
    import jinja2

    try:
        return _compile(source).render(**example)
    except jinja2.UndefinedError as e:
        raise ConfigError(f"template {source[:40]!r}: {e} (fields: {', '.join(example)})") from None


def format_options(options: list[str], rng: random.Random) -> str:
    header = rng.choice(OPTION_HEADERS)
    bullet = rng.choice(OPTION_BULLETS)
    lines = [bullet.format(letter="ABCDEFGHIJ"[i % 10], number=i + 1) + o for i, o in enumerate(options)]
    return header + "\n" + "\n".join(lines)


def _rng(seed: int, task: str, index: int, template: int, salt: str = "") -> random.Random:
    return random.Random(f"{seed}:{task}:{index}:{template}:{salt}")


def render(task: Task, index: int, template: int, seed: int = 0, *, with_options: bool = True,
           cot: bool | None = None) -> Rendered:
    """Example `index` of `task` through template `template`. Classification appends the options (in a format
    drawn per example) unless with_options is False; a CoT task's target is `{reasoning}\\nThe answer is X.`
    (cot None: whenever the task has reasoning), and its input ends with a CoT trigger."""
    example = task.examples[index]
    t = task.templates[template]
    rng = _rng(seed, task.name, index, template)
    text = fill(t.input, example)
    target = fill(t.target, example)
    answer = target
    options: tuple[str, ...] = ()
    if task.options_field and with_options and not t.turned:
        options = tuple(example[task.options_field])
        text = f"{text}\n\n{format_options(list(options), rng)}"
    use_cot = (task.cot_field is not None) if cot is None else cot
    if use_cot and task.cot_field and not t.turned:
        text = f"{text}\n\n{rng.choice(COT_TRIGGERS)}"
        target = f"{example[task.cot_field]}\nThe answer is {answer}."
    return Rendered(text, target, task.name, template, options, answer)


def with_exemplars(task: Task, index: int, template: int, shots: int, seed: int = 0, **kwargs) -> Rendered:
    """Few-shot: `shots` other examples of the same task and template, rendered with their targets, before it."""
    if shots <= 0:
        return render(task, index, template, seed, **kwargs)
    rng = _rng(seed, task.name, index, template, "shots")
    pool = [i for i in range(len(task.examples)) if i != index]
    picked = rng.sample(pool, min(shots, len(pool)))
    parts = [render(task, i, template, seed, **kwargs) for i in picked]
    final = render(task, index, template, seed, **kwargs)
    prefix = "\n\n".join(f"{p.input}\n{p.target}" for p in parts)
    return Rendered(f"{prefix}\n\n{final.input}", final.target, task.name, template, final.options, final.answer,
                    exemplars=len(parts))


@dataclass
class Collection:
    """Tasks by name, with their clusters."""
    tasks: dict[str, Task] = field(default_factory=dict)

    def add(self, task: Task) -> None:
        if task.name in self.tasks:
            raise ConfigError(f"task {task.name!r} is defined twice")
        self.tasks[task.name] = task

    @property
    def clusters(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for t in self.tasks.values():
            out.setdefault(t.cluster, []).append(t.name)
        return out

    def subset(self, names) -> "Collection":
        return Collection({n: self.tasks[n] for n in names})


def load_user_task(spec_path, base_dir=None) -> Task:
    """A task from YAML: {name, cluster, metric, data: file.jsonl, templates: [{input, target, turned}], options_field,
    cot_field, overlaps}. Relative data paths start at the YAML's folder."""
    from pathlib import Path

    import yaml

    from slm.config import build
    from slm.io import iter_jsonl

    path = Path(spec_path)
    if not path.is_file():
        raise ConfigError(f"task file not found: {path}")
    spec = yaml.safe_load(path.read_text()) or {}
    if not isinstance(spec, dict) or "data" not in spec or "templates" not in spec:
        raise ConfigError(f"{path}: a task YAML needs name, cluster, metric, data and templates")
    data = Path(base_dir or path.parent) / spec.pop("data")
    if not data.is_file():
        raise ConfigError(f"{path}: data file not found: {data}")
    examples = [row for _, row in iter_jsonl(data, what="task data")]
    templates = [build(Template, t, f"{path}: templates[{i}]") for i, t in enumerate(spec.pop("templates"))]
    spec["overlaps"] = tuple(spec.get("overlaps", ()))
    return Task(examples=examples, templates=templates, **spec)
