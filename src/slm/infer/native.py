"""Batch-1 decoding of Llama-family models by a hand-written C++ step (csrc/llama_step.cpp).

Batch-1 decoding reads every weight once per token, so its speed is the speed at which the weights stream
from memory. The inductor graph (slm.infer.compiled) fuses the small operators well, but it leaves a micro
model's step at about 75% of the speed of a bare matrix-vector pass over the same weights: every product
ends in a barrier after which the next one starts its stream cold, and rotary embedding and attention run
as serial sections and library calls between them. The C++ step is one call per token. It runs the whole
step in one OpenMP parallel region. Each thread computes the q/k/v rows of its own KV heads and attends with
them at once; the other products are split by rows in chunks that a thread done with its own share takes
over from another's. Before each barrier a thread asks for the start of the next matrix, so the memory
system keeps streaming across it. On the 2-core test machine a micro step alone was 1.2-1.4x faster than
the inductor graph and decoding through the engine 1.12x, before later changes to the step gained 1.05x,
1.10x and 1.04x more, and weights on huge pages (prepare_for_decoding) 1.2x (docs/benchmarks.md).

It covers what most small models are: arch "llama" in the fused decoding layout
(prepare_for_decoding(model, compile=True), with or without int8=True), fp32 or int8 linear weights without
biases, on CPU, one row at a time. int8 rows are converted to fp32 as they are read and multiplied in fp32,
then scaled per row, as the compiled int8 graph does. `Engine(compile=True)` uses it for such models and the
inductor graph for the rest (phi, bf16, CUDA); `Engine(compile="inductor")` always takes the graph.

The extension is compiled on first use with torch.utils.cpp_extension (a C++ compiler and ninja; about
40 s once, then cached under ~/.cache/torch_extensions).
"""
from __future__ import annotations

import os
import re
import shutil
import sys
import threading
from pathlib import Path

import torch
from torch import nn

from slm.errors import SlmError
from slm.infer.quant import QuantLinear, weight_bytes

_SOURCE = Path(__file__).parent / "csrc" / "llama_step.cpp"
_NO_SCALE = torch.empty(0)
# Threads claim each product's rows in chunks of about this many bytes of weights: each streams its own share
# first, then takes chunks from the end of the others'. On micro, 64 KB ran 1.08-1.10x fixed halves (fp32;
# int8 and nano level); 16 KB cost more in claims than the balance gained (0.94x).
CHUNK_BYTES = 64 * 1024
# fp32 products ask the L2 cache for the weights this many bytes ahead of their loads when the weights stream
# from memory (more bytes than the last-level cache holds). On 2 MiB pages this made micro decode 1.04-1.07x
# faster through the engine, and its bare step 1.2x while the memory was fast, to 0.9 of a plain sum of the
# same bytes; 1-3 KB did alike, 4 KB less, 8 KB nothing, and into L1 nothing. Weights that stay in the
# cache (nano) decoded 0.8-0.9x with it, and int8 rows, paced by their widening, lost with it at 1.5 KB.
AHEAD_BYTES = 3 * 1024
_extension = None
_lock = threading.Lock()


def _build():
    """The compiled extension module (built once per machine and torch version, then loaded from under torch's
    extension directory, TORCH_EXTENSIONS_DIR or ~/.cache/torch_extensions)."""
    global _extension
    with _lock:
        if _extension is None:
            from torch.utils.cpp_extension import get_default_build_root, load

            if shutil.which("ninja") is None:  # the pip package's binary, when the venv's bin is not on PATH
                try:
                    import ninja

                    os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")
                except ImportError:
                    pass
            # The vector width is fixed at build time: name the build by it, so that a cache shared between
            # machines never hands one machine another's instructions.
            capability = re.sub(r"\W", "_", torch.backends.cpu.get_cpu_capability().lower())  # "avx512", "no_avx"...
            flags = {"avx512": ["-mavx512f", "-mavx512dq", "-mfma"], "avx2": ["-mavx2", "-mfma"]}.get(capability, [])
            name = f"slm_llama_step_{capability}"
            root = os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root()
            versions = f"slm-torch{torch.__version__}-py{sys.version_info.major}{sys.version_info.minor}"
            build = Path(root) / versions / name
            if not (build / f"{name}.so").exists():
                print("slm: building the C++ decoding step (once per machine and torch version, about 40 s)",
                      file=sys.stderr)
            try:
                build.mkdir(parents=True, exist_ok=True)
                _extension = load(name, [str(_SOURCE)], build_directory=str(build),
                                  extra_cflags=["-O3", "-fopenmp", *flags], extra_ldflags=["-fopenmp"])
            except Exception as error:
                first_line = (str(error).strip().splitlines() or [""])[0]
                raise SlmError(f"building slm's C++ decoding step failed ({type(error).__name__}: {first_line}). "
                               "It needs a C++ compiler and ninja; decode with compile='inductor' or without "
                               "compile instead") from error
    return _extension


def unsupported(model: nn.Module) -> str | None:
    """Why the C++ step cannot decode this model, or None when it can."""
    from slm.models import Decoder

    if not isinstance(model, Decoder):
        return f"it decodes slm decoder models, not {type(model).__name__}"
    cfg = model.config
    if cfg.arch != "llama" or cfg.bias:
        return f"it decodes Llama-family models without biases (this one: arch {cfg.arch!r}, bias {cfg.bias})"
    weight = model.embed.weight
    if weight.device.type != "cpu" or weight.dtype != torch.float32:
        return f"it runs fp32 weights on CPU (these: {weight.dtype} on {weight.device.type})"
    for block in model.layers:
        if block.attn.qkv_proj is None or block.mlp.gate_up_proj is None:
            return "it needs the fused decoding layout: prepare_for_decoding(model, compile=True)"
        linears = (block.attn.qkv_proj, block.attn.o_proj, block.mlp.gate_up_proj, block.mlp.down_proj)
        if not all(isinstance(m, (nn.Linear, QuantLinear)) for m in linears):
            return "it multiplies [out, in] fp32 or int8 weights (nn.Linear, QuantLinear)"
    if not isinstance(model.lm_head, (nn.Linear, QuantLinear)) or model.lm_head.bias is not None:
        return "it needs an fp32 or int8 LM head without a bias"
    return None


def last_level_cache_bytes(default: int = 32 << 20) -> int:
    """The largest CPU cache of this machine as Linux reports it (cpu0's L3 or L2), else `default`."""
    sizes = []
    for path in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = path.read_text().strip().upper()
        scale = {"K": 1 << 10, "M": 1 << 20}.get(text[-1:], 1)
        digits = text.rstrip("KM")
        if digits.isdigit():
            sizes.append(int(digits) * scale)
    return max(sizes, default=default)


def _linear(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, scale) as the C++ step takes a linear: int8 rows and their scales, or fp32 rows and no scale."""
    if isinstance(module, QuantLinear):
        return module.weight_int8, module.scale
    return module.weight.detach(), _NO_SCALE


class NativeStep:
    """`step(token [1], cache)` -> next-token logits [1, vocab], advancing the KVCache by one position, with
    the greedy token in `step.argmax`: CompiledStep's interface, computed by csrc/llama_step.cpp.

    The C++ object holds the model's weight tensors themselves (no copies), so later changes to them count.
    The logits tensor is reused: it holds the latest step's values, as the engine consumes them.
    `chunk_bytes` sets the chunks in which threads claim each product's rows (CHUNK_BYTES), and `ahead_bytes`
    how far ahead fp32 rows are asked into the L2 cache (0: not at all; by default AHEAD_BYTES when the
    weights are larger than the last-level cache). The tokens depend on neither.
    """

    def __init__(self, model: nn.Module, chunk_bytes: int = CHUNK_BYTES, ahead_bytes: int | None = None):
        reason = unsupported(model)
        if reason:
            raise SlmError(f"the C++ decoding step cannot decode this model: {reason}")
        cfg = model.config
        blocks = model.layers
        if ahead_bytes is None:
            ahead_bytes = AHEAD_BYTES if weight_bytes(model) > last_level_cache_bytes() else 0
        self.ahead_bytes = ahead_bytes

        def norms(get):
            return [get(b).weight.detach() for b in blocks]

        def linears(get):
            return [_linear(get(b)) for b in blocks]

        self._impl = _build().LlamaStep(
            model.embed.weight.detach(), norms(lambda b: b.attn_norm), linears(lambda b: b.attn.qkv_proj),
            linears(lambda b: b.attn.o_proj), norms(lambda b: b.mlp_norm), linears(lambda b: b.mlp.gate_up_proj),
            linears(lambda b: b.mlp.down_proj), model.norm.weight.detach(), _linear(model.lm_head),
            model.rope_cos, model.rope_sin, cfg.n_heads, cfg.n_kv_heads, cfg.norm_eps, chunk_bytes, ahead_bytes)
        self.logits = torch.empty(1, cfg.vocab_size)
        self._flat_logits = self.logits.view(-1)  # made once: each torch op per token costs tens of µs here
        # Two argmax buffers used in turn: a token the engine holds stays valid through the next step.
        self._argmax = [torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long)]
        self.argmax: torch.Tensor | None = None

    def __call__(self, token: torch.Tensor, cache) -> torch.Tensor:
        if cache.k.shape[1] != 1:
            raise ValueError(f"the C++ step decodes one row, not {cache.k.shape[1]}")
        out = self._argmax[cache.length % 2]
        self._impl.step(token, cache.length, cache.k, cache.v, self._flat_logits, out)
        cache.advance(1)
        self.argmax = out
        return self.logits
