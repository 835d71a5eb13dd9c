"""`slm recipe list` and `slm recipe NAME --help` read the one registry (slm.recipes.RECIPES)."""
import pytest

from slm.cli import build_parser, main
from slm.recipes import RECIPES, Recipe, get_recipe
from slm.errors import ConfigError


def test_list_names_every_registered_recipe_with_its_description_and_page(capsys):
    assert main(["recipe", "list"]) == 0
    out = capsys.readouterr().out
    for recipe in RECIPES:
        line = next(line for line in out.splitlines() if line.startswith(recipe.name + " "))
        assert recipe.description in line
        assert recipe.docs_page in out


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda r: r.name)
def test_recipe_help_says_what_runs_how_long_and_where_results_go(recipe, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["recipe", recipe.name, "--help"])
    assert stop.value.code == 0
    text = " ".join(capsys.readouterr().out.split())   # undo the wrapping
    for fragment in (recipe.paper, recipe.stages, recipe.default_time, recipe.results, recipe.docs_page,
                     recipe.default_yaml, recipe.smoke_yaml):
        assert " ".join(fragment.split()) in text


def test_every_registered_recipe_is_a_sub_verb_and_nothing_else_is():
    recipe_parser = build_parser()._subparsers._group_actions[0].choices["recipe"]
    names = set(recipe_parser._subparsers._group_actions[0].choices)
    assert names == {r.name for r in RECIPES} | {"list"}


def test_bare_recipe_prints_help_and_fails(capsys):
    assert main(["recipe"]) == 2
    assert "list" in capsys.readouterr().out


def test_registry_entries_are_unique_and_resolve():
    assert len({r.name for r in RECIPES}) == len(RECIPES)
    assert get_recipe("eft").name == "eft"
    with pytest.raises(ConfigError, match="slm recipe list"):
        get_recipe("no-such-recipe")
    for recipe in RECIPES:
        assert isinstance(recipe, Recipe) and isinstance(recipe.config_class(), type)
