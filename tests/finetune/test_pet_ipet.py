"""iPET's next-generation training sets: sizes |T| d^j with the label ratio kept, never labelled by oneself."""
import numpy as np
import pytest

from slm.errors import ConfigError
from slm.finetune.pet.ipet import (draw_by_confidence, examples_per_label, generations_for, next_generation_sets,
                                   num_new_examples)


def _models(n_models=6, n=400, labels=2, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(n, labels)) * 3 for _ in range(n_models)]


@pytest.mark.parametrize("generation", [1, 2])
def test_set_sizes_grow_by_d_and_keep_the_label_ratio(generation):
    train_labels = [0] * 6 + [1] * 2  # |T| = 8, ratio 3:1
    drawn = next_generation_sets(_models(), [1.0] * 6, train_labels, 2, generation, scale=5.0)
    for d in drawn:
        total = len(train_labels) + len(d.index)
        assert total == 8 * 5 ** generation
        counts = np.bincount(train_labels + d.labels, minlength=2)
        assert counts.tolist() == [6 * 5 ** generation, 2 * 5 ** generation]


def test_no_model_labels_its_own_data():
    models = _models(8)
    drawn = next_generation_sets(models, [1.0] * 8, [0, 1] * 4, 2, 1, fraction=0.25)
    for i, d in enumerate(drawn):
        assert i not in d.sources
        assert len(d.sources) == round(0.25 * 7)
        # each drawn label is the argmax of the sources' merged logits, not of model i's
        merged = np.mean([models[m] for m in d.sources], axis=0)
        assert all(merged[x].argmax() == y for x, y in zip(d.index, d.labels))


def test_labelling_uses_the_other_models_even_when_they_disagree_with_i():
    # model 1 labels every example the other way from model 0: each one's set carries the other's labels
    n = 60
    zero = np.where(np.arange(n)[:, None] < n // 2, [5.0, 0.0], [0.0, 5.0])
    one = zero[:, ::-1].copy()
    drawn = next_generation_sets([zero, one], [1.0, 1.0], [0, 1], 2, 1)
    assert drawn[0].sources == [1] and drawn[1].sources == [0]
    for own, d in ((zero, drawn[0]), (one, drawn[1])):
        assert len(d.index) == 8
        assert all(own[x].argmax() != y for x, y in zip(d.index, d.labels))


def test_zero_shot_generation_one_gets_ten_examples_from_the_most_likely():
    models = _models(4, n=300)
    drawn = next_generation_sets(models, [1.0] * 4, [], 2, 1, n_most_likely=20)
    for d in drawn:
        assert len(d.index) == 10 and sorted(np.bincount(d.labels).tolist()) == [5, 5]
        probs = np.exp(models[d.sources[0]]) / np.exp(models[d.sources[0]]).sum(-1, keepdims=True)
        for x, y in zip(d.index, d.labels):
            assert x in np.argsort(-probs[:, y], kind="stable")[:20]
    assert num_new_examples(0, 2) == 50  # then 10 * d


def test_counts_per_label_and_generation_count():
    assert examples_per_label([0, 0, 0, 1], 2, num_new_examples(4, 1)) == [12, 4]
    assert examples_per_label([], 3, 10) == [4, 3, 3]
    assert generations_for(8) == 3  # 8 * 5^3 = 1000
    assert generations_for(10, target=1000) == 3


def test_drawing_prefers_confident_examples():
    rng = np.random.RandomState(0)
    probs = np.array([0.99] * 10 + [0.01] * 90)
    picks = [x for _ in range(50) for x in draw_by_confidence(list(range(100)), probs, 5, rng)]
    assert np.mean(np.array(picks) < 10) > 0.8  # 10% of the candidates, ~92% of the probability mass
    with pytest.raises(ConfigError, match="no unlabelled example"):
        draw_by_confidence([], probs, 3, rng)


def test_ipet_needs_two_models():
    with pytest.raises(ConfigError, match="at least two models"):
        next_generation_sets(_models(1), [1.0], [0, 1], 2, 1)


def test_a_label_no_model_predicts_is_drawn_from_its_most_likely_examples():
    n = 40
    always_zero = np.tile([3.0, 0.0], (n, 1))
    always_zero[:5, 1] = 2.5  # still label 0, but these five are the likeliest label-1 examples
    drawn = next_generation_sets([always_zero, always_zero.copy()], [1.0, 1.0], [0, 1], 2, 1)
    for d in drawn:
        assert np.bincount(d.labels).tolist() == [4, 4]
        assert all(x < 5 for x, y in zip(d.index, d.labels) if y == 1)
