import math

import pytest

from slm.train.optim import build_optimizer, lr_at, param_groups
from train_toy import tiny_model


def test_schedule_is_tinyllamas():
    peak, low, warm, total = 4e-4, 4e-5, 2000, 10000
    assert lr_at(0, peak, low, warm, total) == 0.0
    assert lr_at(1000, peak, low, warm, total) == pytest.approx(2e-4)
    assert lr_at(warm, peak, low, warm, total) == pytest.approx(peak)
    assert lr_at(total, peak, low, warm, total) == pytest.approx(low)
    assert lr_at(total + 500, peak, low, warm, total) == pytest.approx(low)
    mid = (warm + total) // 2
    assert lr_at(mid, peak, low, warm, total) == pytest.approx((peak + low) / 2)
    decay = [lr_at(s, peak, low, warm, total) for s in range(warm, total + 1, 500)]
    assert all(a > b for a, b in zip(decay, decay[1:]))


def test_schedule_without_warmup_starts_at_peak():
    assert lr_at(0, 1e-3, 1e-4, 0, 10) == pytest.approx(1e-3)
    assert math.isclose(lr_at(10, 1e-3, 1e-4, 0, 10), 1e-4)


@pytest.mark.parametrize("tie", [True, False])
def test_no_weight_decay_on_norms_biases_embeddings(tie):
    model = tiny_model(tie_embeddings=tie, bias=True)
    groups = param_groups(model, weight_decay=0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in groups[0]["params"]}
    kept = {names[id(p)] for p in groups[1]["params"]}
    assert groups[0]["weight_decay"] == 0.1 and groups[1]["weight_decay"] == 0.0
    assert "embed.weight" in kept
    assert all(n.endswith(("norm.weight", "bias")) or n == "embed.weight" for n in kept)
    assert all(n.endswith("proj.weight") or n == "lm_head.weight" for n in decayed)
    assert ("lm_head.weight" in decayed) == (not tie)  # a tied head is the embedding
    assert "layers.0.attn.q_proj.weight" in decayed and "layers.0.attn.q_proj.bias" in kept
    total = sum(p.numel() for g in groups for p in g["params"])
    assert total == model.num_parameters()


def test_optimizer_uses_the_groups():
    import torch

    opt = build_optimizer(tiny_model(), 1e-3, 0.1, (0.9, 0.95), 1e-8, torch.device("cpu"))
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    assert opt.param_groups[0]["betas"] == (0.9, 0.95)
