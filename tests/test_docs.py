"""The README and docs/ stay true to the repository: links resolve, every registered recipe has its page, its
two YAML files and a test that runs the smoke one, and every command of the README's quick starts parses."""
import re
import shlex
from pathlib import Path

import pytest

from slm.cli import build_parser
from slm.recipes import RECIPES

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
LINK = re.compile(r"\[[^\]]*\]\(([^()\s]+)\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$", re.M)


def prose(text: str) -> str:
    """The text without fenced code blocks: a `# comment` in a bash block is no heading, `[i](x)` in code no link."""
    return FENCE.sub("", text)


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered -1, -2."""
    slugs, counts = set(), {}
    for _, title in HEADING.findall(prose(path.read_text())):
        slug = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
        n = counts.get(slug, 0)
        counts[slug] = n + 1
        slugs.add(slug if n == 0 else f"{slug}-{n}")
    return slugs


def relative_links(path: Path) -> list[str]:
    return [t for t in LINK.findall(prose(path.read_text())) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def test_the_pages_exist_and_have_links():
    assert len(PAGES) > 10 and sum(len(relative_links(p)) for p in PAGES) > 20


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    broken = []
    for link in relative_links(page):
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        if not path.exists():
            broken.append(f"{link}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{link}: no heading with that anchor")
    assert broken == []


def test_readme_is_a_front_page():
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    top = "\n".join(text.splitlines()[:30])
    assert "make demo" in top and "make test" in top


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda r: r.name)
def test_every_recipe_has_its_page_yaml_smoke_yaml_and_a_row_in_the_readme(recipe):
    for relative in (recipe.docs_page, recipe.default_yaml, recipe.smoke_yaml):
        assert (ROOT / relative).is_file(), f"recipe {recipe.name} needs {relative}"
    page = prose((ROOT / recipe.docs_page).read_text())
    measured = page.partition("## Measured")[2]
    assert re.search(r"\b20\d\d-\d\d-\d\d\b", measured) and "|---" in measured, \
        f"{recipe.docs_page} needs a '## Measured' section with a dated table"
    row = next((line for line in README.read_text().splitlines()
                if line.startswith(f"| `{recipe.name}` |")), "")
    assert f"]({recipe.docs_page})" in row, f"the README's recipe table needs a row for {recipe.name}"


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda r: r.name)
def test_some_test_runs_each_recipes_smoke_yaml(recipe):
    smoke = Path(recipe.smoke_yaml).name
    fixture_call = f'run_smoke("{recipe.name}")'  # tests/recipes/conftest.py runs the smoke YAML by name
    runners = [p for p in (ROOT / "tests").rglob("test_*.py")
               if p.name not in ("test_docs.py", "test_recipe_files.py")
               and (smoke in p.read_text() or fixture_call in p.read_text())]
    assert runners, f"no test under tests/ runs {recipe.smoke_yaml}"


def test_every_recipe_page_belongs_to_a_registered_recipe():
    names = {r.name for r in RECIPES}
    assert sorted(p.stem for p in (ROOT / "docs/recipes").glob("*.md") if p.stem not in names) == []


def quick_start_commands() -> list[list[str]]:
    """The `slm ...` lines of the code blocks in the README's sections whose heading says Quick start."""
    commands = []
    for section in re.split(r"^## ", README.read_text(), flags=re.M):
        if section.lower().startswith("quick start"):
            for block in FENCE.findall(section):
                commands += [shlex.split(line, comments=True) for line in block.splitlines()
                             if line.startswith("slm ")]
    return commands


def test_the_quick_starts_have_their_commands():
    verbs = [argv[1] for argv in quick_start_commands()]
    assert len(verbs) >= 10 and {"chat", "serve", "eval", "finetune", "convert"} <= set(verbs)


@pytest.mark.parametrize("argv", quick_start_commands(), ids=" ".join)
def test_every_quick_start_command_parses(argv, capsys):
    parser = build_parser()
    with pytest.raises(SystemExit) as stop:
        parser.parse_args([argv[1], "--help"])
    assert stop.value.code == 0
    args = parser.parse_args(argv[1:])       # every flag and positional of the command is one the verb has
    assert args.verb == argv[1] and callable(args.func)
