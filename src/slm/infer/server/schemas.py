"""Request bodies as clients send them, and the OpenAI-style error every refusal answers with.

Stricter than the anchors where that costs a client nothing: numbers are not coerced from strings, seeds
must fit 64 bits, stop lists hold at most 4 strings. Fields no endpoint uses (user, metadata, store,
service_tier, ...) are ignored, as OpenAI's own server ignores what it does not know.
"""
from __future__ import annotations

from typing import Annotated, Literal, Union

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

SEED_MIN, SEED_MAX = -(2**63), 2**64 - 1  # what torch.Generator.manual_seed takes
MAX_STOP = 4
MAX_TOP_LOGPROBS = 20


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 type_: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type_

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self, headers: dict | None = None) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class ResponseFormat(_Body):
    """OpenAI's response_format: text, json_object, or json_schema {name, schema, strict}."""
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict | None = None


class _Sampling(_Body):
    model: str | None = None
    max_tokens: int | None = Field(None, ge=0)  # 0 only with echo: score the prompt, generate nothing
    temperature: float | None = Field(None, ge=0, le=2)  # None: 1.0, as OpenAI
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int = Field(0, ge=0)  # extensions, as in vLLM (the openai client sends them via extra_body)
    min_p: float = Field(0.0, ge=0, le=1)
    repetition_penalty: float = Field(1.0, gt=0)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=SEED_MIN, le=SEED_MAX)
    n: int = Field(1, ge=1)
    stream: bool | None = False  # null as false: some clients send every field
    stream_options: dict | None = None
    response_format: ResponseFormat | None = None
    # Grammar extensions (as vLLM's guided_*): a regular expression, or a Lark grammar (llguidance's dialect).
    guided_regex: str | None = None
    guided_grammar: str | None = None

    @field_validator("stop")
    @classmethod
    def _stop(cls, stop):
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        if len(stops) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop sequences")
        if any(not s for s in stops):
            raise ValueError("stop sequences must be non-empty strings")
        return stops


Prompt = Union[str, list[int], list[str], list[list[int]]]


class CompletionRequest(_Sampling):
    prompt: Prompt
    echo: bool | None = False
    logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    suffix: str | None = None

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, prompt):
        if isinstance(prompt, list) and not prompt:
            raise ValueError("give at least one prompt")
        if isinstance(prompt, list) and isinstance(prompt[0], list) and any(not p for p in prompt):
            raise ValueError("a token-id prompt must have at least one token")
        return prompt

    def prompts(self) -> list[str | list[int]]:
        """One entry per prompt: a string or a list of token ids."""
        if isinstance(self.prompt, str) or (self.prompt and isinstance(self.prompt[0], int)):
            return [self.prompt]
        return list(self.prompt)


class TextPart(_Body):
    type: Literal["text"]
    text: str


class ImageUrlPart(_Body):
    type: Literal["image_url"]
    image_url: dict | str


Part = Annotated[Union[TextPart, ImageUrlPart], Field(discriminator="type")]


class ChatMessage(_Body):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[Part] | None = None
    name: str | None = None


class ChatRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool | None = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)


class EmbeddingRequest(_Body):
    input: Prompt
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)


def message_text(messages: list[ChatMessage], vision: bool = False) -> list[dict]:
    """The messages as the chat template takes them: text parts joined, developer read as system.
    image_url parts need a vision model: refused with 400 until one is served."""
    out = []
    for i, m in enumerate(messages):
        content = m.content
        if isinstance(content, list):
            texts = []
            for j, part in enumerate(content):
                if isinstance(part, ImageUrlPart) and not vision:
                    raise ApiError(400, "image_url content parts need a vision model; this server serves a "
                                   "text-only model", param=f"messages.{i}.content.{j}", code="unsupported_content")
                texts.append(part.text)
            content = "".join(texts)
        out.append({"role": "system" if m.role == "developer" else m.role, "content": content or ""})
    return out
