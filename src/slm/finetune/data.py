"""SFT data: JSONL conversations or prompt/completion pairs, rendered through the tokenizer's chat template.

One record per line, in either common shape:

    {"messages": [{"role": "system", "content": "..."}, {"role": "user", ...}, {"role": "assistant", ...}]}
    {"prompt": "...", "completion": "...", "system": "..."}          (system optional)

(prompt/completion may also be lists of messages, TRL's "conversational" form). Each record becomes an
`SFTExample`: token ids and labels that are ALREADY SHIFTED (labels[t] is the target of position t, -100
where no loss is taken), so the trainer's loss is a plain cross-entropy. By default only assistant tokens
are targets; `train_on="all"` makes every next token a target.

Which tokens are the assistant's is read from the template in one of two ways, and `Renderer.path` says which:
  - "generation-markers": the template wraps assistant text in {% generation %} ... {% endgeneration %}
    (slm's ChatML does), and transformers returns the assistant-token mask directly;
  - "prefix-diff": any other template. Render messages[:i] (with the generation prompt) and messages[:i+1];
    the characters between them are assistant turn i, mapped to tokens through the offset mapping.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Literal

from slm.errors import SlmError

ROLES = ("system", "user", "assistant")
IGNORE = -100
OnBadLine = Literal["error", "skip"]
TrainOn = Literal["assistant", "all"]
_GENERATION_TAG = re.compile(r"{%-?\s*generation\s*-?%}")


@dataclass
class SFTExample:
    input_ids: list[int]
    labels: list[int]  # shifted: labels[t] is the target of position t; -100 = no loss
    source: str = ""  # "file:line", for messages about this example

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def num_targets(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)

    def truncated(self, length: int) -> "SFTExample":
        """The first `length` tokens, learning only what those tokens contain (the last target is cut too)."""
        if len(self) <= length:
            return self
        return SFTExample(self.input_ids[:length], self.labels[:length - 1] + [IGNORE], self.source)


@dataclass
class BadLine:
    where: str  # "file:line"
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


@dataclass
class LoadReport:
    """What reading a JSONL file did, so that nothing is dropped silently."""

    records: int = 0
    bad: list[BadLine] = field(default_factory=list)
    path: str = ""  # which rendering path found the assistant tokens

    def summary(self) -> str:
        s = f"{self.records} record(s) read"
        if self.bad:
            s += f", {len(self.bad)} malformed line(s) skipped"
        return s + (f"; assistant tokens found by {self.path}" if self.path else "")


# ---------------------------------------------------------------------------------------------- records


def record_to_messages(record) -> list[dict]:
    """A parsed JSON record -> a validated list of {"role", "content"} messages; ValueError says what is wrong."""
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    if "messages" in record:
        messages = record["messages"]
        if not isinstance(messages, list):
            raise ValueError("'messages' must be a list of {role, content} objects")
    elif "prompt" in record and "completion" in record:
        prompt, completion = record["prompt"], record["completion"]
        if isinstance(prompt, str) and isinstance(completion, str):
            messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]
        elif isinstance(prompt, list) and isinstance(completion, list):
            messages = prompt + completion  # TRL's conversational prompt/completion
        else:
            raise ValueError("'prompt' and 'completion' must both be strings or both be lists of messages")
        system = record.get("system")
        if system is not None:
            if not isinstance(system, str):
                raise ValueError("'system' must be a string")
            messages = [{"role": "system", "content": system}] + messages
    else:
        raise ValueError(f"expected a 'messages' list or 'prompt' and 'completion'; got keys {sorted(record)}")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise ValueError(f"message {i} must be an object with 'role' and 'content'")
        if m["role"] not in ROLES:
            raise ValueError(f"message {i} has role {m['role']!r}; expected one of {list(ROLES)}")
        if not isinstance(m["content"], str):
            raise ValueError(f"message {i} content must be a string, got {type(m['content']).__name__}")
        out.append({"role": m["role"], "content": m["content"]})
    if not any(m["role"] == "assistant" for m in out):
        raise ValueError("no assistant message: nothing to learn from")
    return out


def read_jsonl(path: str | Path, on_bad_line: OnBadLine = "error", report: LoadReport | None = None,
               warn=None) -> Iterator[tuple[str, list[dict]]]:
    """Yield ("file:line", messages) for each record. A malformed line raises SlmError naming file and line
    (on_bad_line="error"), or is reported through `warn` and counted in `report.bad` ("skip")."""
    if on_bad_line not in ("error", "skip"):
        raise SlmError(f"on_bad_line must be 'error' or 'skip', got {on_bad_line!r}")
    from slm.io import iter_jsonl

    report = report if report is not None else LoadReport()
    warn = warn or _warn

    def on_bad(where: str, why: str) -> None:
        _bad(report, BadLine(where, why), on_bad_line, warn)

    for where, record in iter_jsonl(path, on_bad):
        try:
            messages = record_to_messages(record)
        except ValueError as e:
            on_bad(where, str(e))
            continue
        report.records += 1
        yield where, messages


def _bad(report: LoadReport, bad: BadLine, on_bad_line: str, warn) -> None:
    if on_bad_line == "error":
        raise SlmError(f"{bad} (pass --on-bad-line skip to skip malformed lines with a warning)")
    report.bad.append(bad)
    warn(f"skipping malformed line {bad}")


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


# ---------------------------------------------------------------------------------------------- rendering


class Renderer:
    """Turns messages into (input_ids, shifted labels) with a tokenizer and a Jinja chat template.

    template: None -> the tokenizer's own template, or slm's ChatML when the tokenizer has none.
    """

    def __init__(self, tokenizer, template: str | None = None, train_on: TrainOn = "assistant"):
        from slm.tokenizer import CHATML_TEMPLATE

        if train_on not in ("assistant", "all"):
            raise SlmError(f"train_on must be 'assistant' or 'all', got {train_on!r}")
        self.tokenizer = tokenizer
        self.template = template or getattr(tokenizer, "chat_template", None) or CHATML_TEMPLATE
        if not isinstance(self.template, str):
            raise SlmError("the tokenizer has several named chat templates; pass the one to use as a string")
        self.train_on = train_on
        self.path = "generation-markers" if _GENERATION_TAG.search(self.template) else "prefix-diff"

    def assistant_mask(self, messages: list[dict]) -> tuple[list[int], list[bool]]:
        """Token ids of the whole conversation and, per token, whether it belongs to an assistant turn."""
        if self.path == "generation-markers":
            out = self.tokenizer.apply_chat_template(messages, chat_template=self.template, tokenize=True,
                                                     return_dict=True, return_assistant_tokens_mask=True)
            return list(out["input_ids"]), [bool(x) for x in out["assistant_masks"]]
        return self._prefix_diff(messages)

    def _text(self, messages: list[dict], generation_prompt: bool = False) -> str:
        return self.tokenizer.apply_chat_template(messages, chat_template=self.template, tokenize=False,
                                                  add_generation_prompt=generation_prompt)

    def _prefix_diff(self, messages: list[dict]) -> tuple[list[int], list[bool]]:
        full = self._text(messages)
        spans = []
        for i, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            before = self._text(messages[:i], generation_prompt=True) if i else ""
            through = self._text(messages[:i + 1])
            if not (full.startswith(before) and full.startswith(through) and len(before) <= len(through)):
                raise SlmError("the chat template does not render conversations prefix by prefix, so the assistant "
                               "tokens cannot be found; add {% generation %} markers to it or use train_on=all")
            # The template's separator after the turn (a newline) is not the assistant's to predict.
            end = len(through.rstrip())
            spans.append((len(before), max(end, len(before))))
        enc = self.tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
        # A token that straddles a boundary (byte-BPE's " ok" after "Answer:") carries assistant text: keep it.
        mask = [any(start < b and end > a for a, b in spans) for start, end in enc["offset_mapping"]]
        return list(enc["input_ids"]), mask

    def __call__(self, messages: list[dict], source: str = "") -> SFTExample:
        ids, mask = self.assistant_mask(messages)
        if self.train_on == "all":
            mask = [True] * len(ids)
        labels = [ids[t + 1] if mask[t + 1] else IGNORE for t in range(len(ids) - 1)] + [IGNORE]
        return SFTExample(ids, labels, source)


def load_sft_examples(path: str | Path, tokenizer, template: str | None = None, train_on: TrainOn = "assistant",
                      on_bad_line: OnBadLine = "error", warn=None) -> tuple[list[SFTExample], LoadReport]:
    """Read and render a whole JSONL file. Records that render to no target token are reported as bad lines."""
    renderer = Renderer(tokenizer, template, train_on)
    report = LoadReport(path=renderer.path)
    warn = warn or _warn
    examples = []
    from jinja2 import TemplateError

    for where, messages in read_jsonl(path, on_bad_line, report, warn):
        try:
            ex = renderer(messages, where)
        except TemplateError as e:  # e.g. raise_exception('roles must alternate') in the template itself
            report.records -= 1
            _bad(report, BadLine(where, f"the chat template refused this conversation: {e}"), on_bad_line, warn)
            continue
        if ex.num_targets == 0:
            report.records -= 1
            _bad(report, BadLine(where, "the rendered conversation has no assistant tokens"), on_bad_line, warn)
            continue
        examples.append(ex)
    if report.bad:
        warn(f"{path}: {len(report.bad)} malformed line(s) skipped, {report.records} record(s) kept")
    if not examples:
        raise SlmError(f"{path}: no usable records ({report.summary()})")
    return examples, report
