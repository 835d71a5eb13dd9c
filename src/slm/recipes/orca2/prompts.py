"""Orca 2's prompts: strategies, task families with their detailed instructions, and prompt erasure.

    prompts = load_prompts()                                 # the packaged prompts.yaml, plus user files
    prompts.teacher_messages(family, question)               # the family's detailed instruction as the system turn
    prompts.training_messages(family, question, answer, erase=True)   # the generic system message instead
    prompts.inference_messages(question, system="cautious")  # what the student is asked with
    prompts.shown_strategy(text)                             # which strategy an answer shows (its `shows` pattern)

A strategy says what an answer in it looks like (`shows`, a regex; the first matching strategy in file order
is the one an answer shows, so the loosest, `direct`, comes last), how the scripted teacher writes one from an
item's fields (`scripted`), and the generic instruction that asks for it (used when one strategy is imposed on
every family). A family adds the detailed, task-specific instruction the teacher is given.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from slm.errors import ConfigError

PACKAGED = Path(__file__).with_name("prompts.yaml")
CHECKS = ("number", "key")


@dataclass
class Strategy:
    name: str
    shows: str
    scripted: str
    instruction: str

    def __post_init__(self):
        try:
            self.pattern = re.compile(self.shows)
        except re.error as e:
            raise ConfigError(f"strategy {self.name!r}: `shows` is not a valid regex: {e}") from None


@dataclass
class Family:
    name: str
    source: str
    strategy: str
    check: str
    instruction: str


@dataclass
class Prompts:
    generic_system: str
    cautious_system: str
    strategies: dict[str, Strategy] = field(default_factory=dict)
    families: dict[str, Family] = field(default_factory=dict)

    def teacher_messages(self, family: Family, question: str, strategy: str | None = None) -> list[dict]:
        """The teacher's request: the family's detailed instruction, or the generic instruction of `strategy`."""
        system = self.strategies[strategy].instruction if strategy else family.instruction
        return [{"role": "system", "content": system}, {"role": "user", "content": question}]

    def training_messages(self, family: Family, question: str, answer: str, erase: bool,
                          strategy: str | None = None) -> list[dict]:
        """A training chat; `erase` replaces the instruction the answer was written under with the generic one."""
        system, user = self.teacher_messages(family, question, strategy)
        if erase:
            system = {"role": "system", "content": self.generic_system}
        return [system, user, {"role": "assistant", "content": answer}]

    def inference_messages(self, question: str, system: str = "generic") -> list[dict]:
        """The student's prompt under the generic or the cautious system message (or a literal one)."""
        text = {"generic": self.generic_system, "cautious": self.cautious_system}.get(system, system)
        return [{"role": "system", "content": text}, {"role": "user", "content": question}]

    def shown_strategy(self, text: str) -> str:
        """The first strategy whose pattern the answer matches, or "other"."""
        for name, strategy in self.strategies.items():
            if strategy.pattern.search(text.strip()):
                return name
        return "other"

    def scripted_answer(self, strategy: str, item: dict) -> str:
        """A correct answer in `strategy`'s shape from the item's fields (steps are numbered here)."""
        steps = "\n".join(f"Step {i}: {s}" for i, s in enumerate(item.get("steps") or [], 1))
        try:
            return self.strategies[strategy].scripted.format(**{**item, "steps": steps})
        except KeyError as e:
            raise ConfigError(f"strategy {strategy!r} needs the item field {e}; the item has "
                              f"{', '.join(sorted(item))}") from None


def _merge(prompts: Prompts | None, data: dict, where: str) -> Prompts:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: a prompts file is a mapping (generic_system, cautious_system, strategies, "
                          "families)")
    unknown = set(data) - {"generic_system", "cautious_system", "strategies", "families"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}")
    if prompts is None:
        prompts = Prompts(generic_system="", cautious_system="")
    for key in ("generic_system", "cautious_system"):
        if key in data:
            setattr(prompts, key, str(data[key]).strip())
    try:
        for name, spec in (data.get("strategies") or {}).items():
            prompts.strategies[name] = Strategy(name=name, **spec)
        for spec in data.get("families") or []:
            family = Family(**spec)
            prompts.families[family.name] = family
    except TypeError as e:
        raise ConfigError(f"{where}: {e}".replace("__init__() ", "")) from None
    # direct (or whatever is loosest) stays last however a user file orders its additions
    for name in [n for n, s in prompts.strategies.items() if s.shows.startswith("^\\s*[^\\n]")]:
        prompts.strategies[name] = prompts.strategies.pop(name)
    return prompts


def load_prompts(files: list[str | Path] = ()) -> Prompts:
    """The packaged prompts, then each user file over them, checked: every family's strategy and check exist."""
    from slm.config import read_yaml

    prompts = None
    for path in [PACKAGED, *files]:
        prompts = _merge(prompts, read_yaml(path, "prompts file"), str(path))
    for family in prompts.families.values():
        if family.strategy not in prompts.strategies:
            raise ConfigError(f"family {family.name!r}: unknown strategy {family.strategy!r}; known: "
                              f"{', '.join(prompts.strategies)}")
        if family.check not in CHECKS:
            raise ConfigError(f"family {family.name!r}: check must be one of {', '.join(CHECKS)}, "
                              f"got {family.check!r}")
    return prompts
