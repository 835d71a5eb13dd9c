"""FLAME's objectives: the sampler's rates, laMSP's lexer-token spans, tail masking, random and user noise."""
import json
import random

import pytest

from slm.errors import ConfigError
from slm.recipes.flame.generator import generate_workbooks
from slm.recipes.flame.lexer import is_valid, join, lex
from slm.recipes.flame.noise import OPERATORS, apply_operator, apply_user_noise
from slm.recipes.flame.objectives import ObjectiveSampler, corrupt, lamsp, msp_ids, random_noise, tail_mask
from slm.recipes.flame.tokenizer import MASK, train_formula_tokenizer

FORMULAS = [f for b in generate_workbooks(150, seed=2) for f in b.formulas]


def test_sampler_rates_within_one_point_over_ten_thousand_batches():
    sampler = ObjectiveSampler(seed=0)
    draws = [sampler.choose(i) for i in range(10_000)]
    for name, rate in {"lamsp": 0.5, "tail": 0.2, "user": 0.2, "random": 0.05, "unchanged": 0.05}.items():
        assert abs(draws.count(name) / len(draws) - rate) <= 0.01, name
    assert [sampler.choose(i) for i in range(50)] == draws[:50]  # a batch's objective depends on (seed, index)
    with pytest.raises(ConfigError, match="sum to 1"):
        ObjectiveSampler({"lamsp": 0.5})


def test_lamsp_never_splits_a_lexer_token():
    rng = random.Random(0)
    masked_somewhere = 0
    for formula in FORMULAS[:800]:
        text, mask = lamsp(formula, rng)
        tokens = lex(formula)
        # Rebuild the input from the mask over whole lexer tokens: it must be the objective's input exactly.
        rebuilt, previous = "", False
        for token, m in zip(tokens, mask):
            rebuilt += (MASK if not previous else "") if m else token.text
            previous = m
        assert rebuilt == text
        # And every piece left between the masks is a run of whole lexer tokens of the formula.
        kept = [join(tokens[i:j]) for i, j in _runs(mask, False)]
        assert [p for p in text.split(MASK) if p] == [p for p in kept if p]
        masked_somewhere += any(mask)
    assert masked_somewhere > 700


def _runs(mask, value):
    runs, start = [], None
    for i, m in enumerate(list(mask) + [not value]):
        if m == value and start is None:
            start = i
        elif m != value and start is not None:
            runs.append((start, i))
            start = None
    return runs


def test_plain_msp_can_split_a_lexer_token_where_lamsp_cannot():
    tok = train_formula_tokenizer(FORMULAS, 800)
    formula = "=SUM(BC18:BC1999)*ZZ100000"
    ids = tok.encode(formula)[:-1]
    splits = 0
    for seed in range(200):
        out = msp_ids(ids, tok.mask_token_id, random.Random(seed))
        text = tok.decode(out).replace(tok.mask_token, MASK)
        pieces = [p for p in text.split(MASK) if p]
        whole = {join(lex(formula.lower())[i:j]) for i in range(20) for j in range(i, 21)}
        splits += any(p not in whole for p in pieces)
    assert splits > 0


def test_tail_mask_keeps_30_to_70_percent():
    rng = random.Random(1)
    for formula in FORMULAS[:300]:
        text = tail_mask(formula, rng)
        prefix = text[:-len(MASK)]
        assert text.endswith(MASK) and formula.startswith(prefix)
        assert 0.3 * len(formula) - 1 <= len(formula) - len(prefix) <= 0.7 * len(formula) + 1


def test_random_noise_changes_ten_percent():
    rng = random.Random(2)
    ids = list(range(10, 50))
    changed = [random_noise(ids, (4, 100), rng) for _ in range(50)]
    assert all(c != ids for c in changed)
    assert all(abs(len(c) - len(ids)) <= 4 for c in changed)


def test_corrupt_gives_ids_ending_in_eos_for_every_objective():
    tok = train_formula_tokenizer(FORMULAS, 800)
    rng = random.Random(3)
    for name in ("lamsp", "msp", "tail", "user", "random", "unchanged"):
        ids = corrupt(name, FORMULAS[5], tok, rng)
        assert ids[-1] == tok.eos_token_id and tok.eos_token_id not in ids[:-1]
    assert corrupt("unchanged", FORMULAS[5], tok, rng) == tok.encode(FORMULAS[5])
    with pytest.raises(ConfigError):
        corrupt("nope", "=A1", tok, rng)


@pytest.mark.parametrize("name", list(OPERATORS))
def test_each_noise_operator_yields_an_invalid_or_different_formula_and_the_pair_round_trips(name, tmp_path):
    from slm.recipes.flame.tasks import read_repair_file

    operator = OPERATORS[name]
    rng = random.Random(name)
    pairs = []
    for formula in FORMULAS:
        noised = apply_operator(name, formula, rng)
        if noised is None:
            continue
        assert noised != formula and join(lex(noised)) == noised
        if operator.breaks_syntax:
            assert not is_valid(noised), (formula, noised)
        pairs.append({"Buggy": noised, "GroundTruth": formula})
    assert len(pairs) >= 5, "the operator never applied to the generated formulas"
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps(pairs))
    assert read_repair_file(path) == [(p["Buggy"], p["GroundTruth"]) for p in pairs]


def test_at_least_twelve_operators_and_user_noise_picks_one_that_applies():
    assert len(OPERATORS) >= 12
    noised, used = apply_user_noise("=SUM(A1:A5)", random.Random(0))
    assert noised != "=SUM(A1:A5)" and len(used) == 1
    assert apply_user_noise("", random.Random(0)) == ("", [])
