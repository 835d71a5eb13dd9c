"""Structured output: response_format json_schema / json_object, and the guided_regex / guided_grammar
extensions, enforced token by token by llguidance (one matcher per row, the engine's `constraint` hook).

    grammar = request_grammar(body)                      # None when the request has no constraint
    factory = Grammars(tokenizer).factory(grammar)       # checks it (400 on a bad schema), then per row:
    seq.constraint = factory()

llguidance rather than xgrammar (both installed and measured on SmolLM2's 49k vocabulary, docs/benchmarks.md):
both compute a mask in tens of microseconds, against milliseconds per decoding step; llguidance compiles a
schema in about 1 ms against xgrammar's 300 ms for the first one, and installs as one wheel with no
dependencies, where xgrammar brings triton and a TVM runtime into a CPU-only environment.
JSON is compact (no free whitespace), and objects whose schema leaves additionalProperties unsaid get no extra
keys (as OpenAI's strict mode requires and xgrammar's strict mode assumes): a small model could otherwise fill its
token budget with spaces or invented keys. Both only narrow the schema, so every output still validates against
the schema as given.
"""
from __future__ import annotations

import json
import threading
from typing import Callable

import torch

from slm.infer.server.schemas import ApiError

_JSON_OPTIONS = {"whitespace_flexible": False}


def request_grammar(body) -> str | None:
    """The llguidance grammar a request asks for, or None."""
    import llguidance

    asked = [name for name, value in (("response_format", body.response_format and body.response_format.type != "text"),
                                      ("guided_regex", body.guided_regex), ("guided_grammar", body.guided_grammar))
             if value]
    if len(asked) > 1:
        raise ApiError(400, f"give one of response_format, guided_regex and guided_grammar, not {' and '.join(asked)}",
                       param=asked[1])
    if not asked:
        return None
    try:
        if asked[0] == "guided_regex":
            return llguidance.LLMatcher.grammar_from_regex(body.guided_regex)
        if asked[0] == "guided_grammar":
            return llguidance.LLMatcher.grammar_from_lark(body.guided_grammar)
        fmt = body.response_format
        if fmt.type == "json_object":
            return llguidance.LLMatcher.grammar_from_json_schema({"type": "object"}, defaults=_JSON_OPTIONS)
        schema = (fmt.json_schema or {}).get("schema")
        if not isinstance(schema, dict):
            raise ApiError(400, "response_format json_schema needs json_schema.schema, a JSON Schema object",
                           param="response_format.json_schema.schema")
        return llguidance.LLMatcher.grammar_from_json_schema(json.dumps(closed(schema)), defaults=_JSON_OPTIONS)
    except ValueError as error:
        raise ApiError(400, f"{asked[0]}: {error}", param=asked[0], code="invalid_grammar") from None


_SUBSCHEMAS = ("items", "additionalItems", "not", "if", "then", "else", "contains")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")


def closed(schema):
    """A copy of the schema in which every object that does not say otherwise has additionalProperties false."""
    if isinstance(schema, list):
        return [closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    for key in _SUBSCHEMAS + _SCHEMA_LISTS:
        if key in out:
            out[key] = closed(out[key])
    for key in _SCHEMA_MAPS:
        if isinstance(out.get(key), dict):
            out[key] = {name: closed(sub) for name, sub in out[key].items()}
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = closed(out["additionalProperties"])
    is_object = out.get("type") == "object" or (isinstance(out.get("type"), list) and "object" in out["type"]) \
        or "properties" in out
    if is_object and "additionalProperties" not in out and "patternProperties" not in out:
        out["additionalProperties"] = False
    return out


class Constraint:
    """One row's matcher, in the shape the engine asks for (allowed / accept / done)."""

    def __init__(self, matcher, n_vocab: int):
        from llguidance.torch import allocate_token_bitmask

        self.matcher, self.n_vocab = matcher, n_vocab
        self.bitmask = allocate_token_bitmask(1, n_vocab)
        self._bits = torch.arange(32, dtype=torch.int32)

    def allowed(self, vocab_size: int) -> torch.Tensor:
        from llguidance.torch import fill_next_token_bitmask

        fill_next_token_bitmask(self.matcher, self.bitmask, 0)
        bits = ((self.bitmask[0].unsqueeze(-1) >> self._bits) & 1).bool().flatten()
        out = torch.zeros(vocab_size, dtype=torch.bool)
        n = min(vocab_size, self.n_vocab)
        out[:n] = bits[:n]
        if not out.any():  # the matcher is in an error state (done): let the row end on any token
            out[:] = True
        return out

    def accept(self, token: int) -> None:
        self.matcher.consume_token(token)

    @property
    def done(self) -> bool:
        return self.matcher.is_stopped() or self.matcher.is_error()


class Grammars:
    """llguidance's view of one tokenizer (built on first use: a second or so for a 49k vocabulary)."""

    def __init__(self, tokenizer):
        self.hf_tokenizer = tokenizer
        self._tokenizer = None
        self._lock = threading.Lock()

    @property
    def tokenizer(self):
        with self._lock:
            if self._tokenizer is None:
                import llguidance.hf

                self._tokenizer = llguidance.hf.from_tokenizer(self.hf_tokenizer, n_vocab=len(self.hf_tokenizer))
            return self._tokenizer

    def factory(self, grammar: str) -> Callable[[], Constraint]:
        """A maker of fresh constraints for this grammar, after checking it (400 when llguidance refuses it)."""
        import llguidance

        tokenizer = self.tokenizer
        error = llguidance.LLMatcher.validate_grammar(grammar, tokenizer)
        if error and not error.startswith("WARNING"):
            raise ApiError(400, f"the grammar or schema is not supported: {error}", param="response_format",
                           code="invalid_grammar")

        def make() -> Constraint:
            return Constraint(llguidance.LLMatcher(tokenizer, grammar, log_level=0), tokenizer.vocab_size)
        return make
