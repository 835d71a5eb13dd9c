"""Which teacher a recipe asks, as one config section: the local real model, any endpoint, or a scripted one.

    teacher: {kind: local}                                    # slm serve on SmolLM2-135M-Instruct (the default)
    teacher: {kind: endpoint, base_url: http://host/v1, model: NAME, api_key_env: MY_KEY}
    teacher: {kind: scripted}                                  # no model: the recipe's own deterministic answers

    with open_teacher(cfg.teacher, cache=root / "teacher.sqlite", scripted=answer) as teacher:
        ...
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

from slm.errors import ConfigError
from slm.teach.local import REAL_MODEL

TEACHER_KINDS = ("local", "endpoint", "scripted")


@dataclass
class TeacherSection:
    kind: str = "local"  # local: slm serve on the real model | endpoint: base_url + model | scripted: no model
    base_url: str | None = None
    model: str | None = None
    api_key_env: str | None = None  # the NAME of the variable holding the key
    concurrency: int = 4
    serve_model: str = REAL_MODEL  # what `local` serves


@contextlib.contextmanager
def open_teacher(section: TeacherSection, cache, scripted=None) -> Iterator:
    """A started Teacher for the section; `scripted` is the answer function (body -> text) of kind scripted."""
    from slm.teach import Endpoint, Teacher, local_endpoint

    if section.kind == "scripted":
        from slm.teach.scripted import ScriptedTeacher, echo

        with ScriptedTeacher(scripted or echo, cache=cache, concurrency=section.concurrency) as teacher:
            yield teacher
    elif section.kind == "endpoint":
        if not (section.base_url and section.model):
            raise ConfigError("teacher.kind endpoint needs teacher.base_url and teacher.model")
        with Teacher(Endpoint(section.base_url, section.model, section.api_key_env), cache=cache,
                     concurrency=section.concurrency) as teacher:
            teacher.check()
            yield teacher
    elif section.kind == "local":
        with local_endpoint(section.serve_model) as endpoint, \
                Teacher(endpoint, cache=cache, concurrency=section.concurrency) as teacher:
            yield teacher
    else:
        raise ConfigError(f"teacher.kind must be one of {', '.join(TEACHER_KINDS)}; got {section.kind!r}")
