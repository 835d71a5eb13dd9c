import re

import pytest

from slm.errors import ConfigError
from slm.recipes.orca2.families import correct, evaluate_sum, family_items, given_answer, split_items


def test_arithmetic_answers_are_the_executed_expression():
    for item in family_items("arithmetic", 50, seed=3):
        expression = re.search(r"\d[\d +-]*\d", item["question"]).group()
        assert str(evaluate_sum(expression)) == item["answer"]
    with pytest.raises(ValueError):
        evaluate_sum("__import__('os')")


def test_items_are_distinct_seeded_and_split_without_overlap():
    items = family_items("lookup", 60, seed=1)
    assert items == family_items("lookup", 60, seed=1) and items != family_items("lookup", 60, seed=2)
    train, held = split_items(items, 10)
    assert len(held) == 10 and not {i["question"] for i in train} & {i["question"] for i in held}
    with pytest.raises(ConfigError, match="nothing to train on"):
        split_items(items, 60)


def test_checkers():
    item = {"answer": "37"}
    assert correct("Step 1: 20 + 17 = 37\nThe answer is 37.", item, "number")
    assert not correct("Step 1: 20 + 17 = 37\nThe answer is 36.", item, "number")
    assert correct("37", item, "key") and not correct("137", item, "key")
    assert not correct("It could be 12, 37, 40, 41, 42, 43, 44, 45, 46, 47, 48 or 49", item, "key")
    assert correct("Recall: x\nAnswer: json", {"answer": "json"}, "key")
    assert not correct("Answer: json.decoder", {"answer": "json"}, "key")
    assert given_answer("Explanation: because.\nAnswer: 74\nmore") == "74"


def test_a_jsonl_source(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"question": "Double 4?", "answer": 8}\n')
    assert family_items(str(path), 5, seed=0) == [{"question": "Double 4?", "answer": "8"}]
    path.write_text('{"question": "Double 4?"}\n')
    with pytest.raises(ConfigError, match="needs"):
        family_items(str(path), 5, seed=0)
    with pytest.raises(ConfigError, match="neither a built-in"):
        family_items(str(tmp_path / "missing.jsonl"), 5, seed=0)
