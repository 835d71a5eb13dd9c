"""PET's per-pattern loss (CE over label scores, the code's alpha convention for the auxiliary MLM loss), its
batches, and one short training run through the Trainer."""
import pytest
import torch
import torch.nn.functional as F

from slm.finetune.classify import Example
from slm.finetune.pet.pvp import PVP, encode_pvp, label_scores, pvp_tokens
from slm.finetune.pet.train import PETBatches, PETTrainConfig, pet_loss, train_pattern_model

TEXTS = ["the soup was tasty . It was good .", "the waiter was rude . It was bad ."] * 40
PATTERN = PVP("{text} . It was {mask} .", {"pos": ["good"], "neg": ["bad"]})


@pytest.fixture(scope="module")
def tok():
    import slm

    return slm.train_tokenizer(TEXTS, vocab_size=400, kind="roberta-bpe")


@pytest.fixture
def mlm(tok):
    from slm.models import build_model, preset

    cfg = preset("roberta-tiny", vocab_size=len(tok), dim=32, n_layers=1, n_heads=2, ffn_dim=64, max_positions=66,
                 dropout=0.0, attn_dropout=0.0)
    return build_model(cfg).init_weights(0)


def _data(tok, with_mlm=True):
    from slm.objectives.mlm import MaskingConfig, MaskTokens

    train = encode_pvp(PATTERN, tok, [Example("the soup was tasty", "pos"), Example("the waiter was rude", "neg")] * 2,
                       32)
    unlabeled = encode_pvp(PATTERN, tok, [Example("the soup was rude and tasty and rude", None)] * 8, 32)
    masker = MaskTokens(tok, MaskingConfig(mask_prob=0.5, seed=0)) if with_mlm else None
    return PETBatches(train, 4, tok.pad_token_id, 0, unlabeled if with_mlm else None, 4, masker)


def _grads(model, loss_fn, batch):
    model.zero_grad()
    loss, n = loss_fn(model, batch)
    (loss / n).backward()
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


def test_alpha_one_gives_the_gradients_of_pure_cross_entropy(tok, mlm):
    tokens = pvp_tokens(PATTERN, tok)
    batch = next(iter(_data(tok)))
    assert (batch["mlm_labels"] != -100).any()  # the batch does carry an MLM part

    def pure_ce(model, b):
        at_mask = model(b["input_ids"], attention_mask=b["attention_mask"], select=None)[
            torch.arange(len(b["labels"])), b["mask_pos"]]
        ids = torch.tensor([tokens.words[0][0][0], tokens.words[1][0][0]])
        return F.cross_entropy(at_mask[:, ids], b["labels"], reduction="sum"), len(b["labels"])

    ce = _grads(mlm, pure_ce, batch)
    for a, b in zip(ce, _grads(mlm, pet_loss(tokens, alpha=1.0), batch)):
        assert torch.allclose(a, b, atol=1e-6)
    # below 1 the MLM term moves the gradients (the code's convention: alpha weighs the task loss)
    mixed = _grads(mlm, pet_loss(tokens, alpha=0.5), batch)
    assert any(not torch.allclose(a, b, atol=1e-4) for a, b in zip(ce, mixed))


def test_alpha_zero_is_the_mlm_loss_alone(tok, mlm):
    tokens = pvp_tokens(PATTERN, tok)
    batch = next(iter(_data(tok)))
    loss, n = pet_loss(tokens, alpha=0.0)(mlm, batch)
    chosen = batch["mlm_labels"] != -100
    logits = mlm(batch["mlm_input_ids"], attention_mask=batch["mlm_attention_mask"], select=chosen)
    assert (loss / n).item() == pytest.approx(F.cross_entropy(logits, batch["mlm_labels"][chosen]).item(), rel=1e-5)


def test_batches_resume_where_they_stopped(tok):
    data = _data(tok)
    it = iter(data)
    next(it)
    state = data.state_dict()
    expected = next(it)
    again = _data(tok)
    again.load_state_dict(state)
    got = next(iter(again))
    assert torch.equal(got["input_ids"], expected["input_ids"]) and torch.equal(got["labels"], expected["labels"])
    assert torch.equal(got["mlm_input_ids"], expected["mlm_input_ids"])


@pytest.mark.slow
def test_training_a_pattern_model_fits_its_labels(tok, mlm, tmp_path):
    tokens = pvp_tokens(PATTERN, tok)
    data = _data(tok, with_mlm=False)
    before = label_scores(mlm, data.enc, tokens, tok.pad_token_id)
    cfg = PETTrainConfig(steps=30, batch_size=4, lr=3e-3)
    model, result = train_pattern_model(mlm, tok, tokens, data.enc, cfg, 0, tmp_path / "p0")
    after = label_scores(model, data.enc, tokens, tok.pad_token_id)
    assert (after.argmax(-1) == data.enc.labels).all()
    margin = lambda s: (s[:, 0] - s[:, 1]) * (1 - 2 * data.enc.labels)  # noqa: E731  gold minus the other
    assert margin(after).mean() > margin(before).mean()
    assert torch.equal(label_scores(mlm, data.enc, tokens, tok.pad_token_id), before)  # the MLM itself untouched
    assert (tmp_path / "p0" / "metrics.jsonl").is_file()
