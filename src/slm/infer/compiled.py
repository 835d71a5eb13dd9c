"""Compiled batch-1 decoding: one inductor graph per decoded token.

Eager decoding of a small model spends its time in two places: dozens of small operators per layer, each
with its own dispatch, and matrix-vector products that MKL streams from memory well below the machine's
bandwidth. Compiling the whole decoding step (torch.export, then inductor with a C++ wrapper, called
without dynamo: CompiledStep) addresses both. Inductor fuses each layer's norms, rotary
embedding, attention arithmetic, activation and residual adds into a few C++ loops, and the products of
`RowDotLinear` (below) become vectorised multiply-and-sum loops over the [out, in] weight. On the 2-vCPU
test machine those loops read a weight at 22-28 GB/s against MKL's 10-20 GB/s (docs/benchmarks.md).

Shapes must not change from one step to the next, or every step would compile anew:
  - the engine allocates the KVCache for the model's whole context, and a step reads a window of it whose
    length is the current length rounded up to a power of two (`bucket`): a handful of graphs (64, 128,
    ... positions up to the context) serve every request, and attention costs what the window holds;
  - the position is a tensor, and the graph only reads the cache: the new token attends to the cached
    positions before it and to itself (StaticKVCache.attend), and the engine writes its keys and values into
    the cache after the step. (Written inside the graph, inductor copied each layer's window in and out.)
Only one-row batches take this path (the engine decodes larger batches eagerly, where matrix products
are efficient anyway; RowDotLinear then multiplies W by the rows, which MKL does faster here than the rows
by W's transpose). The first step in each window compiles, which takes seconds; `Engine.warm_up` compiles
them all at once, and inductor's on-disk cache makes later processes start faster.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.export.graph_signature import InputKind

from slm.errors import ConfigError, SlmError


# inductor's settings for the CPU graphs (the GPU path keeps its defaults). The C++ wrapper saves about 3% of
# a step. Every intermediate vector is stored rather than recomputed where it is read: by default inductor
# inlines the norm and the residual adds into the matrix-vector loops that read them, recomputing them for
# each weight row, which cost a micro step 4-8% (docs/benchmarks.md); a decoding step's vectors are a few KB.
CPU_INDUCTOR_OPTIONS = dict(cpp_wrapper=True, realize_reads_threshold=1, realize_cpu_opcount_threshold=1,
                            realize_cpu_acc_reads_threshold=1)


class RowDotLinear(nn.Linear):
    """A Linear for decoding on the [out, in] weight. Inside a compiled graph and for a single input row it
    computes y_o = sum_i W_oi x_i as a multiply-and-sum, which inductor emits as a vectorised loop over the
    weight's rows (fused with the ops around it) instead of an external GEMV call. For 2-64 rows (batched
    decoding, short prompts) it multiplies W by the rows, which MKL did up to 2.4x faster here than the rows
    by W's transpose (the LM head at 4 rows; about even on a 256 x 256 matrix); otherwise it is F.linear."""

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "RowDotLinear":
        new = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, device="meta")
        new.weight = nn.Parameter(linear.weight.detach(), requires_grad=False)
        new.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach(), requires_grad=False)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.shape[:-1].numel()
        if torch.compiler.is_compiling() and rows == 1:
            y = (x.reshape(1, self.in_features) * self.weight).sum(-1)
        elif 1 < rows <= 64:
            y = torch.mm(self.weight, x.reshape(rows, self.in_features).t()).t()
        else:
            return F.linear(x, self.weight, self.bias)
        y = y.reshape(*x.shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias


class StaticKVCache:
    """The engine's KVCache as a compiled step sees it: read-only. The new token attends to the cached positions
    before it, read from the first `window` positions, and to its own keys and values; those are collected
    in `new_k`, `new_v` and written into the cache after the step (CompiledStep). Writing them inside the
    graph would make inductor copy each layer's window in and out around every step.

    It has no `length`: the decoder then takes the positions it is given.
    """

    def __init__(self, k: torch.Tensor, v: torch.Tensor, position: torch.Tensor, window: int):
        self.k, self.v, self.window = k, v, window
        self.past = (torch.arange(window, device=k.device) < position).view(1, 1, 1, window)
        self.new_k: list[torch.Tensor] = []
        self.new_v: list[torch.Tensor] = []

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """softmax(q K^T / sqrt(d)) V over [cached positions, this token] for q [B, H, 1, D], k, v [B, KV, 1, D];
        grouped-query heads share their KV head. Returns [B, 1, H * D]."""
        self.new_k.append(k)
        self.new_v.append(v)
        B, H, _, D = q.shape
        KV = k.shape[1]
        q = q.reshape(B, KV, H // KV, D) * D ** -0.5
        cached_k = self.k[layer, :, :, :self.window]  # [B, KV, W, D]
        cached_v = self.v[layer, :, :, :self.window]
        scores = (q @ cached_k.transpose(-1, -2)).masked_fill(~self.past, float("-inf"))  # [B, KV, rep, W]
        own = (q * k).sum(-1, keepdim=True)  # [B, KV, rep, 1]
        top = torch.maximum(scores.amax(-1, keepdim=True), own)
        weights, own_weight = torch.exp(scores - top), torch.exp(own - top)
        out = (weights @ cached_v + own_weight * v) / (weights.sum(-1, keepdim=True) + own_weight)
        return out.reshape(B, 1, H * D)


def bucket(length: int, cap: int | None, smallest: int = 64) -> int:
    """The window a compiled step reads for `length` positions: the next power of two (at least `smallest`),
    at most cap."""
    size = smallest
    while size < length:
        size *= 2
    return min(size, cap) if cap else size


def windows(context: int) -> list[int]:
    """The window lengths a cache of `context` positions is read in, one compiled graph each."""
    sizes = [bucket(1, context)]
    while sizes[-1] < context:
        sizes.append(bucket(sizes[-1] + 1, context))
    return sizes


class _DecodingStep(nn.Module):
    """The graph's function: (token [1, 1], position [1], cache keys, cache values) -> (logits [1, vocab], their
    argmax [1], the next position [1], the token's keys and values [layers, 1, KV, 1, D]), reading `window`
    cached positions. The argmax and the next position are computed here because each small op outside the
    graph costs tens of µs per token (docs/benchmarks.md)."""

    def __init__(self, model: nn.Module, window: int):
        super().__init__()
        self.model, self.window = model, window

    def forward(self, token, position, k, v):
        cache = StaticKVCache(k, v, position, self.window)
        logits = self.model(token, position_ids=position.view(1, 1), cache=cache, logits_to_keep=1)[:, -1]
        return logits, logits.argmax(-1), position + 1, torch.stack(cache.new_k), torch.stack(cache.new_v)


class CompiledStep:
    """`step(token [1, 1], cache)` -> next-token logits [1, vocab], advancing the KVCache by one position; the
    logits' argmax (the greedy token) is left in `step.argmax`.

    Each graph is exported (torch.export) and compiled by inductor on its own (standalone_compile), and the
    step calls it directly with the model's weights and the cache: no dynamo frame evaluation or guard checks
    per token, which cost a micro model's step 0.6-1 ms of its 4-6 (docs/benchmarks.md). The graphs are this
    step's own, keyed by what they were specialised on (window, cache shape, dtype, device); the weights are
    graph inputs, so the graph computes with the model's current values.
    """

    def __init__(self, model: nn.Module):
        from slm.models import Decoder

        if not isinstance(model, Decoder):
            raise ConfigError(f"compiled decoding runs slm decoder models, not {type(model).__name__}: "
                              "decode this one without compile")
        self.model = model
        self.graphs: dict[tuple, Callable] = {}
        self.argmax: torch.Tensor | None = None
        self._next_length, self._next_position = -1, None  # the last step's next position, as a tensor

    def __call__(self, token: torch.Tensor, cache) -> torch.Tensor:
        window = bucket(cache.length + 1, cache.k.shape[3])
        position = (self._next_position if cache.length == self._next_length
                    else torch.tensor([cache.length], device=token.device))
        inputs = (token.view(1, 1), position, cache.k, cache.v)
        key = (window, tuple(cache.k.shape), cache.k.dtype, cache.k.device)
        if key not in self.graphs:
            self.graphs[key] = self._compile(window, inputs)
        logits, self.argmax, self._next_position, new_k, new_v = self.graphs[key](*inputs)
        cache.k.narrow(3, cache.length, 1).copy_(new_k)  # narrow + copy_: 2.3 µs against 3.3 for slice assignment
        cache.v.narrow(3, cache.length, 1).copy_(new_v)
        cache.advance(1)
        self._next_length = cache.length
        return logits

    def _compile(self, window: int, inputs: tuple) -> Callable:
        """The compiled step for this window, as a function of the step's four inputs."""
        step = _DecodingStep(self.model, window)
        options = CPU_INDUCTOR_OPTIONS if inputs[0].device.type == "cpu" else {}
        try:
            with torch.inference_mode(False), torch.no_grad(), torch._inductor.config.patch(options):
                program = torch.export.export(step, inputs, strict=False)
                # The graph takes the weights and buffers first (in the program's order), then the inputs.
                tensors = [step.get_parameter(spec.target) if spec.kind == InputKind.PARAMETER
                           else step.get_buffer(spec.target) if spec.kind == InputKind.BUFFER
                           else program.constants[spec.target]
                           for spec in program.graph_signature.input_specs if spec.kind != InputKind.USER_INPUT]
                compiled = torch._inductor.standalone_compile(program.graph_module, [*tensors, *inputs],
                                                              dynamic_shapes="from_example_inputs")
        except Exception as error:  # mostly a missing toolchain: say so rather than show inductor's traceback
            first_line = (str(error).strip().splitlines() or [""])[0]
            raise SlmError(f"compiling the decoding step failed ({type(error).__name__}: {first_line}). "
                           "inductor needs a working C++ compiler on CPU (or Triton on CUDA); decode "
                           "without compile instead") from error
        return lambda *step_inputs: compiled(*tensors, *step_inputs)
