"""PET's merging of pattern models and the distillation loss of the final classifier."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from slm.errors import ConfigError
from slm.finetune.pet.ensemble import distillation_loss, merge_logits, soft_labels


def _logits(seed, models=3, n=5, labels=3):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(n, labels)) for _ in range(models)]


def test_wmean_with_equal_weights_is_mean():
    logits = _logits(0)
    for w in (1.0, 0.37):
        assert np.allclose(merge_logits(logits, [w] * 3, "wmean"), merge_logits(logits, None, "mean"))


def test_wmean_weighs_each_model_by_its_weight():
    logits = _logits(1, models=2)
    merged = merge_logits(logits, [0.9, 0.3], "wmean")
    assert np.allclose(merged, (0.9 * logits[0] + 0.3 * logits[1]) / 1.2)
    assert not np.allclose(merged, merge_logits(logits, None, "mean"))


def test_merge_rejects_bad_reductions_and_weights():
    with pytest.raises(ConfigError, match="mean or wmean"):
        merge_logits(_logits(0), None, "max")
    with pytest.raises(ConfigError, match="one weight per model"):
        merge_logits(_logits(0), [1.0], "wmean")


def test_soft_labels_are_softmax_over_t():
    logits = np.array([[2.0, 0.0], [0.0, 4.0]])
    expected = np.exp(logits / 2) / np.exp(logits / 2).sum(-1, keepdims=True)
    assert np.allclose(soft_labels(logits, 2.0), expected)


def test_distillation_loss_is_zero_when_the_student_is_the_teacher():
    t = torch.randn(4, 3)
    assert distillation_loss(t.clone(), t, 2.0).item() == pytest.approx(0.0, abs=1e-6)
    assert distillation_loss(torch.randn(4, 3), t, 2.0).item() > 0


def test_distillation_loss_is_kl_times_t_squared_per_example():
    s, t = torch.randn(6, 3, requires_grad=True), torch.randn(6, 3)
    for T in (1.0, 2.0, 4.0):
        q, p = F.softmax(t / T, -1), F.softmax(s / T, -1)
        kl = (q * (q.log() - p.log())).sum(-1).mean()  # KL(teacher || student) per example
        loss = distillation_loss(s, t, T)
        assert loss.item() == pytest.approx(T ** 2 * kl.item(), rel=1e-5)
        # the T^2 keeps the gradient's size independent of T: d loss / d s = T (p - q) / batch
        grad, = torch.autograd.grad(loss, s)
        assert torch.allclose(grad, T * (p - q).detach() / s.shape[0], atol=1e-6)
