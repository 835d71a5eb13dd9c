from dataclasses import dataclass, field

import pytest

from slm.config import apply_overrides, build, load_recipe
from slm.errors import ConfigError


@dataclass
class Optim:
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])


@dataclass
class Run:
    name: str = "x"
    steps: int = 10
    optim: Optim = field(default_factory=Optim)
    device: str | None = None


def test_build_nested_and_types():
    run = build(Run, {"steps": 5, "optim": {"lr": "4e-4"}})
    assert run.steps == 5 and run.optim.lr == 4e-4 and run.optim.betas == [0.9, 0.95]


@pytest.mark.parametrize("data, message", [
    ({"stepz": 1}, "unknown key"),
    ({"steps": "ten"}, "expected int"),
    ({"steps": True}, "expected int"),
    ({"optim": {"lr": "fast"}}, "expected float"),
    ({"optim": 3}, "expected a mapping"),
])
def test_build_rejects_bad_input(data, message):
    with pytest.raises(ConfigError, match=message):
        build(Run, data)


def test_recipe_with_dotted_overrides(tmp_path):
    f = tmp_path / "r.yaml"
    f.write_text("name: demo\noptim:\n  lr: 1.0e-3\n")
    data = load_recipe(f, ["optim.lr=3e-4", "steps=7", "device=cpu"])
    run = build(Run, data)
    assert (run.name, run.steps, run.optim.lr, run.device) == ("demo", 7, 3e-4, "cpu")


def test_recipe_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_recipe(tmp_path / "none.yaml")
    (tmp_path / "bad.yaml").write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_recipe(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_recipe(tmp_path / "list.yaml")
    with pytest.raises(ConfigError, match="key.subkey=value"):
        apply_overrides({}, ["novalue"])
