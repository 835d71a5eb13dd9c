"""The decoder family: Llama-2 style (TinyLlama, LiteLlama) and phi style, one class set by one config.

    llama:  x = x + attn(rmsnorm(x));  x = x + swiglu(rmsnorm(x))        rotary on all channels, no biases
    phi:    h = layernorm(x);  x = x + attn(h) + gelu_mlp(h)               partial rotary, biases everywhere
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import torch
import torch.utils.checkpoint
from torch import nn

from slm.errors import ConfigError
from slm.models.layers import (Attention, GeluMLP, KVCache, LayerNorm, RMSNorm, SwiGLU, chunked_lm_loss,
                               count_parameters, default_init_std, init_weights, make_attention_mask, rope_tables)


@dataclass
class ModelConfig:
    arch: Literal["llama", "phi"] = "llama"
    vocab_size: int = 32000
    dim: int = 2048
    n_layers: int = 22
    n_heads: int = 32
    n_kv_heads: int | None = None  # None: as many as query heads (no grouping)
    head_dim: int | None = None  # None: dim // n_heads
    ffn_dim: int = 5632
    max_seq_len: int = 2048
    rope_theta: float = 10000.0
    rotary_fraction: float = 1.0  # phi-1.5 rotates 32 of 64 channels per head
    norm_eps: float = 1e-5
    tie_embeddings: bool = False
    bias: bool | None = None  # None: by arch (phi has biases, llama has none)
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    pad_token_id: int | None = None

    def __post_init__(self):
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_heads
        if self.bias is None:
            self.bias = self.arch == "phi"
        self.validate()
        if self.head_dim is None:
            self.head_dim = self.dim // self.n_heads

    def validate(self) -> None:
        if self.arch not in ("llama", "phi"):
            raise ConfigError(f"arch must be 'llama' or 'phi', got {self.arch!r}")
        for name in ("vocab_size", "dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim", "max_seq_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.head_dim is None and self.dim % self.n_heads:
            raise ConfigError(f"n_heads ({self.n_heads}) must divide dim ({self.dim}), or set head_dim")
        if self.n_heads % self.n_kv_heads:
            raise ConfigError(f"n_kv_heads ({self.n_kv_heads}) must divide n_heads ({self.n_heads})")
        head_dim = self.head_dim or self.dim // self.n_heads
        if not 0 < self.rotary_fraction <= 1 or int(head_dim * self.rotary_fraction) % 2:
            raise ConfigError(f"rotary_fraction {self.rotary_fraction} must give an even number of "
                              f"rotary channels out of head_dim {head_dim}")
        if self.rope_theta <= 0 or self.norm_eps <= 0:
            raise ConfigError("rope_theta and norm_eps must be positive")
        if self.arch == "phi" and self.tie_embeddings:
            raise ConfigError("phi models have untied embeddings (their output layer has a bias)")

    @property
    def rotary_dim(self) -> int:
        return int(self.head_dim * self.rotary_fraction)

    def replace(self, **changes) -> "ModelConfig":
        return dataclasses.replace(self, **changes)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.parallel = cfg.arch == "phi"
        self.attn = Attention(cfg.dim, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.bias, cfg.bias)
        if self.parallel:
            self.attn_norm = LayerNorm(cfg.dim, eps=cfg.norm_eps)
            self.mlp = GeluMLP(cfg.dim, cfg.ffn_dim, cfg.bias)
        else:
            self.attn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
            self.mlp_norm = RMSNorm(cfg.dim, cfg.norm_eps)
            self.mlp = SwiGLU(cfg.dim, cfg.ffn_dim, cfg.bias)

    def forward(self, x, cos, sin, mask=None, cache=None, layer=0):
        if self.parallel:
            h = self.attn_norm(x)
            return x + self.attn(h, cos, sin, mask, cache, layer) + self.mlp(h)
        x = x + self.attn(self.attn_norm(x), cos, sin, mask, cache, layer)
        return x + self.mlp(self.mlp_norm(x))


class Decoder(nn.Module):
    """A causal LM. `model(input_ids)` returns logits [batch, seq, vocab]."""
    computes_lm_loss = True  # forward(labels=...) returns the loss (slm.train.causal_lm_loss asks for it)

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = LayerNorm(cfg.dim, eps=cfg.norm_eps) if cfg.arch == "phi" else RMSNorm(cfg.dim, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.dim, cfg.vocab_size, bias=cfg.arch == "phi")
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        self.gradient_checkpointing = False
        self.reset_rope()

    def reset_rope(self) -> None:
        """(Re)compute the rotary tables, e.g. after building on the meta device and loading weights."""
        device = self.embed.weight.device
        cos, sin = rope_tables(self.config.rotary_dim, self.config.max_seq_len, self.config.rope_theta,
                               device=None if device.type == "meta" else device)
        self.register_buffer("rope_cos", cos.to(device), persistent=False)
        self.register_buffer("rope_sin", sin.to(device), persistent=False)

    def init_weights(self, seed: int | None = None) -> "Decoder":
        if seed is not None:
            torch.manual_seed(seed)
        init_weights(self, *default_init_std(self.config.dim, self.config.n_layers))
        for m in self.modules():
            if isinstance(m, (RMSNorm, nn.LayerNorm)):
                nn.init.ones_(m.weight)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
        return self

    def new_cache(self, batch_size: int, max_len: int | None = None, dtype=None) -> KVCache:
        cfg = self.config
        return KVCache(cfg.n_layers, batch_size, cfg.n_kv_heads, max_len or cfg.max_seq_len, cfg.head_dim,
                       device=self.embed.weight.device, dtype=dtype or self.embed.weight.dtype)

    def hidden_states(self, input_ids: torch.Tensor, position_ids: torch.Tensor | None = None,
                      attention_mask: torch.Tensor | None = None, cache=None) -> torch.Tensor:
        """Final-norm hidden states [B, T, dim]; heads other than the LM head (a verifier's) start here.

        attention_mask: [B, past + T] padding mask (1 = token) or a ready boolean mask [B, 1, T, past + T].
        position_ids: [B, T]; default past .. past + T - 1.
        """
        B, T = input_ids.shape
        # A cache without `length` (slm.infer.compiled.StaticKVCache) comes with explicit positions.
        past = getattr(cache, "length", 0)
        given_positions = position_ids is not None
        if position_ids is None:
            position_ids = torch.arange(past, past + T, device=input_ids.device).expand(B, T)
        # Default positions end at past + T - 1, so only given ones need the max() check, which would break a
        # compiled graph: compiled decoding (slm.infer.compiled) steps only within the engine's checked cache.
        if past + T > self.config.max_seq_len or (given_positions and position_ids.numel()
                                                  and not torch.compiler.is_compiling()
                                                  and int(position_ids.max()) >= self.config.max_seq_len):
            raise ValueError(f"sequence of {past + T} positions exceeds max_seq_len {self.config.max_seq_len}")
        x = self.embed(input_ids)
        # [B, 1, T, rot] in the activations' dtype, once for every layer's q and k.
        cos = self.rope_cos[position_ids].unsqueeze(1).to(x.dtype)
        sin = self.rope_sin[position_ids].unsqueeze(1).to(x.dtype)
        mask = attention_mask
        if mask is not None and mask.dim() == 2:
            mask = attention_mask_from_padding(mask, T, past)
        elif mask is None and past and T > 1:
            mask = make_attention_mask(T, past, device=input_ids.device)
        for i, layer in enumerate(self.layers):
            if self.gradient_checkpointing and self.training:
                x = torch.utils.checkpoint.checkpoint(layer, x, cos, sin, mask, cache, i, use_reentrant=False)
            else:
                x = layer(x, cos, sin, mask, cache, i)
        if cache is not None and hasattr(cache, "advance"):
            cache.advance(T)
        return self.norm(x)

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, cache=None, logits_to_keep: int = 0,
                labels: torch.Tensor | None = None):
        """Logits [B, T, vocab] (or [B, logits_to_keep, vocab]: decoding needs only the last position).

        With `labels` (shifted, -100 ignored): (summed cross entropy, target count) instead, computed in chunks
        of the vocabulary's logits (slm.models.layers.chunked_lm_loss), never the full [B, T, vocab]; inside
        forward so that DDP, FSDP and torch.compile see the head's use."""
        h = self.hidden_states(input_ids, position_ids, attention_mask, cache)
        if labels is not None:
            return chunked_lm_loss(h, self.lm_head, labels)
        if logits_to_keep:
            h = h[:, -logits_to_keep:]
        return self.lm_head(h)

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        return count_parameters(self, exclude_embeddings)


def attention_mask_from_padding(padding: torch.Tensor, q_len: int, past: int) -> torch.Tensor:
    if padding.shape[-1] != past + q_len:
        raise ValueError(f"attention_mask covers {padding.shape[-1]} positions, expected past + new = {past + q_len}")
    return make_attention_mask(q_len, past, padding=padding, device=padding.device)


def flops_per_token(cfg: ModelConfig, seq_len: int | None = None, training: bool = True) -> float:
    """Matmul FLOPs per token: 6N + 12·L·d_attn·T for training (PaLM/nanoGPT convention), a third of it forward."""
    n = param_count(cfg, exclude_embeddings=True)
    n += cfg.dim * cfg.vocab_size  # the LM head is a matmul even when tied; the lookup table is not
    T = seq_len or cfg.max_seq_len
    attn = 12 * cfg.n_layers * cfg.n_heads * cfg.head_dim * T
    total = 6 * n + attn
    return total if training else total / 3


def param_count(cfg: ModelConfig, exclude_embeddings: bool = False) -> int:
    """Parameter count without allocating: the model is built on the meta device."""
    with torch.device("meta"):
        return Decoder(cfg).num_parameters(exclude_embeddings)
