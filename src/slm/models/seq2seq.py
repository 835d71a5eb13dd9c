"""The encoder-decoder family: T5 v1.0 and v1.1 / Flan-T5, one class set by one config.

    encoder: x = x + attn(rms(x), bias_bidir + pad);  x = x + ffn(rms(x))            (pre-norm, no biases)
    decoder: x = x + attn(rms(x), bias_causal);  x = x + cross(rms(x), encoder);  x = x + ffn(rms(x))

Positions are learned scalar biases per head over log-spaced relative-distance buckets (bidirectional in the
encoder, looking back only in the decoder); each stack has one table, shared by its layers. Attention scores are
not scaled by 1/sqrt(d) (T5 folds that into its init). v1.0 ties the output projection to the embedding and scales
the decoder's output by dim**-0.5 first; v1.1 has its own `lm_head` and no scaling; `ffn` is "relu" (v1.0) or
"gated-gelu" (v1.1, Flan-T5) or any HF `feed_forward_proj` of the same form.

Forward contract: `model(input_ids, attention_mask=None, decoder_input_ids=None)` -> logits [B, T_dec, vocab]
(decoder_input_ids are the labels shifted right behind decoder_start_token_id: `shift_right`); an encoder-only
model (`encoder_only`, HF's T5EncoderModel) returns the encoder's last states [B, T, dim]. `encode` and `decode`
are the two halves; `Seq2SeqCache` holds the decoder's growing self-attention keys/values and the cross-attention
keys/values computed once per request from the encoder states. `Seq2SeqRunner` is the engine's view of the model
(slm.infer.engine): its prefill encodes the prompt, its steps decode.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from slm.errors import ConfigError
from slm.models.layers import KVCache, RMSNorm, count_parameters

_ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "gelu_new": lambda x: F.gelu(x, approximate="tanh"), "silu": F.silu}


@dataclass
class Seq2SeqConfig:
    arch: str = "t5"
    vocab_size: int = 32128
    dim: int = 512
    n_layers: int = 6
    n_decoder_layers: int | None = None  # None: n_layers
    n_heads: int = 8
    head_dim: int = 64  # HF d_kv; need not be dim / n_heads
    ffn_dim: int = 2048
    ffn: str = "relu"  # HF feed_forward_proj: "relu" (v1.0), "gated-gelu" (v1.1, Flan-T5), "gated-silu", ...
    relative_buckets: int = 32
    relative_max_distance: int = 128
    dropout: float = 0.1
    norm_eps: float = 1e-6
    tie_embeddings: bool = True  # v1.0: lm_head is the embedding
    scale_output: bool | None = None  # the decoder's output times dim**-0.5 before lm_head; None: tie_embeddings
    encoder_only: bool = False  # HF T5EncoderModel: no decoder, no lm_head
    max_seq_len: int = 512  # the longest encoder input and decoder sequence slm accepts (T5 trained at 512)
    pad_token_id: int | None = 0
    eos_token_id: int | None = 1
    decoder_start_token_id: int = 0
    bos_token_id: int | None = None

    def __post_init__(self):
        if self.n_decoder_layers is None:
            self.n_decoder_layers = self.n_layers
        if self.scale_output is None:
            self.scale_output = self.tie_embeddings
        self.validate()

    def validate(self) -> None:
        for name in ("vocab_size", "dim", "n_layers", "n_decoder_layers", "n_heads", "head_dim", "ffn_dim",
                     "relative_buckets", "relative_max_distance", "max_seq_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        gated, act = self.activation
        if act not in _ACTIVATIONS or self.ffn.count("-") > 1 or ("-" in self.ffn and not gated):
            raise ConfigError(f"ffn must be 'relu', 'gelu', 'gated-gelu', 'gated-silu', ... (HF feed_forward_proj), "
                              f"got {self.ffn!r}")
        if self.relative_buckets < 4 or self.relative_max_distance < self.relative_buckets // 2:
            raise ConfigError("relative_buckets must be >= 4 and relative_max_distance >= relative_buckets / 2 "
                              "(half the buckets are exact distances, the rest log-spaced up to the maximum)")
        if not 0 <= self.dropout < 1:
            raise ConfigError("dropout must be in [0, 1)")

    @property
    def activation(self) -> tuple[bool, str]:
        """(gated, activation name) from `ffn`; HF reads "gated-gelu" as the tanh gelu (gelu_new)."""
        gated = self.ffn.startswith("gated-")
        act = self.ffn.split("-")[-1]
        return gated, "gelu_new" if self.ffn == "gated-gelu" else act

    def replace(self, **changes) -> "Seq2SeqConfig":
        return dataclasses.replace(self, **changes)


def relative_position_bucket(relative: torch.Tensor, bidirectional: bool, buckets: int, max_distance: int):
    """T5's bucket of each key-minus-query distance: half the buckets are exact small distances, the other half
    log-spaced up to max_distance (and beyond, the last bucket); bidirectional splits them by direction, causal
    attention sees only the past."""
    bucket = torch.zeros_like(relative)
    if bidirectional:
        buckets //= 2
        bucket = bucket + (relative > 0).long() * buckets
        distance = relative.abs()
    else:
        distance = (-relative).clamp_min(0)
    exact = buckets // 2
    log_spaced = exact + (torch.log(distance.float() / exact) / math.log(max_distance / exact)
                          * (buckets - exact)).long()
    log_spaced = log_spaced.clamp_max(buckets - 1)
    return bucket + torch.where(distance < exact, distance, log_spaced)


def additive_mask(keep: torch.Tensor, dtype) -> torch.Tensor:
    """A boolean mask (True = may attend) as scores to add: 0 or the dtype's minimum (as HF does, so that a row
    with nothing to see stays finite)."""
    return torch.zeros(keep.shape, dtype=dtype, device=keep.device).masked_fill(~keep, torch.finfo(dtype).min)


class Attention(nn.Module):
    """Self- or cross-attention without biases or score scaling; q/k/v/o are HF's names (peft targets carry over)."""

    def __init__(self, cfg: Seq2SeqConfig):
        super().__init__()
        self.n_heads, self.head_dim, self.dropout = cfg.n_heads, cfg.head_dim, cfg.dropout
        inner = cfg.n_heads * cfg.head_dim
        self.q = nn.Linear(cfg.dim, inner, bias=False)
        self.k = nn.Linear(cfg.dim, inner, bias=False)
        self.v = nn.Linear(cfg.dim, inner, bias=False)
        self.o = nn.Linear(inner, cfg.dim, bias=False)

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.n_heads, self.head_dim).transpose(1, 2)

    def keys_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.heads(self.k(x)), self.heads(self.v(x))

    def forward(self, x, scores_bias, keys_values=None, cache: KVCache | None = None, layer: int = 0):
        """keys_values: the cross-attention source's (k, v), else self-attention over x (and the cache)."""
        q = self.heads(self.q(x))
        if keys_values is None:
            k, v = self.keys_values(x)
            if cache is not None:
                k, v = cache.update(layer, k, v)
        else:
            k, v = keys_values
        if scores_bias is not None and scores_bias.dtype != q.dtype:
            # Under autocast the bias table stays fp32 while q is bf16; SDPA would then leave its fused kernel.
            scores_bias = scores_bias.to(q.dtype)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=scores_bias, scale=1.0,
                                           dropout_p=self.dropout if self.training else 0.0)
        B, _, T, _ = y.shape
        return self.o(y.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim))


class FeedForward(nn.Module):
    """wo(act(wi(x))), or gated: wo(act(wi_0(x)) * wi_1(x)); dropout before wo, as T5 has it."""

    def __init__(self, cfg: Seq2SeqConfig):
        super().__init__()
        self.gated, act = cfg.activation
        self.act = _ACTIVATIONS[act]
        if self.gated:
            self.wi_0 = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
            self.wi_1 = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        else:
            self.wi = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.wo = nn.Linear(cfg.ffn_dim, cfg.dim, bias=False)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x):
        h = self.act(self.wi_0(x)) * self.wi_1(x) if self.gated else self.act(self.wi(x))
        return self.wo(self.drop(h))


class Block(nn.Module):
    def __init__(self, cfg: Seq2SeqConfig, cross: bool):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.cross_norm = RMSNorm(cfg.dim, cfg.norm_eps) if cross else None
        self.cross_attn = Attention(cfg) if cross else None
        self.mlp_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.mlp = FeedForward(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, self_bias, cross_kv=None, cross_bias=None, cache=None, layer: int = 0):
        x = x + self.drop(self.attn(self.attn_norm(x), self_bias, cache=cache, layer=layer))
        if self.cross_attn is not None:
            x = x + self.drop(self.cross_attn(self.cross_norm(x), cross_bias, keys_values=cross_kv))
        return x + self.drop(self.mlp(self.mlp_norm(x)))


class Stack(nn.Module):
    """The encoder (bidirectional) or the decoder (causal, with cross-attention), its bias table and final norm."""

    def __init__(self, cfg: Seq2SeqConfig, decoder: bool):
        super().__init__()
        self.config, self.causal = cfg, decoder
        n_layers = cfg.n_decoder_layers if decoder else cfg.n_layers
        self.relative_bias = nn.Embedding(cfg.relative_buckets, cfg.n_heads)
        self.layers = nn.ModuleList(Block(cfg, cross=decoder) for _ in range(n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.drop = nn.Dropout(cfg.dropout)
        self.gradient_checkpointing = False

    def position_bias(self, q_len: int, k_len: int, past: int = 0) -> torch.Tensor:
        """[1, heads, q_len, k_len]: each query (at past + i) against each key (at j)."""
        device = self.relative_bias.weight.device
        query = torch.arange(past, past + q_len, device=device)[:, None]
        key = torch.arange(k_len, device=device)[None, :]
        cfg = self.config
        buckets = relative_position_bucket(key - query, not self.causal, cfg.relative_buckets,
                                           cfg.relative_max_distance)
        return self.relative_bias(buckets).permute(2, 0, 1).unsqueeze(0)

    def forward(self, x, keep: torch.Tensor | None, past: int = 0, cross_kv=None, cross_bias=None, cache=None):
        """keep: boolean [B or 1, 1, T or 1, keys] of what each query may see, or None for everything."""
        T = x.shape[1]
        bias = self.position_bias(T, past + T, past)
        if keep is not None:
            bias = bias + additive_mask(keep, bias.dtype)
        x = self.drop(x)
        for i, layer in enumerate(self.layers):
            kv = cross_kv[i] if cross_kv is not None else None
            if self.gradient_checkpointing and self.training:
                x = torch.utils.checkpoint.checkpoint(layer, x, bias, kv, cross_bias, use_reentrant=False)
            else:
                x = layer(x, bias, kv, cross_bias, cache, i)
        return self.drop(self.norm(x))


class Seq2SeqCache:
    """The decoder's self-attention cache (grows one position a step) and each layer's cross-attention keys and
    values over the encoder states (fixed for the request), with the encoder's padding as scores to add.
    `length`, `truncate`, `select` are what the engine and beam search use."""

    def __init__(self, self_kv: KVCache, cross_kv: list[tuple[torch.Tensor, torch.Tensor]], cross_bias):
        self.self_kv, self.cross_kv, self.cross_bias = self_kv, cross_kv, cross_bias

    @property
    def length(self) -> int:
        return self.self_kv.length

    @property
    def max_len(self) -> int:
        return self.self_kv.max_len

    def update(self, layer, k, v):
        return self.self_kv.update(layer, k, v)

    def advance(self, n: int) -> None:
        self.self_kv.advance(n)

    def truncate(self, length: int) -> None:
        self.self_kv.truncate(length)

    def select(self, rows) -> None:
        self.self_kv.select(rows)
        self.cross_kv = [(k[rows], v[rows]) for k, v in self.cross_kv]
        self.cross_bias = self.cross_bias[rows]


class Seq2Seq(nn.Module):
    def __init__(self, cfg: Seq2SeqConfig):
        super().__init__()
        self.config = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.encoder = Stack(cfg, decoder=False)
        self.decoder = None if cfg.encoder_only else Stack(cfg, decoder=True)
        self.lm_head = None if cfg.encoder_only else nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        self.tie_weights()

    def tie_weights(self) -> None:
        if self.lm_head is not None and self.config.tie_embeddings:
            self.lm_head.weight = self.embed.weight

    def init_weights(self, seed: int | None = None) -> "Seq2Seq":
        """Mesh TensorFlow's init, as T5 was trained: N(0, 1) embeddings, fan-in scaled projections (queries also
        by 1/sqrt(head_dim), which stands in for the scaling attention omits), unit norms."""
        if seed is not None:
            torch.manual_seed(seed)
        cfg = self.config
        for name, m in self.named_modules():
            if isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=1.0 if m is self.embed else cfg.dim ** -0.5)
            elif isinstance(m, nn.Linear):
                fan_in = m.weight.shape[1]
                scale = cfg.head_dim ** -0.5 if name.endswith(".q") else 1.0
                nn.init.normal_(m.weight, std=scale * fan_in ** -0.5)
            elif isinstance(m, RMSNorm):
                nn.init.ones_(m.weight)
        if self.lm_head is not None and not cfg.tie_embeddings:
            nn.init.normal_(self.lm_head.weight, std=cfg.dim ** -0.5)
        self.tie_weights()
        return self

    # ---- the two halves ----

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The encoder's last states [B, S, dim]; attention_mask is HF's padding mask [B, S] (1 = token)."""
        if input_ids.shape[1] > self.config.max_seq_len:
            raise ValueError(f"input of {input_ids.shape[1]} tokens exceeds the model's {self.config.max_seq_len}")
        keep = None if attention_mask is None else attention_mask.bool()[:, None, None, :]
        return self.encoder(self.embed(input_ids), keep)

    def cross_bias(self, attention_mask: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
        if attention_mask is None:
            return None
        return additive_mask(attention_mask.bool()[:, None, None, :], like.dtype)

    def cross_keys_values(self, encoder_states: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [layer.cross_attn.keys_values(encoder_states) for layer in self.decoder.layers]

    def decode(self, decoder_input_ids: torch.Tensor, encoder_states: torch.Tensor | None = None,
               encoder_mask: torch.Tensor | None = None, cache: Seq2SeqCache | None = None) -> torch.Tensor:
        """Decoder states [B, T, dim]: from the encoder states (training, one pass) or from a cache (generation)."""
        if self.decoder is None:
            raise ValueError("an encoder-only model has no decoder")
        T = decoder_input_ids.shape[1]
        past = cache.length if cache is not None else 0
        if past + T > self.config.max_seq_len:
            raise ValueError(f"decoder sequence of {past + T} tokens exceeds the model's {self.config.max_seq_len}")
        if cache is not None:
            cross_kv, cross_bias = cache.cross_kv, cache.cross_bias
        else:
            cross_kv, cross_bias = self.cross_keys_values(encoder_states), self.cross_bias(encoder_mask, encoder_states)
        # A new token at the end sees the whole cache: only several new tokens need the causal mask.
        keep = None
        if T > 1:
            q = torch.arange(past, past + T, device=decoder_input_ids.device)[:, None]
            keep = (torch.arange(past + T, device=decoder_input_ids.device)[None, :] <= q)[None, None]
        h = self.decoder(self.embed(decoder_input_ids), keep, past, cross_kv, cross_bias,
                         cache.self_kv if cache is not None else None)
        if cache is not None:
            cache.advance(T)
        return h

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        if self.config.scale_output:
            h = h * self.config.dim ** -0.5
        return self.lm_head(h)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                decoder_input_ids: torch.Tensor | None = None) -> torch.Tensor:
        encoder_states = self.encode(input_ids, attention_mask)
        if self.decoder is None:
            return encoder_states
        if decoder_input_ids is None:
            raise ValueError("an encoder-decoder forward needs decoder_input_ids (shift_right of the labels)")
        return self.logits(self.decode(decoder_input_ids, encoder_states, attention_mask))

    def new_cache(self, encoder_states: torch.Tensor, encoder_mask: torch.Tensor | None, max_len: int):
        cfg, B = self.config, encoder_states.shape[0]
        self_kv = KVCache(cfg.n_decoder_layers, B, cfg.n_heads, max_len, cfg.head_dim,
                          device=encoder_states.device, dtype=encoder_states.dtype)
        bias = self.cross_bias(encoder_mask, encoder_states)
        if bias is None:
            bias = encoder_states.new_zeros(B, 1, 1, encoder_states.shape[1])
        return Seq2SeqCache(self_kv, self.cross_keys_values(encoder_states), bias)

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        return count_parameters(self, exclude_embeddings)


def shift_right(labels: torch.Tensor, start_id: int, pad_id: int) -> torch.Tensor:
    """Decoder inputs from labels: start token first, each label one step later, ignored labels (-100) as pad."""
    shifted = labels.new_full(labels.shape, start_id)
    shifted[:, 1:] = labels[:, :-1]
    return shifted.masked_fill(shifted == -100, pad_id)


def seq2seq_loss(model: nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The Trainer's loss_fn for encoder-decoders: summed cross entropy over `labels` [B, T_dec] (-100 ignored),
    the decoder reading them shifted right (or the batch's own `decoder_input_ids`)."""
    from slm.models.hf import unwrap

    cfg = unwrap(model).config  # the loss also receives DDP / compiled wrappers
    labels = batch["labels"]
    decoder_input_ids = batch.get("decoder_input_ids")
    if decoder_input_ids is None:
        decoder_input_ids = shift_right(labels, cfg.decoder_start_token_id, cfg.pad_token_id or 0)
    logits = model(batch["input_ids"], attention_mask=batch.get("attention_mask"),
                   decoder_input_ids=decoder_input_ids)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100,
                           reduction="sum")
    return loss, (labels != -100).sum()


class Seq2SeqRunner:
    """What the engine drives (slm.infer.engine): prefill encodes the (left-padded) prompts and decodes the start
    token; each step then feeds one token per row. Every row's decoder starts at the same position, so decoder
    inputs are never padded."""

    def __init__(self, model: Seq2Seq):
        self.model = model

    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, cache_len: int):
        model = self.model
        mask = attention_mask if not bool(attention_mask.all()) else None
        encoder_states = model.encode(input_ids, mask)
        cache = model.new_cache(encoder_states, mask, min(cache_len, model.config.max_seq_len))
        start = input_ids.new_full((input_ids.shape[0], 1), model.config.decoder_start_token_id)
        return model.logits(model.decode(start, cache=cache))[:, -1], cache

    def __call__(self, tokens: torch.Tensor, position_ids=None, attention_mask=None, cache=None, logits_to_keep=1):
        return self.model.logits(self.model.decode(tokens, cache=cache))


def param_count(cfg: Seq2SeqConfig, exclude_embeddings: bool = False) -> int:
    with torch.device("meta"):
        return Seq2Seq(cfg).num_parameters(exclude_embeddings)
