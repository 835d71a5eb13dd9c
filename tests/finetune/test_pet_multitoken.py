"""Multi-token verbalizers: max-first decoding (order and score) and the one-pass parallel hinge loss."""
import math

import pytest
import torch
from torch import nn

from slm.finetune.classify import Example
from slm.finetune.pet.multitoken import hinge_loss, max_first, parallel_scores
from slm.finetune.pet.pvp import PVP, encode_pvp, label_scores, pvp_tokens
from slm.finetune.pet.train import task_loss

MASK, V = 9, 10


class Scripted(nn.Module):
    """A fake MLM over slots 1..3 of each row: the probability of slot j's target (token 3 + j) is base[j], and
    slot 0's rises to 0.95 once slot 1 is filled; every other token shares the rest."""

    def __init__(self, base):
        super().__init__()
        self.base = base
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, ids, attention_mask=None, select=None):
        rows, cols = select.nonzero(as_tuple=True)
        out = []
        for r, c in zip(rows.tolist(), cols.tolist()):
            j = c - 1
            p = self.base[j]
            if j == 0 and ids[r, 2] != MASK:
                p = 0.95
            probs = torch.full((V,), (1 - p) / (V - 1))
            probs[3 + j] = p
            out.append(probs.log())
        return torch.stack(out) + self.w


def test_max_first_fills_the_most_confident_slot_and_reruns_the_model():
    model = Scripted([0.2, 0.9, 0.5])
    ids = torch.tensor([[0, MASK, MASK, MASK, 2]])
    score, order = max_first(model, ids, torch.ones_like(ids), torch.tensor([1]), torch.tensor([3, 4, 5]), MASK)
    assert order.tolist() == [[1, 0, 2]]  # slot 1 (0.9) first; re-run: slot 0 is now 0.95, above slot 2's 0.5
    assert score.item() == pytest.approx(math.log(0.9) + math.log(0.95) + math.log(0.5), rel=1e-5)


def test_max_first_without_the_rerun_would_pick_another_order():
    model = Scripted([0.2, 0.4, 0.5])  # slot 2 first; slot 0 stays 0.2 until slot 1 is filled
    ids = torch.tensor([[0, MASK, MASK, MASK, 2]])
    _, order = max_first(model, ids, torch.ones_like(ids), torch.tensor([1]), torch.tensor([3, 4, 5]), MASK)
    assert order.tolist() == [[2, 1, 0]]


def test_parallel_scores_sum_each_labels_token_log_probs_in_one_pass():
    logits = torch.randn(2, 3, V)
    labels = torch.tensor([[3, 4, 5], [6, 7, -100]])  # the second word is 2 tokens: its third slot is ignored
    scores = parallel_scores(logits, labels)
    logp = logits.log_softmax(-1)
    assert torch.allclose(scores[:, 0], logp[:, 0, 3] + logp[:, 1, 4] + logp[:, 2, 5], atol=1e-5)
    assert torch.allclose(scores[:, 1], logp[:, 0, 6] + logp[:, 1, 7], atol=1e-5)


def test_hinge_loss_sums_the_margins_of_the_wrong_labels():
    scores = torch.tensor([[-1.0, -1.5, -3.0], [-2.0, -0.5, -4.0]])
    gold = torch.tensor([0, 0])
    # row 0: max(0, 1 - (-1) + (-1.5)) + max(0, 1 + 1 - 3) = 0.5 + 0; row 1: 1 + 2 - 0.5 = 2.5, and 1 + 2 - 4 < 0
    assert hinge_loss(scores, gold).item() == pytest.approx(0.5 + 2.5)
    assert hinge_loss(torch.tensor([[0.0, -5.0]]), torch.tensor([0])).item() == 0.0


@pytest.fixture(scope="module")
def tok():
    import slm

    return slm.train_tokenizer(["the soup was tasty . It was good ."] * 20, vocab_size=300, kind="roberta-bpe")


def test_a_multi_token_pvp_gets_max_first_scores_and_trains_with_the_hinge(tok):
    from slm.models import build_model, preset

    pvp = PVP("{text} . It was {mask} .", {"pos": ["good"], "neg": ["xyzzyq"]})  # an unseen word: many tokens
    tokens = pvp_tokens(pvp, tok)
    assert len(tokens.words[1][0]) > 1 and len(tokens.words[0][0]) == 1
    enc = encode_pvp(pvp, tok, [Example("the soup", "pos"), Example("the soup was tasty", "neg")], 32)
    assert enc.num_masks == len(tokens.words[1][0])
    model = build_model(preset("roberta-tiny", vocab_size=len(tok), dim=32, n_layers=1, n_heads=2, ffn_dim=64,
                               max_positions=66)).init_weights(0).eval()
    scores = label_scores(model, enc, tokens, tok.pad_token_id)
    # label pos: one mask, its log-prob; label neg: decoded max-first over its own number of masks
    row = enc.rows[0][:enc.mask_pos[0] + 1] + enc.rows[0][enc.mask_pos[0] + enc.num_masks:]
    logp = model(torch.tensor([row]))[0, enc.mask_pos[0]].log_softmax(-1)
    assert scores[0, 0].item() == pytest.approx(logp[tokens.words[0][0][0]].item(), rel=1e-4)
    assert (scores < 0).all()
    model.train()
    from slm.finetune.pet.pvp import batch_of

    loss = task_loss(model, batch_of(enc, [0, 1], tok.pad_token_id), tokens)
    loss.backward()
    assert loss.item() > 0 and model.embed.weight.grad.abs().sum() > 0
