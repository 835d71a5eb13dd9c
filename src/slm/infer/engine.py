"""The inference engine: batched prefill + decode over a preallocated KV cache, sampling, stop rules, streaming.

    engine = Engine(model, tokenizer)
    [c] = engine.generate(["def main("], SamplingParams(max_tokens=32))      # c.text, c.token_ids, c.finish_reason
    for event in engine.stream(["import os"], SamplingParams(temperature=0.8, seed=0)):
        print(event.text, end="")

The engine drives any model-like object with the Decoder's interface, never its internals:
`forward(input_ids, position_ids=None, attention_mask=None, cache=None, logits_to_keep=0)` -> scores [B, T, V]
(logits or log-probabilities) and `new_cache(batch, max_len)` -> a cache with `length`, `truncate`, `select`.
Prompts of different lengths are left-padded and given a 2-D padding mask and position ids = cumsum(mask) - 1,
as transformers' generate does, so each row computes exactly what it would compute alone. A family whose models
are driven differently registers an engine adapter (slm.models.registry) with that interface plus
`prefill(input_ids, attention_mask, cache_len)` -> (last scores, cache): an encoder-decoder encodes the prompt
there and decodes from its start token (slm.models.seq2seq.Seq2SeqRunner).

A Sequence may carry a `constraint` (structured output, slm.infer.server.grammar): an object with
`allowed(vocab_size)` -> [V] bool tensor of the tokens it permits next, `accept(token)`, and `done` (nothing more
may follow); the engine masks that row's scores before sampling and ends the row when the constraint is done.
Rows with the same prompt share one prefill (n > 1 samples of a request).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence as Seq

import torch

from slm.errors import ConfigError, SlmError
from slm.infer.sampling import BatchSettings, SamplingParams, sample, seen_mask, token_logprobs

Prompt = str | list[int]


@dataclass
class Completion:
    text: str
    token_ids: list[int]  # generated tokens; an EOS / stop token that ended the sequence is the last one
    finish_reason: str  # "stop" (EOS, stop token or stop string), "length" (max_tokens / context), "cancelled"
    prompt_tokens: int = 0


@dataclass
class StreamEvent:
    index: int  # which prompt
    token_id: int
    text: str  # text that became final with this token (may be "" while a stop string or a UTF-8 char is pending)
    finish_reason: str | None  # set on the row's last event
    logprobs: tuple[float, dict[int, float]] | None = None  # the token's and the top ones' (params.logprobs)


class Sequence:
    """One prompt's generation state: its tokens, its random generator, its stop rules and its text so far."""

    def __init__(self, prompt_ids: list[int], params: SamplingParams, tokenizer=None, eos_ids=(), index: int = 0,
                 track_text: bool = False):
        self.prompt_ids = list(prompt_ids)
        self.params = params
        self.tokenizer = tokenizer
        self.index = index
        self.output_ids: list[int] = []
        self.generator = None if params.greedy else params.make_generator()
        self.stop_ids = set(params.stop_token_ids) | (set() if params.ignore_eos else set(eos_ids))
        if params.stop and tokenizer is not None and hasattr(tokenizer, "get_added_vocab"):
            # The text is decoded without special tokens, so a stop string that is one (ChatML's <|im_end|>)
            # would never be seen there: it stops as a token instead.
            added = tokenizer.get_added_vocab()
            self.stop_ids |= {added[s] for s in params.stop if s in added}
        self.finish_reason: str | None = None
        self.cancelled = False  # set from another thread (a disconnected client); the engine drops the row
        # Text is followed token by token only when someone reads it (streaming) or stop strings need it.
        self.track_text = (track_text or bool(params.stop)) and tokenizer is not None
        if params.stop and tokenizer is None:
            raise SlmError("stop strings need a tokenizer")
        self.text = ""  # final text so far
        self._emitted = 0
        self.constraint = None  # see the module docstring
        self.token_logprobs: list[tuple[float, dict[int, float]]] = []  # per output token (params.logprobs)
        self.prompt_logprobs: list[tuple[float, dict[int, float]]] | None = None  # per prompt token after the first

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    def append(self, token: int) -> str:
        """Add one generated token, apply the stop rules, return the newly final text."""
        self.output_ids.append(token)
        if self.constraint is not None and token not in self.stop_ids:
            self.constraint.accept(token)
        if token in self.stop_ids or (self.constraint is not None and self.constraint.done):
            self.finish_reason = "stop"
        elif len(self.output_ids) >= self.params.max_tokens:
            self.finish_reason = "length"
        if self.track_text or (self.finished and self.tokenizer is not None):
            return self._update_text()
        return ""

    def finish(self, reason: str) -> str:
        if not self.finished:
            self.finish_reason = reason
        return self._update_text() if self.tokenizer is not None else ""

    def _update_text(self) -> str:
        ids = self.output_ids[:-1] if self.output_ids and self.output_ids[-1] in self.stop_ids else self.output_ids
        full = self.tokenizer.decode(ids, skip_special_tokens=True)
        cut = len(full)
        for s in self.params.stop:
            at = full.find(s, max(0, self._emitted - len(s) + 1))
            if at != -1 and at < cut:
                cut = at
        if cut < len(full):
            self.finish_reason = "stop"
            full = full[:cut]
        ready = len(full)
        if not self.finished:
            # Hold back what may still change: a partial UTF-8 character, or the start of a stop string.
            while ready > self._emitted and full[ready - 1] == "\ufffd":
                ready -= 1
            ready -= _pending_stop_prefix(full[:ready], self.params.stop)
        ready = max(ready, self._emitted)
        delta = full[self._emitted:ready]
        self._emitted = ready
        self.text = full[:ready]
        return delta

    def completion(self) -> Completion:
        return Completion(self.text, list(self.output_ids), self.finish_reason or "length", len(self.prompt_ids))


def _pending_stop_prefix(text: str, stops: list[str]) -> int:
    """Length of the longest suffix of text that is a proper prefix of some stop string."""
    best = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:n]):
                best = n
                break
    return best


def model_device(model) -> torch.device:
    device = getattr(model, "device", None)
    if isinstance(device, torch.device):
        return device
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


def _decoding_step(model, compile: bool | str):
    """The one-row decoding step `compile` asks for (Engine)."""
    from slm.infer import native
    from slm.infer.compiled import CompiledStep

    if compile not in (True, "native", "inductor"):
        raise ConfigError(f"compile must be True, 'native' or 'inductor', not {compile!r}")
    if compile == "inductor" or (compile is True and native.unsupported(model)):
        return CompiledStep(model)  # checks that the model is one it can compile
    try:
        return native.NativeStep(model)
    except SlmError as error:
        if compile == "native":
            raise
        warnings.warn(f"{error}; decoding through the inductor graph", stacklevel=3)
        return CompiledStep(model)


class Engine:
    def __init__(self, model, tokenizer=None, max_batch_size: int = 32, eos_token_ids: Seq[int] | None = None,
                 compile: bool | str = False):
        """compile decodes one-row batches through a compiled step; larger batches decode eagerly. True: slm's
        C++ step for the Llama-family fp32 CPU models it covers (slm.infer.native), else one inductor graph per
        step (slm.infer.compiled); "native" or "inductor": that one. Fastest on a model in
        `prepare_for_decoding(model, compile=True)` layout."""
        self.model = model.eval() if hasattr(model, "eval") else model
        self.tokenizer = tokenizer
        self.max_batch_size = max_batch_size
        config = getattr(model, "config", None)
        self.max_seq_len: int | None = getattr(config, "max_seq_len", None)
        self.vocab_size: int | None = getattr(config, "vocab_size", None)
        if eos_token_ids is None:
            eos_token_ids = {i for i in (getattr(tokenizer, "eos_token_id", None), getattr(config, "eos_token_id", None))
                             if i is not None}
        self.eos_token_ids = set(eos_token_ids)
        self.pad_token_id = next(iter(sorted(self.eos_token_ids)), 0)  # any id works: padding is masked
        self.device = model_device(model)
        self.runner = _runner(self.model)  # what prefill and decoding steps call
        self.compiled_step = _decoding_step(self.model, compile) if compile else None

    @classmethod
    def from_pretrained(cls, path: str | Path, int8: bool = False, dtype: torch.dtype = torch.float32,
                        device: str = "cpu", input_major: bool | None = None, compile: bool = False,
                        **kwargs) -> "Engine":
        """Load an HF directory (or a composition YAML, slm.compose) in the decoding layout
        (slm.infer.quant.prepare_for_decoding): q/k/v and gate/up projections fused; int8=True quantizes the
        linear layers' weights per output channel; input_major (default: on CPU without int8 or compile) stores
        the float weights transposed, which eager CPU matrix-vector products read faster (InputMajorLinear);
        compile=True compiles one-row decoding steps (slm.infer.compiled)."""
        import slm
        from slm.compose.config import is_composition, load_composition
        from slm.infer.quant import prepare_for_decoding

        if is_composition(path):
            model, tokenizer = load_composition(path, dtype=dtype, device=device)
        else:
            model, tokenizer = slm.load(path, dtype=dtype, device=device)
            refuse_non_generating(model, path)
        prepare_for_decoding(model, int8=int8, input_major=input_major, compile=compile)
        return cls(model, tokenizer, compile=compile, **kwargs)

    @torch.inference_mode()
    def warm_up(self, progress: bool = False) -> None:
        """With the inductor graph (compile): compile the one-row decoding step for every cache window now
        (seconds each, and more the first time, before inductor's on-disk cache holds them), rather than during
        the first requests that reach each length. progress: a bar on stderr, one step per window. (The C++
        step was built with the engine: nothing to do.)"""
        from slm.infer.compiled import CompiledStep, windows

        if not isinstance(self.compiled_step, CompiledStep):
            return
        from tqdm.auto import tqdm

        cache = self.model.new_cache(1, self.max_seq_len)
        token = torch.tensor([self.pad_token_id], device=self.device)
        for window in tqdm(windows(self.max_seq_len), desc="compiling decoding steps", unit="window",
                           disable=not progress, dynamic_ncols=True):
            cache.length = window - 1  # a step at the window's last position reads exactly that window
            self.compiled_step(token, cache)

    # ---- prompts ----

    def encode(self, prompt: Prompt) -> list[int]:
        if isinstance(prompt, str):
            if self.tokenizer is None:
                raise SlmError("this engine has no tokenizer: pass prompts as lists of token ids")
            ids = self.tokenizer.encode(prompt)
        else:
            ids = [int(t) for t in prompt]
        if not ids:
            raise SlmError("empty prompt: give at least one token")
        if self.max_seq_len is not None and len(ids) >= self.max_seq_len:
            raise SlmError(f"prompt of {len(ids)} tokens leaves no room to generate (context is {self.max_seq_len})")
        if self.vocab_size is not None and (max(ids) >= self.vocab_size or min(ids) < 0):
            raise SlmError(f"prompt token ids must be in [0, {self.vocab_size})")
        return ids

    def new_sequence(self, prompt: Prompt, params: SamplingParams, index: int = 0,
                     track_text: bool = False) -> Sequence:
        return Sequence(self.encode(prompt), params, self.tokenizer, self.eos_token_ids, index, track_text)

    def _sequences(self, prompts, params, track_text: bool) -> list[Sequence]:
        if isinstance(prompts, str) or (prompts and isinstance(prompts[0], int)):
            prompts = [prompts]
        params = params or SamplingParams()
        per_prompt = params if isinstance(params, list) else [params] * len(prompts)
        if len(per_prompt) != len(prompts):
            raise SlmError(f"{len(prompts)} prompts but {len(per_prompt)} sampling params")
        return [self.new_sequence(p, sp, i, track_text) for i, (p, sp) in enumerate(zip(prompts, per_prompt))]

    # ---- public API ----

    def generate(self, prompts: str | list[str] | list[list[int]],
                 params: SamplingParams | list[SamplingParams] | None = None) -> list[Completion]:
        """One Completion per prompt, in order. Prompts are run in batches of up to max_batch_size."""
        seqs = self._sequences(prompts, params, track_text=False)
        for start in range(0, len(seqs), self.max_batch_size):
            for _ in self.steps(seqs[start:start + self.max_batch_size]):
                pass
        return [s.completion() for s in seqs]

    def stream(self, prompts: str | list[str] | list[list[int]],
               params: SamplingParams | list[SamplingParams] | None = None) -> Iterator[StreamEvent]:
        """StreamEvents as tokens are produced (rows of one batch interleave); a str prompt streams one row."""
        seqs = self._sequences(prompts, params, track_text=True)
        for start in range(0, len(seqs), self.max_batch_size):
            for events in self.steps(seqs[start:start + self.max_batch_size]):
                yield from events

    def beam_search(self, prompts: str | list[str] | list[list[int]], params=None):
        """The n-best list of each prompt, best first (slm.infer.beam: transformers' beam search)."""
        from slm.infer.beam import BeamParams, beam_search

        return beam_search(self, prompts, params or BeamParams())

    # ---- the loop ----

    def _prefill(self, rows: list[Sequence], cache_len: int):
        """Left-padded prefill of these rows into a new cache: (last-position scores, cache, padding mask,
        last positions, whether any row is padded)."""
        keys = [tuple(s.prompt_ids) for s in rows]
        unique = list(dict.fromkeys(keys))
        if len(unique) < len(rows) and not hasattr(self.runner, "prefill"):
            # Samples of one prompt: prefill it once, then copy its cache rows.
            first = {key: rows[keys.index(key)] for key in unique}
            scores, cache, mask, last, padded = self._prefill(list(first.values()), cache_len)
            inverse = torch.tensor([unique.index(key) for key in keys], device=self.device)
            cache.select(inverse)
            for s, key in zip(rows, keys):
                s.prompt_logprobs = first[key].prompt_logprobs
            return scores[inverse], cache, mask[inverse], last[inverse], padded
        lengths = [len(s.prompt_ids) for s in rows]
        width = max(lengths)
        dev = self.device
        ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for row, s in enumerate(rows):
            ids[row, width - len(s.prompt_ids):] = torch.tensor(s.prompt_ids)
            mask[row, width - len(s.prompt_ids):] = 1
        ids, mask = ids.to(dev), mask.to(dev)
        padded = min(lengths) != width
        positions = (mask.cumsum(-1) - 1).clamp_min(0)
        if hasattr(self.runner, "prefill"):
            scores, cache = self.runner.prefill(ids, mask, cache_len)
            return scores, cache, mask, positions[:, -1:], False  # decoder inputs are never padded
        cache = self.model.new_cache(len(rows), cache_len)
        wanted = [s.params.prompt_logprobs for s in rows if s.params.prompt_logprobs is not None]
        scores = self.model(ids, position_ids=positions if padded else None, attention_mask=mask if padded else None,
                            cache=cache, logits_to_keep=0 if wanted else 1)
        if wanted:
            for row, s in enumerate(rows):
                if s.params.prompt_logprobs is not None:  # token j's log-probability is read at position j - 1
                    start = width - len(s.prompt_ids)
                    s.prompt_logprobs = token_logprobs(scores[row, start:-1], ids[row, start + 1:],
                                                       s.params.prompt_logprobs)
        return scores[:, -1], cache, mask, positions[:, -1:], padded

    def _decode(self, tokens: torch.Tensor, cache, mask, last_position, padded: bool):
        """One decoding step of every row: (last-position scores, padding mask, positions) after it."""
        if padded:  # unpadded rows need neither: their positions follow the cache (and each op here costs
            # tens of µs after a step has streamed the weights through the caches)
            last_position = last_position + 1
            mask = torch.cat([mask, mask.new_ones(len(tokens), 1)], dim=1)
        scores = self.runner(tokens.view(-1, 1), position_ids=last_position if padded else None,
                             attention_mask=mask if padded else None, cache=cache, logits_to_keep=1)[:, -1]
        return scores, mask, last_position

    @staticmethod
    def _sample(rows: list[Sequence], scores: torch.Tensor, settings, generators, seen) -> torch.Tensor:
        """sample() with the rows' constraints applied; records the log-probabilities rows ask for."""
        constrained = [row for row, s in enumerate(rows) if s.constraint is not None]
        masked = scores
        if constrained:
            masked = scores.clone()
            for row in constrained:
                allowed = rows[row].constraint.allowed(scores.shape[-1]).to(scores.device)
                masked[row].masked_fill_(~allowed, float("-inf"))
        tokens = sample(masked, settings, generators, seen)
        wanted = [row for row, s in enumerate(rows) if s.params.logprobs is not None]
        if wanted:
            idx = torch.tensor(wanted, device=scores.device)
            k = max(rows[row].params.logprobs for row in wanted)
            for row, (lp, top) in zip(wanted, token_logprobs(scores[idx], tokens[idx], k)):
                want = rows[row].params.logprobs
                rows[row].token_logprobs.append((lp, dict(list(top.items())[:want])))
        return tokens

    @staticmethod
    def _events(rows: list[Sequence], tokens: torch.Tensor, room: bool) -> tuple[list[StreamEvent], list[int]]:
        """Append each row's new token; the step's events and the rows still running."""
        events, keep = [], []
        for row, (s, token) in enumerate(zip(rows, tokens.tolist())):
            logprobs = s.token_logprobs[-1] if s.params.logprobs is not None and s.token_logprobs else None
            text = s.append(token)
            if not s.finished and s.cancelled:
                text += s.finish("cancelled")
            elif not s.finished and not room:
                text += s.finish("length")
            events.append(StreamEvent(s.index, token, text, s.finish_reason, logprobs))
            if not s.finished:
                keep.append(row)
        return events, keep

    @torch.inference_mode()
    def steps(self, seqs: list[Sequence],
              admit: Callable[[int, int, int], list[Sequence]] | None = None) -> Iterator[list[StreamEvent]]:
        """Prefill these sequences together, then decode one token per row per step until all are finished.

        Yields the step's events. Finished or cancelled rows leave the batch (cache.select) at once.
        Continuous batching: with `admit`, before each decoding step the engine asks
        admit(free_rows, max_prompt_len, max_new_tokens) for sequences to join the running batch; they are
        prefilled on their own, placed in the batch's cache left-padded to its current length, and decode
        with the others from then on. (Only for models whose cache can take rows: `add_rows`.)
        """
        active = [s for s in seqs if not s.finished]
        if not active:
            return
        width = max(len(s.prompt_ids) for s in active)
        budget = width + max(s.params.max_tokens for s in active)
        if admit is not None and self.max_seq_len:
            budget = self.max_seq_len  # room for requests that join later
        cache_len = min(budget, self.max_seq_len) if self.max_seq_len else budget
        dev = self.device
        # A compiled step reads windows of one cache shape, so a few graphs serve every request (slm.infer.compiled).
        allocate = self.max_seq_len if self.compiled_step is not None else cache_len
        scores, cache, mask, last_position, padded = self._prefill(active, allocate)
        admit = admit if hasattr(cache, "add_rows") else None
        settings = BatchSettings.build([s.params for s in active], dev)
        generators = [s.generator for s in active]
        seen = None  # [rows, vocab] tokens present, built on first use (repetition penalty only)
        greedy = None  # the argmax a compiled step computed in its graph
        while True:
            if seen is None and settings.any_penalty:
                seen = seen_mask([s.prompt_ids + s.output_ids for s in active], scores.shape[-1], dev)
            if (greedy is not None and settings.all_greedy and not settings.any_penalty
                    and all(s.constraint is None and s.params.logprobs is None for s in active)):
                tokens = greedy
            else:
                tokens = self._sample(active, scores, settings, generators, seen)
            events, keep = self._events(active, tokens, cache.length < cache_len)
            yield events
            if len(keep) < len(active):
                if keep:
                    cache.select(keep)
                rows = torch.tensor(keep, device=dev, dtype=torch.long)
                tokens, mask, last_position = tokens[rows], mask[rows], last_position[rows]
                active = [active[r] for r in keep]
                generators = [generators[r] for r in keep]
                settings = settings.select(keep)
                seen = seen[rows] if seen is not None else None
            if seen is not None:
                seen[torch.arange(len(active), device=dev), tokens] = True
            free = self.max_batch_size - len(active)
            newcomers = admit(free, cache.length, cache_len - cache.length) if admit and free > 0 and active else []
            if newcomers:
                new_scores, new_cache, new_mask, new_last, _ = self._prefill(newcomers, cache.length)
                new_settings = BatchSettings.build([s.params for s in newcomers], dev)
                new_seen = (seen_mask([s.prompt_ids for s in newcomers], new_scores.shape[-1], dev)
                            if new_settings.any_penalty else None)
                new_tokens = self._sample(newcomers, new_scores, new_settings, [s.generator for s in newcomers],
                                          new_seen)
                events, stay = self._events(newcomers, new_tokens, True)
                yield events
                if stay:
                    idx = torch.tensor(stay, device=dev, dtype=torch.long)
                    new_cache.select(stay)
                    cache.add_rows(new_cache)
                    if not padded:  # every row so far saw every position; mask and positions were not kept up
                        mask = mask.new_ones(len(active), cache.length)
                        last_position = last_position.new_full((len(active), 1), cache.length - 1)
                        padded = True
                    new_mask = torch.cat([new_mask.new_zeros(len(stay), cache.length - new_mask.shape[1]),
                                          new_mask[idx]], dim=1)
                    mask = torch.cat([mask, new_mask])
                    tokens = torch.cat([tokens, new_tokens[idx]])
                    last_position = torch.cat([last_position, new_last[idx]])
                    active += [newcomers[r] for r in stay]
                    generators += [newcomers[r].generator for r in stay]
                    settings = BatchSettings.build([s.params for s in active], dev)
                    seen = None  # rebuilt from every row's tokens at the next step
            if not active:
                return
            greedy = None
            if self.compiled_step is not None and len(active) == 1 and not padded:
                scores = self.compiled_step(tokens, cache)
                greedy = self.compiled_step.argmax
            else:
                scores, mask, last_position = self._decode(tokens, cache, mask, last_position, padded)


def _runner(model):
    """The model itself, or its family's engine adapter (an encoder-decoder's Seq2SeqRunner)."""
    from slm.models.registry import family_of

    family = family_of(model)
    return family.engine_adapter(model) if family is not None and family.engine_adapter else model


def refuse_non_generating(model, where) -> None:
    """The engine decodes only with families that generate (the registry says which): an encoder is one line."""
    from slm.errors import SlmError
    from slm.models.registry import family_of

    family = family_of(model)
    if family is not None and not family.generates:
        arch = getattr(model.config, "arch", family.name)
        raise SlmError(f"{where} is a {arch} {family.name}: it does not generate text (use slm eval, or "
                       f"slm finetune --task classify)")
