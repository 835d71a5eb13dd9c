"""Multi-token verbalizers (Schick & Schütze, NAACL 2021, "It's Not Just Size That Matters", section 3).

A label y whose word is k = |v(y)| tokens t_1..t_k.

Inference, max-first: start from P(x) with k masks; predict every still-masked slot, fill the one whose target
token is the most probable, run the model again, and so on; the score is the sum of the k log-probabilities
(a per-label score, compared across labels as PET compares single-token logits).

Training, one forward pass: P(x) always has K = max_y |v(y)| masks and every token is predicted at once,
log q~(y) = sum_{i <= |v(y)|} log q(t_i | P^K(x), i), with the hinge loss
sum_{y' != y} max(0, 1 - log q~(y) + log q~(y')).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def parallel_scores(logits: torch.Tensor, label_tokens: torch.Tensor) -> torch.Tensor:
    """logits [B, K, V] at the K masks, label_tokens [L, K] (-100 padded) -> [B, L] log q~(y) of each label."""
    logp = F.log_softmax(logits.float(), dim=-1)  # [B, K, V]
    valid = label_tokens >= 0  # [L, K]
    ids = label_tokens.clamp(min=0).to(logits.device)
    picked = logp[:, torch.arange(label_tokens.shape[1], device=logits.device)[None, :], ids]  # [B, L, K]
    return (picked * valid.to(logits.device)).sum(-1)


def hinge_loss(scores: torch.Tensor, labels: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """Summed over the batch: sum over wrong labels y' of max(0, margin - s_y + s_y')."""
    gold = scores.gather(1, labels.view(-1, 1))
    hinge = (margin - gold + scores).clamp(min=0)
    wrong = torch.ones_like(hinge).scatter_(1, labels.view(-1, 1), 0.0)
    return (hinge * wrong).sum()


@torch.no_grad()
def max_first(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, mask_pos: torch.Tensor,
              targets: torch.Tensor, mask_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Max-first decoding of one label for a batch whose rows hold len(targets) masks from mask_pos.
    Returns (summed log-probs [B], order [B, k]: the slot filled at each step)."""
    ids = input_ids.clone()
    B, k = ids.shape[0], len(targets)
    rows = torch.arange(B, device=ids.device)
    slots = mask_pos.view(-1, 1) + torch.arange(k, device=ids.device)  # [B, k] absolute positions
    filled = torch.zeros(B, k, dtype=torch.bool, device=ids.device)
    total = torch.zeros(B, device=ids.device)
    order = torch.zeros(B, k, dtype=torch.long, device=ids.device)
    targets = targets.to(ids.device)
    for step in range(k):
        select = torch.zeros_like(ids, dtype=torch.bool)
        select[rows.repeat_interleave(k), slots.reshape(-1)] = True
        logp = F.log_softmax(model(ids, attention_mask=attention_mask, select=select).float(), -1).view(B, k, -1)
        target_logp = logp[:, torch.arange(k, device=ids.device), targets]  # [B, k]
        target_logp = target_logp.masked_fill(filled, float("-inf"))
        best = target_logp.argmax(-1)
        total += target_logp[rows, best]
        order[:, step] = best
        filled[rows, best] = True
        ids[rows, slots[rows, best]] = targets[best]
    return total, order


@torch.no_grad()
def max_first_scores(model, enc, tokens, pad_id: int, batch_size: int = 64) -> torch.Tensor:
    """[N, labels]: each label decoded max-first from P(x) with that label's own number of masks (the encoded
    rows hold K; a shorter word's rows drop the extra masks)."""
    from slm.finetune.classify import collate

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    K = enc.num_masks
    mask_id = enc.rows[0][enc.mask_pos[0]] if enc.rows else 0
    out = torch.zeros(len(enc.rows), len(tokens.labels))
    for li, label_words in enumerate(tokens.words):
        targets = torch.tensor(label_words[0])
        k = len(targets)
        rows = [r[:p + k] + r[p + K:] for r, p in zip(enc.rows, enc.mask_pos)]
        for i in range(0, len(rows), batch_size):
            batch = collate(rows[i:i + batch_size], pad_id)
            pos = torch.tensor(enc.mask_pos[i:i + batch_size])
            total, _ = max_first(model, batch["input_ids"].to(device), batch["attention_mask"].to(device),
                                 pos.to(device), targets, mask_id)
            out[i:i + len(pos), li] = total.cpu()
    model.train(was_training)
    return out
