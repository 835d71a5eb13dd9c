"""Evaluation tasks defined in YAML over local JSONL files; prompts rendered with Jinja, as lm-eval's are.

    tasks:
      - name: arith
        kind: generate                  # perplexity | multiple_choice | generate | classification | code
                                        # | sequence_classification (an encoder's classifier head)
        data: arith.jsonl               # relative to this YAML file
        doc_to_text: "Q: {{question}}\\nA:"
        doc_to_target: "{{answer}}"
        num_fewshot: 2
        extract: last_number            # none | last_number | regex (with `regex:`)

Few-shot examples come from `fewshot_data` (default: the task's own documents, never the one being asked),
picked by a random generator seeded with (seed, task, document index): the same prompt for a document whatever
`--limit` or the batch size is. Each example is rendered as text + target_delimiter + target, joined by
fewshot_delimiter, followed by the question.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

from slm.errors import ConfigError, SlmError

Kind = Literal["perplexity", "multiple_choice", "generate", "classification", "code", "sequence_classification"]


@dataclass
class TaskSpec:
    name: str
    kind: Kind
    data: str  # JSONL file, one document per line
    doc_to_text: str = "{{text}}"  # the prompt (perplexity: the text to score)
    doc_to_target: str = "{{answer}}"  # generate: the reference; multiple_choice: the gold index or choice text;
    # classification: the gold label; code: the test code run after the program
    choices: str | list[str] = "choices"  # multiple_choice: a field holding the list, or a literal list
    labels: list[str] = field(default_factory=list)  # classification: the label set
    doc_to_pair: str | None = None  # sequence_classification: the second text of a pair task (e.g. "{{text_pair}}")
    verbalizers: dict[str, str] = field(default_factory=dict)  # classification: label -> scored text
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    num_fewshot: int = 0
    fewshot_data: str | None = None
    limit: int | None = None
    # generation (generate, code)
    max_tokens: int = 64
    stop: list[str] | None = None  # default: [fewshot_delimiter]
    temperature: float = 0.0
    extract: Literal["none", "last_number", "regex"] = "none"
    regex: str | None = None
    ignore_case: bool = False
    # code
    program: str = "{{prompt}}{{completion}}\n\n{{test}}\n"  # Jinja over the document plus `completion`
    samples: int = 1  # completions per problem (n of pass@k)
    pass_k: list[int] = field(default_factory=lambda: [1])
    timeout: float = 5.0
    memory_mb: int = 512
    workers: int | None = None
    base_dir: str = ""  # set by the loader: where relative data paths start

    def validate(self) -> None:
        where = f"task {self.name!r}"
        if self.num_fewshot < 0:
            raise ConfigError(f"{where}: num_fewshot must be >= 0")
        if self.kind == "classification" and not self.labels:
            raise ConfigError(f"{where}: a classification task needs `labels`")
        if self.extract == "regex" and not self.regex:
            raise ConfigError(f"{where}: extract: regex needs a `regex` pattern")
        if self.kind == "code" and any(k > self.samples for k in self.pass_k):
            raise ConfigError(f"{where}: pass@k needs samples >= k (samples {self.samples}, pass_k {self.pass_k})")
        if self.samples > 1 and self.temperature == 0:
            raise ConfigError(f"{where}: {self.samples} samples at temperature 0 would all be the same; set temperature")
        for name in ("doc_to_text", "doc_to_target", "program"):
            template(getattr(self, name))  # a syntax error fails here, not mid-run

    def path(self, relative: str) -> Path:
        p = Path(relative)
        return p if p.is_absolute() else Path(self.base_dir) / p

    def documents(self) -> list[dict]:
        docs = read_jsonl(self.path(self.data))
        return docs[:self.limit] if self.limit is not None else docs

    def fewshot_pool(self) -> tuple[list[dict], bool]:
        """(documents to draw examples from, whether they are the task's own documents)."""
        if self.fewshot_data:
            return read_jsonl(self.path(self.fewshot_data)), False
        return read_jsonl(self.path(self.data)), True

    # ---- rendering ----

    def text(self, doc: dict) -> str:
        return render(self.doc_to_text, doc, self.name)

    def target(self, doc: dict) -> str:
        return render(self.doc_to_target, doc, self.name)

    def pair(self, doc: dict) -> str | None:
        """sequence_classification: the pair's second text, when the task has one."""
        return render(self.doc_to_pair, doc, self.name) if self.doc_to_pair else None

    def choice_list(self, doc: dict) -> list[str]:
        if isinstance(self.choices, list):
            return list(self.choices)
        value = doc.get(self.choices)
        if not isinstance(value, list) or not value:
            raise SlmError(f"task {self.name!r}: field {self.choices!r} must hold a non-empty list of choices")
        return [str(v) for v in value]

    def gold_index(self, doc: dict, choices: list[str]) -> int:
        """The gold answer as an index: an integer target, or the target text found among the choices."""
        target = self.target(doc).strip()
        if target.lstrip("-").isdigit() and target not in choices:
            index = int(target)
        elif target in choices:
            index = choices.index(target)
        else:
            raise SlmError(f"task {self.name!r}: target {target!r} is neither an index nor one of {choices}")
        if not 0 <= index < len(choices):
            raise SlmError(f"task {self.name!r}: gold index {index} is out of range for {len(choices)} choices")
        return index

    def verbalize(self, label: str) -> str:
        return self.verbalizers.get(label, label)

    def example_answer(self, doc: dict) -> str:
        """What a few-shot example shows after its prompt."""
        if self.kind == "multiple_choice":
            choices = self.choice_list(doc)
            return choices[self.gold_index(doc, choices)]
        if self.kind == "classification":
            return self.verbalize(self.target(doc).strip())
        if self.kind == "code":
            return str(doc.get("canonical_solution", ""))
        return self.target(doc)

    def prompt(self, doc: dict, index: int, seed: int, num_fewshot: int | None = None) -> str:
        """The question, preceded by `num_fewshot` examples chosen by a generator seeded with (seed, task, index)."""
        k = self.num_fewshot if num_fewshot is None else num_fewshot
        question = self.text(doc)
        if k == 0:
            return question
        pool, own = self.fewshot_pool()
        candidates = [d for i, d in enumerate(pool) if not (own and (i == index or d == doc))]
        if len(candidates) < k:
            raise SlmError(f"task {self.name!r}: {k} few-shot examples asked for but only {len(candidates)} available")
        rng = random.Random(f"{seed}/{self.name}/{index}")
        shots = rng.sample(candidates, k)
        parts = [self.text(d) + self.target_delimiter + self.example_answer(d) for d in shots]
        return self.fewshot_delimiter.join(parts + [question])

    def extract_answer(self, text: str) -> str | None:
        from slm.eval.metrics import last_number, regex_extract

        if self.extract == "last_number":
            return last_number(text)
        if self.extract == "regex":
            found = regex_extract(text, self.regex)
            return None if found is None else found.strip()
        return text.strip()

    def reference(self, doc: dict) -> str | None:
        """The gold answer, normalised as answers are (the last number of the target for last_number)."""
        return self.extract_answer(self.target(doc)) if self.extract == "last_number" else self.target(doc).strip()


def load_tasks(path: str | Path, names: list[str] | None = None, limit: int | None = None) -> list[TaskSpec]:
    """Read a task YAML: a mapping with `tasks:` (a list), a list of tasks, or one task mapping."""
    from slm.config import build, read_yaml

    path = Path(path)
    data = read_yaml(path, "task file")
    items = data.get("tasks", [data]) if isinstance(data, dict) else data
    if not isinstance(items, list) or not all(isinstance(t, dict) for t in items):
        raise ConfigError(f"{path}: expected `tasks:` with a list of task mappings")
    tasks = []
    for i, item in enumerate(items):
        spec = build(TaskSpec, {**item, "base_dir": str(path.parent.resolve())}, where=f"{path.name}: tasks[{i}]")
        if limit is not None:
            spec.limit = limit if spec.limit is None else min(spec.limit, limit)
        spec.validate()
        tasks.append(spec)
    if names:
        unknown = set(names) - {t.name for t in tasks}
        if unknown:
            raise ConfigError(f"{path}: no task named {sorted(unknown)}; tasks: {[t.name for t in tasks]}")
        tasks = [t for t in tasks if t.name in names]
    return tasks


def read_jsonl(path: Path) -> list[dict]:
    return list(_read_jsonl(str(path), path.stat().st_mtime_ns if path.is_file() else 0))


@lru_cache(maxsize=32)
def _read_jsonl(path: str, _mtime: int) -> tuple[dict, ...]:
    from slm.io import iter_jsonl

    return tuple(doc for _, doc in iter_jsonl(path))


@lru_cache(maxsize=256)
def template(source: str):
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as e:
        raise ConfigError(f"template {source!r}: {e.message}") from None


def render(source: str, doc: dict, task: str = "") -> str:
    import jinja2

    try:
        return template(source).render(**doc)
    except jinja2.UndefinedError as e:
        raise SlmError(f"task {task!r}: template {source!r}: {e.message} (document keys: {sorted(doc)})") from None
