"""The function generator: seeded, distinct, every family compiles and runs on its own IO examples."""
import pytest

from slm.errors import ConfigError
from slm.eval.c_io import IOHarness
from slm.recipes.slade.generator import FAMILIES, generate, generate_one


def test_seeded_and_distinct():
    a, b = generate(30, seed=3), generate(30, seed=3)
    assert [g.fn.source for g in a] == [g.fn.source for g in b]
    assert [g.examples for g in a] == [g.examples for g in b]
    assert len({g.fn.source for g in a}) == 30
    assert [g.fn.source for g in generate(30, seed=4)] != [g.fn.source for g in a]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_family_compiles_and_passes_its_own_io(family):
    import random

    g = generate_one(random.Random(11), family)
    harness = IOHarness(g.fn, g.examples)
    assert harness.check(g.fn.source, g.fn.deps).passed
    assert len(harness.expected.splitlines()) >= len(g.examples)


def test_unknown_family_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown function families"):
        generate(3, families=["nope"])
