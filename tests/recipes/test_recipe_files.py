"""Every YAML file in recipes/ is a recipe some test builds: a new kind must be added here (or to its own glob)."""
from pathlib import Path

import pytest

from slm.config import build, load_recipe

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted((ROOT / "recipes").glob("*.yaml"))
# Kinds built by their own tests: tests/train (pretrain-*), tests/finetune (finetune-*), tests/eval (eval-*).
BUILT_ELSEWHERE = ("pretrain-", "finetune-", "eval-")


def recipe_verb_config(name: str):
    if name.startswith("eft"):
        from slm.recipes.eft import EFTRecipeConfig

        return EFTRecipeConfig
    if name.startswith("tinygsm"):
        from slm.recipes.tinygsm.pipeline import TinyGSMConfig

        return TinyGSMConfig
    return None


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_recipe_file_is_of_a_known_kind_and_builds(path):
    if path.name.startswith(BUILT_ELSEWHERE):
        return
    cls = recipe_verb_config(path.name)
    assert cls is not None, f"{path.name}: no test builds this recipe kind"
    build(cls, load_recipe(path))
