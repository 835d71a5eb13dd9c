"""Building blocks shared by every slm model: norms, rotary embeddings, attention with a KV cache, MLPs."""
from __future__ import annotations

import math
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in fp32 even under bf16: the statistic is a mean of squares over the width.
        y = F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps)
        return self.weight * y.to(x.dtype)


class LayerNorm(nn.LayerNorm):
    """nn.LayerNorm computed in fp32 under bf16 autocast, as CUDA's autocast does (CPU autocast leaves it in
    bf16); the same parameters and state-dict keys, and the same numbers in fp32."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x.float(), self.normalized_shape, self.weight, self.bias, self.eps)
        return y.to(x.dtype)


def rope_tables(rotary_dim: int, max_len: int, theta: float, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of shape [max_len, rotary_dim], in the 'rotate half' layout that HF Llama and Phi use."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, rotary_dim, 2, device=device, dtype=torch.int64).float() / rotary_dim))
    t = torch.arange(max_len, device=device, dtype=torch.float32)
    freqs = torch.outer(t, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the first cos.shape[-1] channels of x [B, H, T, D]; the rest pass (phi's partial rotary).

    cos, sin: [B, T, rot], or [B, 1, T, rot] in x's dtype as the decoder prepares them once per forward.
    """
    rot = cos.shape[-1]
    if cos.dim() == 3:
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    if cos.dtype != x.dtype:
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    if rot == x.shape[-1]:
        return x * cos + rotate_half(x) * sin
    x_rot, x_pass = x[..., :rot], x[..., rot:]
    return torch.cat((x_rot * cos + rotate_half(x_rot) * sin, x_pass), dim=-1)


class Cache(Protocol):
    """What attention needs from a KV cache; `slm.models.KVCache` is the preallocated one.

    `update` stores this step's keys/values for one layer and returns all keys/values the
    step attends to; `length` is how many positions were filled before this step.
    """

    length: int

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


class KVCache:
    """Keys and values for every layer, allocated once: [layers, batch, kv_heads, max_len, head_dim].

    Rows share one write cursor; prompts of different lengths are left-padded and masked.
    `length` advances after each forward (the decoder calls `advance`), and `truncate` rolls it back,
    which is all speculative decoding needs to discard rejected draft tokens.
    """

    def __init__(self, n_layers: int, batch_size: int, n_kv_heads: int, max_len: int, head_dim: int,
                 device=None, dtype=torch.float32):
        shape = (n_layers, batch_size, n_kv_heads, max_len, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.max_len = max_len
        self.length = 0

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        end = self.length + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache full: {end} positions needed, {self.max_len} allocated")
        self.k[layer, :, :, self.length:end] = k
        self.v[layer, :, :, self.length:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def advance(self, n: int) -> None:
        self.length += n

    def truncate(self, length: int) -> None:
        if not 0 <= length <= self.length:
            raise ValueError(f"cannot truncate a cache of length {self.length} to {length}")
        self.length = length

    def select(self, rows: torch.Tensor | list[int]) -> None:
        """Keep only these batch rows (finished sequences leave the batch)."""
        self.k = self.k[:, rows]
        self.v = self.v[:, rows]

    def add_rows(self, other: "KVCache") -> None:
        """Append another cache's rows (sequences joining a running batch), their filled positions placed
        to end at this cache's length, as left padding would place them; the caller masks the gap."""
        filled = other.length
        if filled > self.length:
            raise ValueError(f"cannot add rows of {filled} positions to a cache of length {self.length}")
        rows = other.k.shape[1]
        for name in ("k", "v"):
            mine, theirs = getattr(self, name), getattr(other, name)
            new = mine.new_zeros((mine.shape[0], rows, *mine.shape[2:]))
            new[:, :, :, self.length - filled:self.length] = theirs[:, :, :, :filled]
            setattr(self, name, torch.cat([mine, new], dim=1))


class Attention(nn.Module):
    """Multi-head attention with grouped-query heads, rotary positions and an optional KV cache.

    `qkv_proj`, when set (slm.infer.quant.fuse_projections, inference only), replaces the three projections
    by one product and rotates q and k together: fewer, larger operations per decoded token.
    """

    def __init__(self, dim: int, n_heads: int, n_kv_heads: int, head_dim: int, bias: bool, out_bias: bool):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, head_dim
        self.q_proj = nn.Linear(dim, n_heads * head_dim, bias=bias)
        self.k_proj = nn.Linear(dim, n_kv_heads * head_dim, bias=bias)
        self.v_proj = nn.Linear(dim, n_kv_heads * head_dim, bias=bias)
        self.o_proj = nn.Linear(n_heads * head_dim, dim, bias=out_bias)
        self.qkv_proj: nn.Module | None = None

    def forward(self, x, cos, sin, mask=None, cache: Cache | None = None, layer: int = 0):
        B, T, _ = x.shape
        H, KV, D = self.n_heads, self.n_kv_heads, self.head_dim
        if self.qkv_proj is not None:
            qkv = self.qkv_proj(x).view(B, T, H + 2 * KV, D).transpose(1, 2)
            qk = apply_rope(qkv[:, :H + KV], cos, sin)
            q, k, v = qk[:, :H], qk[:, H:], qkv[:, H + KV:]
        else:
            q = apply_rope(self.q_proj(x).view(B, T, H, D).transpose(1, 2), cos, sin)
            k = apply_rope(self.k_proj(x).view(B, T, KV, D).transpose(1, 2), cos, sin)
            v = self.v_proj(x).view(B, T, KV, D).transpose(1, 2)
        if getattr(cache, "attend", None) is not None:  # a cache that computes attention itself (slm.infer.compiled)
            return self.o_proj(cache.attend(layer, q, k, v))
        if cache is not None:
            k, v = cache.update(layer, k, v)
        rep = H // KV
        if rep > 1 and T == 1 and (mask is None or mask.shape[1] == 1):
            # One new token: its heads, grouped [B, KV, rep, D], attend to the cache as it is. The same
            # arithmetic as expanding K/V, without copying the whole cache every decoding step.
            y = F.scaled_dot_product_attention(q.reshape(B, KV, rep, D), k, v, attn_mask=mask)
            return self.o_proj(y.reshape(B, 1, H * D))
        # No mask means plain causal attention over exactly these T positions (training, one-shot
        # prefill); with T == 1 and a cache the new token sees everything, which is also mask-free.
        is_causal = mask is None and k.shape[2] == T and T > 1
        if rep > 1:
            # Expanding K/V keeps SDPA on its fused kernels; enable_gqa falls back to the math path on CPU.
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, H * D))


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)); `gate_up_proj`, when set (fuse_projections, inference), is gate and up in one."""

    def __init__(self, dim: int, hidden: int, bias: bool = False):
        super().__init__()
        self.gate_proj = nn.Linear(dim, hidden, bias=bias)
        self.up_proj = nn.Linear(dim, hidden, bias=bias)
        self.down_proj = nn.Linear(hidden, dim, bias=bias)
        self.gate_up_proj: nn.Module | None = None

    def forward(self, x):
        if self.gate_up_proj is not None:
            gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        else:
            gate, up = self.gate_proj(x), self.up_proj(x)
        return self.down_proj(F.silu(gate) * up)


class GeluMLP(nn.Module):
    """fc2(gelu(fc1(x))): phi's "gelu_new" is the tanh form (the default), BERT/RoBERTa's "gelu" the exact erf."""

    def __init__(self, dim: int, hidden: int, bias: bool = True, approximate: str = "tanh"):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, bias=bias)
        self.fc2 = nn.Linear(hidden, dim, bias=bias)
        self.approximate = approximate

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate=self.approximate))


def padding_attention_mask(padding: torch.Tensor) -> torch.Tensor:
    """A boolean SDPA mask [B, 1, 1, T] from an HF padding mask [B, T] (1 = token): bidirectional attention
    that hides pad keys. A fully padded row would attend to nothing (NaN), so such a row sees every key instead."""
    keep = padding.bool()
    keep = keep | ~keep.any(dim=-1, keepdim=True)
    return keep[:, None, None, :]


def make_attention_mask(q_len: int, past: int, padding: torch.Tensor | None = None,
                   document_ids: torch.Tensor | None = None, device=None,
                   prefix_lengths: torch.Tensor | None = None) -> torch.Tensor:
    """A boolean SDPA mask [B or 1, 1, q_len, past + q_len]: True where a query may attend.

    Causal over absolute positions; `padding` [B, past + q_len] (1 = real token, HF convention) hides
    pad keys; `document_ids` [B, q_len] (no cache) keeps packed documents from seeing each other;
    `prefix_lengths` [B] makes a prefix LM: the first prefix_lengths[b] keys are visible to every query of row b
    (the prefix attends bidirectionally, the rest causally).
    Every query may always see itself, so a fully padded row yields zeros instead of NaN.
    """
    k_len = past + q_len
    q_pos = torch.arange(past, k_len, device=device).view(-1, 1)
    k_pos = torch.arange(k_len, device=device).view(1, -1)
    mask = (k_pos <= q_pos).view(1, 1, q_len, k_len)
    if prefix_lengths is not None:
        mask = mask | (k_pos.view(1, 1, 1, k_len) < prefix_lengths.to(k_pos.device).view(-1, 1, 1, 1))
    if padding is not None:
        mask = mask & padding.bool().view(padding.shape[0], 1, 1, k_len)
    if document_ids is not None:
        if past:
            raise ValueError("document masks are for whole sequences, not cached decoding")
        same = document_ids.unsqueeze(-1) == document_ids.unsqueeze(-2)
        mask = mask & same.unsqueeze(1)
    return mask | (k_pos == q_pos).view(1, 1, q_len, k_len)


def count_parameters(module: nn.Module, exclude_embeddings: bool = False, embedding_suffix: str = "embed.weight"
                     ) -> int:
    """Parameters counted once each (tied weights are one tensor), optionally without the embedding tables."""
    seen, total = set(), 0
    for name, p in module.named_parameters():
        if id(p) in seen or (exclude_embeddings and name.endswith(embedding_suffix)):
            continue
        seen.add(id(p))
        total += p.numel()
    return total


def init_weights(module: nn.Module, std: float, residual_std: float) -> None:
    """TinyLlama's init: N(0, std) for linears and embeddings, a smaller std for residual outputs."""
    for name, p in module.named_parameters():
        if p.dim() < 2:
            if name.endswith("bias"):
                nn.init.zeros_(p)
            continue
        is_residual = name.endswith(("o_proj.weight", "down_proj.weight", "fc2.weight"))
        nn.init.normal_(p, mean=0.0, std=residual_std if is_residual else std)


def default_init_std(dim: int, n_layers: int) -> tuple[float, float]:
    return math.sqrt(2.0 / (5 * dim)), 1.0 / math.sqrt(dim) / n_layers


@torch.no_grad()
def resize_vocabulary(model: nn.Module, size: int) -> nn.Module:
    """Grow every embedding table and output head of `model` sized by its vocabulary to `size` rows, each new row
    the mean of the old ones (so new tokens start as an average token), ties kept; config.vocab_size follows."""
    old = model.config.vocab_size
    if size < old:
        raise ValueError(f"resize_vocabulary only grows a vocabulary ({old} -> {size})")
    grown: dict[int, nn.Parameter] = {}

    def grow(weight: nn.Parameter) -> nn.Parameter:
        if id(weight) not in grown:
            extra = weight.mean(dim=0, keepdim=True).expand(size - old, *weight.shape[1:])
            grown[id(weight)] = nn.Parameter(torch.cat([weight, extra]), requires_grad=weight.requires_grad)
        return grown[id(weight)]

    for module in model.modules():
        if isinstance(module, nn.Embedding) and module.num_embeddings == old:
            module.weight = grow(module.weight)
            module.num_embeddings = size
        elif isinstance(module, nn.Linear) and module.out_features == old:
            module.weight = grow(module.weight)
            if module.bias is not None:
                module.bias = grow(module.bias)
            module.out_features = size
    model.config.vocab_size = size
    return model


# Logits a chunk of the LM loss may hold at once (floats): 2^26 is 256 MB in fp32, so a 49K vocabulary takes
# about 1,365 tokens per chunk, while nano's whole batch is one chunk (computed the plain way).
LOSS_CHUNK_LOGITS = 2 ** 26


def _head_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                        labels: torch.Tensor) -> torch.Tensor:
    logits = nn.functional.linear(hidden, weight, bias)
    # cross_entropy upcasts bf16 logits itself (autocast); no extra fp32 copy of the logits is made here.
    return nn.functional.cross_entropy(logits, labels, ignore_index=-100, reduction="sum")


def chunked_lm_loss(hidden: torch.Tensor, head: nn.Linear, labels: torch.Tensor,
                    chunk_logits: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross entropy of head(hidden) against labels (-100 ignored) and the target count, without the
    full [tokens, vocab] logits: positions without a target are dropped first, the rest go through the head in
    chunks, each recomputed in the backward pass (activation checkpointing) so that only one chunk's logits
    exist at a time, forward or backward. Equal to the plain loss (and its gradients) up to float rounding."""
    hidden = hidden.reshape(-1, hidden.shape[-1])
    labels = labels.reshape(-1)
    keep = labels != -100
    count = keep.sum()
    if not torch.compiler.is_compiling() and bool(count < labels.numel()):
        hidden, labels = hidden[keep], labels[keep]  # SFT: prompts carry no loss, so no logits are made for them
    step = max(1, (chunk_logits or LOSS_CHUNK_LOGITS) // head.out_features)
    if hidden.shape[0] <= step:
        return _head_cross_entropy(hidden, head.weight, head.bias, labels), count
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, hidden.shape[0], step):
        part = torch.utils.checkpoint.checkpoint(_head_cross_entropy, hidden[start:start + step], head.weight,
                                                 head.bias, labels[start:start + step], use_reentrant=False)
        total = total + part.float()
    return total, count
