"""The encoder family: RoBERTa and BERT, one class set by one config, with MLM / classification heads.

    x = layernorm(word + position + token_type);  x = layernorm(x + attn(x));  x = layernorm(x + gelu_mlp(x))
    roberta: positions count real tokens from pad_id + 1      bert: positions 0..T-1, token types (segments)

Forward contract: `model(input_ids, attention_mask=None, token_type_ids=None, select=None)` returns the head's output:
MLM logits [B, T, vocab], sequence-classification logits [B, num_labels], token-classification logits
[B, T, num_labels], or (no head) the last hidden states [B, T, dim]. `hidden_states(...)` is the body alone and
`head(h)` takes hidden states of any leading shape, so an MLM loss projects only its masked positions.
attention_mask is the HF padding mask [B, T] (1 = token): pad keys are hidden from every query.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from slm.errors import ConfigError
from slm.models.layers import GeluMLP, LayerNorm, count_parameters, padding_attention_mask

Head = Literal["none", "mlm", "sequence", "token"]


@dataclass
class EncoderConfig:
    arch: Literal["roberta", "bert"] = "roberta"
    vocab_size: int = 50265
    dim: int = 768
    n_layers: int = 12
    n_heads: int = 12
    ffn_dim: int = 3072
    max_positions: int = 514  # rows of the position table; RoBERTa's first pad_token_id + 1 rows are never used
    type_vocab_size: int = 1  # BERT: 2 segments; RoBERTa: 1
    norm_eps: float = 1e-5
    dropout: float = 0.1
    attn_dropout: float = 0.1
    classifier_dropout: float | None = None  # None: `dropout`
    head: Head = "mlm"
    num_labels: int = 2  # classification heads
    labels: list[str] | None = None  # label names by class id (HF id2label)
    pooler: bool | None = None  # None: as transformers builds it (bare models and BERT's sequence classifier)
    tie_embeddings: bool = True  # the MLM decoder shares the word embedding
    pad_token_id: int | None = 1
    bos_token_id: int | None = 0
    eos_token_id: int | None = 2

    def __post_init__(self):
        if self.labels is not None:
            self.labels = [str(x) for x in self.labels]
            self.num_labels = len(self.labels)
        if self.pooler is None:
            self.pooler = self.head == "none" or (self.arch == "bert" and self.head == "sequence")
        self.validate()

    def validate(self) -> None:
        if self.arch not in ("roberta", "bert"):
            raise ConfigError(f"arch must be 'roberta' or 'bert', got {self.arch!r}")
        if self.head not in ("none", "mlm", "sequence", "token"):
            raise ConfigError(f"head must be none, mlm, sequence or token, got {self.head!r}")
        for name in ("vocab_size", "dim", "n_layers", "n_heads", "ffn_dim", "max_positions", "type_vocab_size",
                     "num_labels"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.dim % self.n_heads:
            raise ConfigError(f"n_heads ({self.n_heads}) must divide dim ({self.dim})")
        if self.arch == "bert" and self.head == "sequence" and not self.pooler:
            raise ConfigError("BERT's sequence classifier reads the pooler: pooler must be true")
        if self.arch == "roberta":
            if self.pad_token_id is None:
                raise ConfigError("RoBERTa needs pad_token_id: its positions count from pad_token_id + 1")
            if self.max_positions <= self.pad_token_id + 1:
                raise ConfigError(f"max_positions {self.max_positions} leaves no positions after pad_token_id "
                                  f"{self.pad_token_id}")
        for name in ("dropout", "attn_dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{name} must be in [0, 1)")

    @property
    def max_seq_len(self) -> int:
        """The longest input: RoBERTa spends pad_token_id + 1 position rows on its offset (514 rows: 512 tokens)."""
        return self.max_positions - self.pad_token_id - 1 if self.arch == "roberta" else self.max_positions

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    def replace(self, **changes) -> "EncoderConfig":
        return dataclasses.replace(self, **changes)


def roberta_position_ids(input_ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    """fairseq's make_positions: real tokens count pad_id + 1, pad_id + 2, ...; pads keep pad_id (a zero row)."""
    real = input_ids.ne(pad_id).long()
    return torch.cumsum(real, dim=1) * real + pad_id


class SelfAttention(nn.Module):
    """Bidirectional multi-head attention; query/key/value/dense are HF's names, so peft targets carry over."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.n_heads, self.dropout = cfg.n_heads, cfg.attn_dropout
        self.query = nn.Linear(cfg.dim, cfg.dim)
        self.key = nn.Linear(cfg.dim, cfg.dim)
        self.value = nn.Linear(cfg.dim, cfg.dim)
        self.dense = nn.Linear(cfg.dim, cfg.dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = (proj(x).view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)
                   for proj in (self.query, self.key, self.value))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.dense(y.transpose(1, 2).reshape(B, T, C))


class Block(nn.Module):
    """Post-LN: the residual sum is normalised (BERT's order), not the sublayer's input."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.attn = SelfAttention(cfg)
        self.attn_norm = LayerNorm(cfg.dim, eps=cfg.norm_eps)
        self.mlp = GeluMLP(cfg.dim, cfg.ffn_dim, bias=True, approximate="none")
        self.mlp_norm = LayerNorm(cfg.dim, eps=cfg.norm_eps)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = self.attn_norm(x + self.drop(self.attn(x, mask)))
        return self.mlp_norm(x + self.drop(self.mlp(x)))


class MLMHead(nn.Module):
    """dense -> gelu -> layernorm -> decoder (the word embedding when tied) + its own bias."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.dim, cfg.dim)
        self.norm = LayerNorm(cfg.dim, eps=cfg.norm_eps)
        self.decoder = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.norm(F.gelu(self.dense(h)))) + self.bias


class RobertaClassificationHead(nn.Module):
    """<s>'s state -> dropout -> dense -> tanh -> dropout -> out_proj."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.drop = nn.Dropout(cfg.dropout if cfg.classifier_dropout is None else cfg.classifier_dropout)
        self.dense = nn.Linear(cfg.dim, cfg.dim)
        self.out_proj = nn.Linear(cfg.dim, cfg.num_labels)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.drop(torch.tanh(self.dense(self.drop(h[:, 0])))))


class LinearClassifier(nn.Module):
    """dropout -> classifier: BERT's sequence head (over the pooled [CLS]) and both token heads (every position)."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.drop = nn.Dropout(cfg.dropout if cfg.classifier_dropout is None else cfg.classifier_dropout)
        self.classifier = nn.Linear(cfg.dim, cfg.num_labels)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.drop(h))


class Encoder(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.config = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.pos_embed = nn.Embedding(cfg.max_positions, cfg.dim)
        self.type_embed = nn.Embedding(cfg.type_vocab_size, cfg.dim)
        self.embed_norm = LayerNorm(cfg.dim, eps=cfg.norm_eps)
        self.drop = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.pooler = nn.Linear(cfg.dim, cfg.dim) if cfg.pooler else None  # dense + tanh on the first token
        self.head = build_head(cfg)
        self.tie_weights()
        self.gradient_checkpointing = False

    def tie_weights(self) -> None:
        if isinstance(self.head, MLMHead) and self.config.tie_embeddings:
            self.head.decoder.weight = self.embed.weight

    def init_weights(self, seed: int | None = None) -> "Encoder":
        """BERT's init: N(0, 0.02) for matrices and embeddings, zero biases, unit LayerNorms."""
        if seed is not None:
            torch.manual_seed(seed)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if isinstance(self.head, MLMHead):
            nn.init.zeros_(self.head.bias)
        if self.config.arch == "roberta":  # the padding rows stay zero, as nn.Embedding(padding_idx=...) keeps them
            with torch.no_grad():
                self.embed.weight[self.config.pad_token_id].zero_()
                self.pos_embed.weight[self.config.pad_token_id].zero_()
        self.tie_weights()
        return self

    def positions(self, input_ids: torch.Tensor) -> torch.Tensor:
        if self.config.arch == "roberta":
            return roberta_position_ids(input_ids, self.config.pad_token_id)
        return torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)

    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                      token_type_ids: torch.Tensor | None = None,
                      position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """The last layer's states [B, T, dim]."""
        T = input_ids.shape[1]
        if T > self.config.max_seq_len:
            raise ValueError(f"sequence of {T} tokens exceeds the model's {self.config.max_seq_len}")
        if position_ids is None:
            position_ids = self.positions(input_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.embed(input_ids) + self.type_embed(token_type_ids) + self.pos_embed(position_ids)
        x = self.drop(self.embed_norm(x))
        mask = None if attention_mask is None else padding_attention_mask(attention_mask)
        for layer in self.layers:
            if self.gradient_checkpointing and self.training:
                x = torch.utils.checkpoint.checkpoint(layer, x, mask, use_reentrant=False)
            else:
                x = layer(x, mask)
        return x

    def pooled(self, h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.pooler(h[:, 0]))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
                select: torch.Tensor | None = None) -> torch.Tensor:
        """select: a boolean [B, T]; a per-token head (MLM, token classes) then runs on those positions only and
        returns [N, out], which is how an MLM loss avoids projecting every position onto the vocabulary."""
        h = self.hidden_states(input_ids, attention_mask, token_type_ids, position_ids)
        if select is not None:
            if self.config.head not in ("mlm", "token"):
                raise ValueError("select is for per-token heads (mlm, token)")
            return self.head(h[select])
        if self.head is None:
            return h
        if isinstance(self.head, LinearClassifier) and self.config.head == "sequence":
            return self.head(self.pooled(h))
        return self.head(h)

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        return count_parameters(self, exclude_embeddings)  # word, position and type tables


def build_head(cfg: EncoderConfig) -> nn.Module | None:
    if cfg.head == "mlm":
        return MLMHead(cfg)
    if cfg.head == "sequence" and cfg.arch == "roberta":
        return RobertaClassificationHead(cfg)
    if cfg.head in ("sequence", "token"):
        return LinearClassifier(cfg)
    return None


def with_head(model: Encoder, head: Head, num_labels: int = 2, labels: list[str] | None = None,
              seed: int = 0) -> Encoder:
    """The same body under another head (MLM pretraining -> classifier); the new head starts from BERT's init."""
    cfg = model.config.replace(head=head, num_labels=len(labels) if labels else num_labels, labels=labels,
                               pooler=None)
    new = Encoder(cfg)
    new.init_weights(seed)
    body = {k: v for k, v in model.state_dict().items() if not k.startswith("head.")
            and (cfg.pooler or not k.startswith("pooler."))}
    new.load_state_dict(body, strict=False)
    return new.to(next(model.parameters()).device)


def param_count(cfg: EncoderConfig, exclude_embeddings: bool = False) -> int:
    with torch.device("meta"):
        return Encoder(cfg).num_parameters(exclude_embeddings)
