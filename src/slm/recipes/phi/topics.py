"""Topic seeds and prompts, Cosmopedia-style: topics x audiences x styles, each prompt seeded with a real extract.

    topics = stdlib_topics(files=400)                     # modules and their documented functions and classes
    topics += file_topics("my-topics.txt")                # one topic a line: "name: what it is about"
    train, held_out = split_topics(topics, 0.2)           # held out by module: never seeds, never raw training text
    prompt = make_prompt(topic, audience, style, seed=0)  # the same (seed, topic, audience, style) -> the same prompt

A topic is a name, a one-line description and an extract (real text the prompt quotes). From the standard
library: each module with a docstring (the module's description, its docstring as the extract) and each public
top-level function or class with a docstring (its first line, its source as the extract). A prompt quotes a
window of the extract chosen by a generator seeded with (seed, topic, audience, style), so the same four give
the same prompt on every machine, and changing any of them moves the window as Cosmopedia's varied web extracts do.
"""
from __future__ import annotations

import ast
import hashlib
import random
import re
from dataclasses import dataclass
from pathlib import Path

from slm.errors import SlmError

AUDIENCES = ["young children", "high-school students", "college students", "professional programmers"]
STYLES = {
    "textbook": "Write a section of a textbook for {audience} about {topic}. Explain the idea step by step with "
                "a small example.",
    "exercise": "Write one exercise for {audience} about {topic}, then its worked solution under a line "
                "'Solution:'.",
    "story": "Write a short story for {audience} in which the characters learn about {topic}.",
    "qa": "Write three questions {audience} might ask about {topic}, each followed by a clear answer, as "
          "'Q:' and 'A:' lines.",
}
EXTRACT_CHARS = 400  # the window of the extract one prompt quotes


@dataclass(frozen=True)
class Topic:
    name: str         # "json" or "json.dumps"
    description: str  # one line: what it is
    extract: str      # real text the prompt is seeded with
    group: str        # the module it comes from: what holding out splits on

    @property
    def phrase(self) -> str:
        return f"{self.name} ({self.description})" if self.description else self.name


def _first_line(doc: str) -> str:
    line = doc.strip().split("\n\n")[0].replace("\n", " ")
    return re.sub(r"\s+", " ", line).strip()[:160]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts) or path.stem


def topics_of_source(text: str, module: str) -> list[Topic]:
    """The module (when it has a docstring) and its public documented top-level functions and classes."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return []
    out = []
    doc = ast.get_docstring(tree)
    if doc and _first_line(doc):
        out.append(Topic(module, _first_line(doc), doc.strip(), module))
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
            doc = ast.get_docstring(node)
            segment = ast.get_source_segment(text, node) or ""
            if doc and _first_line(doc) and segment:
                out.append(Topic(f"{module}.{node.name}", _first_line(doc), segment, module))
    return out


def stdlib_topics(files: int | None = None) -> list[Topic]:
    """Topics of the first `files` standard-library files (the same files the raw corpus is read from)."""
    from slm.data.sources import stdlib_dir, stdlib_files

    root = stdlib_dir()
    topics = []
    for path in stdlib_files(files):
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        topics.extend(topics_of_source(text, module_name(path, root)))
    return topics


def file_topics(path: str | Path) -> list[Topic]:
    """A user's topic file: one topic a line, `name` or `name: description`; blank lines and # comments skipped.
    The description is the extract too (a user topic has no source to quote)."""
    path = Path(path)
    if not path.is_file():
        raise SlmError(f"topic file not found: {path}")
    topics = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, description = (part.strip() for part in line.partition(":"))
        if not name:
            raise SlmError(f"{path}:{number}: a topic line needs a name before ':'")
        topics.append(Topic(name, description, description or name, f"user:{name}"))
    return topics


def _unit(*parts) -> float:
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def split_topics(topics: list[Topic], held_out_fraction: float, seed: str = "slm-phi") -> tuple[list[Topic], list[Topic]]:
    """(seed topics, held-out topics), split by module with a hash: a module's topics all go one way, and the
    split does not depend on the order or the number of files read."""
    held = {t.group for t in topics if _unit(seed, t.group) < held_out_fraction}
    return [t for t in topics if t.group not in held], [t for t in topics if t.group in held]


def held_out_groups(topics: list[Topic], held_out_fraction: float, seed: str = "slm-phi") -> set[str]:
    return {t.group for t in topics if _unit(seed, t.group) < held_out_fraction}


def extract_window(extract: str, rng: random.Random, chars: int = EXTRACT_CHARS) -> str:
    """A window of about `chars` characters of the extract, starting at a line the generator picks."""
    if len(extract) <= chars:
        return extract.strip()
    starts = [0] + [m.end() for m in re.finditer(r"\n", extract[: len(extract) - chars // 2])]
    start = rng.choice(starts)
    return extract[start:start + chars].strip()


@dataclass(frozen=True)
class Prompt:
    topic: str
    audience: str
    style: str
    seed: int
    extract: str
    text: str  # the user message sent to the teacher

    def messages(self) -> list[dict]:
        return [{"role": "system", "content": "You are a patient teacher who writes clear, correct lessons."},
                {"role": "user", "content": self.text}]


def make_prompt(topic: Topic, audience: str, style: str, seed: int = 0) -> Prompt:
    """The prompt for (seed, topic, audience, style): the style's instruction, seeded with an extract window."""
    if style not in STYLES:
        raise SlmError(f"unknown style {style!r}; choose from {', '.join(STYLES)}")
    rng = random.Random(f"{seed}\x1f{topic.name}\x1f{audience}\x1f{style}")
    extract = extract_window(topic.extract, rng)
    instruction = STYLES[style].format(audience=audience, topic=topic.phrase)
    text = (f"Here is an extract from the Python standard library:\n\n{extract}\n\n"
            f"{instruction} Do not copy the extract; teach the idea behind it.")
    return Prompt(topic.name, audience, style, seed, extract, text)


def prompt_plan(topics: list[Topic], n: int, audiences: list[str], styles: list[str], seed: int = 0,
                n_seeds: int | None = None) -> list[Prompt]:
    """n prompts: prompt i takes topic i mod n_seeds (the first n_seeds topics of a seeded shuffle; all by
    default) and an audience and style drawn for i, so the plan for fewer topic seeds shares its first prompts
    with the full plan (and their answers, through the teacher's cache)."""
    if not topics:
        raise SlmError("no topic seeds: the corpus and topic files gave none")
    order = list(topics)
    random.Random(f"slm-phi-topics-{seed}").shuffle(order)
    order = order[: n_seeds or len(order)]
    prompts = []
    for i in range(n):
        rng = random.Random(f"slm-phi-plan-{seed}-{i}")
        rounds = i // len(order)  # a topic's second visit quotes another window of its extract
        prompts.append(make_prompt(order[i % len(order)], rng.choice(audiences), rng.choice(styles),
                                   seed * 1000 + rounds))
    return prompts
