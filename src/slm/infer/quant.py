"""Weight-only int8 quantization: each nn.Linear's weight becomes int8 with one fp32 scale per output channel.

Symmetric per output channel: scale_o = max_i |W_oi| / 127, q_oi = round(W_oi / scale_o) in [-127, 127].
The matmul reads int8 weights (a quarter of fp32's bytes, which is what batch-1 decoding is bound by) through
PyTorch's int8-weight kernel (aten._weight_int8pack_mm). On CPU that kernel is fast only with bf16
activations (its fp32 path is several times slower than an fp32 matmul), so activations are rounded to bf16
for the product and the result is returned in the input dtype; the perplexity change reported by
benchmarks/decode.py includes that rounding. Compiled one-row decoding (Engine(compile=True)) instead
computes in fp32 on the int8 weights and their scales, with no rounding of the activations.

The embedding table stays in floating point (a lookup reads one row per token, so it costs no bandwidth);
the LM head is quantized unless include_lm_head=False. With tied embeddings the quantized head becomes its
own int8 copy, so the table and the head are no longer one tensor (inference only).
"""
from __future__ import annotations

import mmap
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


def quantize_weight(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 weight [out, in], fp32 scale [out])."""
    w = weight.detach().float()
    scale = (w.abs().amax(dim=1) / 127.0).clamp_min(1e-12)
    q = torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    return q.contiguous(), scale


class QuantLinear(nn.Module):
    def __init__(self, weight_int8: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None = None):
        super().__init__()
        self.out_features, self.in_features = weight_int8.shape
        self.register_buffer("weight_int8", weight_int8)
        self.register_buffer("scale", scale)
        self.register_buffer("scale_bf16", scale.to(torch.bfloat16), persistent=False)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "QuantLinear":
        q, scale = quantize_weight(linear.weight)
        return cls(q, scale.to(linear.weight.device), linear.bias)

    def dequantized_weight(self, dtype=torch.float32) -> torch.Tensor:
        return self.weight_int8.to(dtype) * self.scale.to(dtype)[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, self.in_features)
        if torch.compiler.is_compiling() and x2.shape[0] == 1:
            # Compiled one-row decoding (slm.infer.compiled): a multiply-and-sum over the int8 rows, which
            # inductor emits as one loop converting a quarter of fp32's bytes as it reads them.
            y = ((x2.float() * self.weight_int8.float()).sum(-1) * self.scale).to(x.dtype)
        elif x.device.type == "cpu" and x.dtype in (torch.float32, torch.bfloat16):
            y = torch.ops.aten._weight_int8pack_mm(x2.to(torch.bfloat16).contiguous(), self.weight_int8,
                                                   self.scale_bf16).to(x.dtype)
        else:  # other devices / dtypes: convert the int8 weight on the fly (correct, not the fast path)
            y = F.linear(x2, self.weight_int8.to(x.dtype)) * self.scale.to(x.dtype)
        if self.bias is not None:
            y = y + self.bias
        return y.view(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 per-channel"


def replace_linears(model: nn.Module, make, include_lm_head: bool = True, skip: tuple[str, ...] = ()) -> nn.Module:
    """Replace every nn.Linear (except names in `skip`, and the LM head unless include_lm_head) by make(linear)."""
    targets = []
    for name, module in model.named_modules():
        for child_name, child in module.named_children():
            full = f"{name}.{child_name}" if name else child_name
            if not isinstance(child, nn.Linear) or full in skip:
                continue
            if child_name == "lm_head" and not include_lm_head:
                continue
            targets.append((module, child_name, child))
    for parent, child_name, child in targets:
        setattr(parent, child_name, make(child))
    return model


def quantize_int8(model: nn.Module, include_lm_head: bool = True, skip: tuple[str, ...] = ()) -> nn.Module:
    """Replace every nn.Linear (except names in `skip`, and the LM head unless include_lm_head) in place."""
    return replace_linears(model, QuantLinear.from_linear, include_lm_head, skip)


class InputMajorLinear(nn.Module):
    """An inference-only Linear whose weight is stored transposed, [in, out] and contiguous.

    Batch-1 decoding is a matrix-vector product per layer, bound by reading the weights. On the CPUs measured
    here (MKL), `x @ W_t` streams this layout from memory at about 20 GB/s while `F.linear(x, W)` on the usual
    [out, in] layout reaches about 8 GB/s, with one thread or two (docs/benchmarks.md). The numbers computed
    are the same products summed in a different order: logits agree to float rounding, not bit for bit.
    """

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight_t = nn.Parameter(linear.weight.detach().t().contiguous(), requires_grad=False)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x @ self.weight_t
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, input-major"


def input_major_weights(model: nn.Module, include_lm_head: bool = True) -> nn.Module:
    """Store every Linear's weight transposed for fast batch-1 decoding (inference only; a tied LM head gets its
    own transposed copy, so the model then holds the embedding table twice)."""
    return replace_linears(model, InputMajorLinear, include_lm_head)


def _concatenated(linears: list[nn.Linear]) -> nn.Linear:
    first = linears[0]
    fused = nn.Linear(first.in_features, sum(m.out_features for m in linears), bias=first.bias is not None,
                      device=first.weight.device, dtype=first.weight.dtype)
    with torch.no_grad():
        fused.weight.copy_(torch.cat([m.weight for m in linears]))
        if first.bias is not None:
            fused.bias.copy_(torch.cat([m.bias for m in linears]))
    return fused.requires_grad_(False)


def fuse_projections(model: nn.Module) -> nn.Module:
    """Inference only: each attention's q, k and v projections become one Linear (qkv_proj), and each SwiGLU's
    gate and up projections one (gate_up_proj). A decoded token then runs 4 matrix-vector products per
    layer instead of 7, and rotates q and k in one pass; per-op overhead is most of a small model's step.

    Run it before input_major_weights or quantize_int8, which then convert the fused Linears. The separate
    projections are removed (the model can no longer be saved or trained as an HF checkpoint).
    """
    from slm.models.layers import Attention, SwiGLU

    for module in model.modules():
        if isinstance(module, Attention) and module.qkv_proj is None:
            module.qkv_proj = _concatenated([module.q_proj, module.k_proj, module.v_proj])
            del module.q_proj, module.k_proj, module.v_proj
        elif isinstance(module, SwiGLU) and module.gate_up_proj is None:
            module.gate_up_proj = _concatenated([module.gate_proj, module.up_proj])
            del module.gate_proj, module.up_proj
    return model


def prepare_for_decoding(model: nn.Module, int8: bool = False, input_major: bool | None = None,
                         compile: bool = False) -> nn.Module:
    """The inference layout (in place): fused projections, then int8 weights (eager or compiled), or for
    compiled decoding RowDotLinear float weights (slm.infer.compiled), or else (by default on CPU) input-major
    float weights. What Engine.from_pretrained, and so slm generate/chat/serve, decode with. On Linux the
    weights each token reads then move into one buffer of 2 MiB pages (gather_on_huge_pages)."""
    fuse_projections(model)
    if int8:
        quantize_int8(model)
    elif compile:
        from slm.infer.compiled import RowDotLinear

        replace_linears(model, RowDotLinear.from_linear)
    elif input_major if input_major is not None else next(model.parameters()).device.type == "cpu":
        input_major_weights(model)
    gather_on_huge_pages(model)
    return model


def decoding_weights(model: nn.Module) -> list[torch.Tensor]:
    """The tensors one decoded token must read: every linear (float, or int8 and its scales) and norm weight.

    Embedding tables are skipped (a lookup reads one row) unless they double as the LM head, in which case
    the head counts them; rotary tables and other buffers are not weights.
    """
    out, seen = [], set()
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            continue
        tensors = [module.weight_int8, module.scale] if isinstance(module, QuantLinear) else []
        tensors += [p for p in module.parameters(recurse=False)]
        for t in tensors:
            if id(t) not in seen:
                seen.add(id(t))
                out.append(t)
    return out


def weight_bytes(model: nn.Module) -> int:
    """Bytes one decoded token must read (decoding_weights): what the batch-1 roofline divides by."""
    return sum(t.numel() * t.element_size() for t in decoding_weights(model))


HUGE_PAGE = 2 << 20


def huge_page_buffer(nbytes: int) -> torch.Tensor | None:
    """nbytes of zeroed CPU memory (uint8) that the kernel backs with 2 MiB pages where it can, or None where
    transparent huge pages are unavailable (not Linux, or switched off).

    The memory is an anonymous mapping advised MADV_HUGEPAGE, so this works under the common "madvise" setting,
    where memory that does not ask gets 4 KiB pages. It is freed when the last tensor viewing it goes.
    """
    advice = getattr(mmap, "MADV_HUGEPAGE", None)
    setting = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if advice is None or not setting.exists() or "[never]" in setting.read_text():
        return None
    whole_pages = -(-nbytes // HUGE_PAGE) * HUGE_PAGE  # the tail too: huge pages cover aligned 2 MiB only
    mapping = mmap.mmap(-1, whole_pages + HUGE_PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        mapping.madvise(advice)  # before the first touch: pages are faulted in whole 2 MiB at a time
    except OSError:  # a kernel that lists the setting but refuses the advice
        mapping.close()
        return None
    whole = torch.frombuffer(mapping, dtype=torch.uint8)  # holds a reference to the mapping
    start = -whole.data_ptr() % HUGE_PAGE
    return whole[start:start + nbytes]


def gather_on_huge_pages(model: nn.Module, align: int = 64) -> bool:
    """Move the weights each decoded token reads (decoding_weights) into one huge_page_buffer, in place, with
    their values and strides; False (and nothing moved) where there is no such buffer.

    Batch-1 decoding streams every weight once per token. On 4 KiB pages that stream crosses a page, with its
    address translation and a restart of the hardware prefetchers, every 4 KiB; on 2 MiB pages, 512 times
    less often. Micro decoded 1.2x faster through the C++ step (docs/benchmarks.md). The tensors keep their
    identity (their .data is rebound), and another parameter viewing the same memory (an embedding table tied
    to the head) follows, so modules and steps built afterwards see the moved values.
    """
    tensors = [t for t in decoding_weights(model) if t.device.type == "cpu" and t.numel()]
    layouts = [torch.empty_like(t, device="meta") for t in tensors]  # t's strides where t is dense
    sizes = [-(-t.numel() * t.element_size() // align) * align for t in tensors]
    buffer = huge_page_buffer(sum(sizes)) if tensors else None
    if buffer is None:
        return False
    where = lambda t: (t.data_ptr(), t.dtype, t.shape, t.stride())
    moving, moving_ids = {where(t): t for t in tensors}, {id(t) for t in tensors}
    followers = [(t, moving[where(t)]) for t in [*model.parameters(), *model.buffers()]
                 if id(t) not in moving_ids and where(t) in moving]
    offset = 0
    for t, layout, size in zip(tensors, layouts, sizes):
        storage = buffer[offset:offset + t.numel() * t.element_size()].view(t.dtype)
        moved = storage.as_strided(t.shape, layout.stride())
        moved.copy_(t.detach())
        t.data = moved
        offset += size
    for follower, leader in followers:
        follower.data = leader.data
    return True
