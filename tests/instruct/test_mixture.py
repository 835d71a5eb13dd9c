"""Examples-proportional mixing with a cap: rates = min(n, cap) / sum (chi-square), determinism per (seed, i),
the one-template ablation and the zero-/few-shot, options/no-options variants."""
import pytest
from scipy.stats import chisquare

from slm.errors import ConfigError
from slm.instruct.mixture import MixOptions, draw, mixing_rates
from slm.instruct.tasks import Collection, Task, Template


def _collection(sizes):
    c = Collection()
    for name, n in sizes.items():
        c.add(Task(name, "c", "rank_classification", [{"x": str(i), "answer": "a", "o": ["a", "b"]} for i in range(n)],
                   [Template("{{x}} one"), Template("{{x}} two"), Template("{{x}} three")], options_field="o"))
    return c


def test_rates_are_min_n_cap_over_the_sum():
    rates = mixing_rates(_collection({"big": 10_000, "mid": 2000, "small": 500}), cap=3000)
    assert rates == pytest.approx({"big": 3000 / 5500, "mid": 2000 / 5500, "small": 500 / 5500})
    with pytest.raises(ConfigError, match="cap"):
        mixing_rates(_collection({"a": 1}), cap=0)


def test_drawn_tasks_follow_the_capped_rates_in_a_chi_square_test():
    c = _collection({"big": 10_000, "mid": 2000, "small": 500})
    drawn = draw(c, 6000, MixOptions(seed=0, cap=3000))
    names = ["big", "mid", "small"]
    observed = [sum(d.task == n for d in drawn) for n in names]
    rates = mixing_rates(c, 3000)
    assert chisquare(observed, [rates[n] * 6000 for n in names]).pvalue > 0.001
    uncapped = mixing_rates(c, 10**9)  # without the cap the big task would dominate: the test tells them apart
    assert chisquare(observed, [uncapped[n] * 6000 for n in names]).pvalue < 0.001


def test_draws_are_deterministic_and_variants_are_balanced():
    c = _collection({"a": 300, "b": 300})
    first = draw(c, 400, MixOptions(seed=3))
    assert first == draw(c, 400, MixOptions(seed=3)) and first != draw(c, 400, MixOptions(seed=4))
    assert first[:100] == draw(c, 100, MixOptions(seed=3))  # the i-th draw depends on (seed, i) only
    fewshot = sum(d.exemplars > 0 for d in first) / len(first)
    with_options = sum(bool(d.options) for d in first) / len(first)
    assert 0.4 < fewshot < 0.6 and 0.4 < with_options < 0.6
    assert {d.template for d in first} == {0, 1, 2}
    assert {d.template for d in draw(c, 200, MixOptions(seed=3, single_template=True))} == {0}
