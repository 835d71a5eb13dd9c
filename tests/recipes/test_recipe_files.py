"""Every YAML file in recipes/ is a recipe some test builds: a new kind must be added here (or to its own glob)."""
from pathlib import Path

import pytest

from slm.config import build, load_recipe
from slm.recipes import RECIPES

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted((ROOT / "recipes").glob("*.yaml"))
# Kinds built by their own tests: tests/train (pretrain-*), tests/finetune (finetune-*), tests/eval (eval-*).
BUILT_ELSEWHERE = ("pretrain-", "finetune-", "eval-")


def recipe_verb_config(filename: str):
    """The config class of the registered recipe whose YAML this is (<name>.yaml or <name>-smoke.yaml)."""
    stem = filename.removesuffix(".yaml")
    for recipe in RECIPES:
        if stem in (recipe.name, f"{recipe.name}-smoke"):
            return recipe.config_class()
    return None


OWN = [p for p in FILES if not p.name.startswith(BUILT_ELSEWHERE)]


def test_no_recipe_file_is_of_an_unknown_kind():
    assert FILES and OWN
    assert [p.name for p in OWN if recipe_verb_config(p.name) is None] == []


@pytest.mark.parametrize("path", OWN, ids=lambda p: p.name)
def test_recipe_verb_files_build(path):
    build(recipe_verb_config(path.name), load_recipe(path))
