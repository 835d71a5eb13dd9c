"""Orca 2's training data: teacher answers under each family's instruction, validated, then erased or kept.

    answers = teach(teacher, prompts, items)                 # {(family, strategy or None): [answer, ...]}
    records, counts = training_records(prompts, items, answers, variant="erased")

Variants (the recipe's students):
  erased   the family's detailed instruction asked the teacher; the student sees the generic system message;
  kept     the same answers, the detailed instruction kept as the student's system message (no erasure);
  single   every family answered under one strategy's generic instruction (`single_strategy`), then erased.
An answer its family's checker rejects is counted and not trained on.
"""
from __future__ import annotations

from slm.recipes.orca2.families import correct
from slm.recipes.orca2.prompts import Prompts

VARIANTS = ("erased", "kept", "single")


def requests_for(prompts: Prompts, items: dict[str, list[dict]], strategy: str | None, max_tokens: int):
    """[(family, item, Request)]: each training item asked under its family's instruction (strategy None) or
    under `strategy`'s generic instruction."""
    from slm.teach import Request

    return [(name, item, Request(messages=prompts.teacher_messages(prompts.families[name], item["question"], strategy),
                                 max_tokens=max_tokens, temperature=0.0, seed=0))
            for name, family_items in items.items() for item in family_items]


def scripted_answers(prompts: Prompts, items: dict[str, list[dict]]):
    """The scripted teacher's answer function: for each (system, user) the recipe can ask, the correct answer in
    the strategy that system message asks for."""
    table = {}
    for name, family_items in items.items():
        family = prompts.families[name]
        for item in family_items:
            table[(family.instruction, item["question"])] = prompts.scripted_answer(family.strategy, item)
            for strategy_name, strategy in prompts.strategies.items():
                table[(strategy.instruction, item["question"])] = prompts.scripted_answer(strategy_name, item)

    def answer(body: dict) -> str:
        messages = body["messages"]
        return table.get((messages[0]["content"], messages[-1]["content"]), "I do not know.")
    return answer


def teach(teacher, prompts: Prompts, items: dict[str, list[dict]], strategy: str | None, max_tokens: int,
          progress: bool = False) -> dict[str, list[str]]:
    """{family: [the teacher's answer to each training item, in order]}."""
    from tqdm import tqdm

    asked = requests_for(prompts, items, strategy, max_tokens)
    out: dict[str, list[str]] = {name: [] for name in items}
    bar = tqdm(total=len(asked), desc=f"teacher ({strategy or 'family instructions'})", unit="answer",
               disable=not progress, dynamic_ncols=True)
    for (name, _, _), answer in zip(asked, teacher.map(teacher.ask, [r for _, _, r in asked])):
        out[name].append(answer.text.strip())
        bar.update(1)
    bar.close()
    return out


def training_records(prompts: Prompts, items: dict[str, list[dict]], answers: dict[str, list[str]], variant: str,
                     single_strategy: str | None = None) -> tuple[list[dict], dict]:
    """(chat records, per-family counts {answers, correct, shows_strategy}) for one student variant; `answers`
    are those asked under the family instructions (erased, kept) or under single_strategy (single)."""
    records, counts = [], {}
    for name, family_items in items.items():
        family = prompts.families[name]
        expected = single_strategy if variant == "single" else family.strategy
        c = counts.setdefault(name, {"answers": 0, "correct": 0, "shows_strategy": 0})
        for item, answer in zip(family_items, answers[name]):
            c["answers"] += 1
            c["shows_strategy"] += prompts.shown_strategy(answer) == expected
            if not correct(answer, item, family.check):
                continue
            c["correct"] += 1
            records.append({"messages": prompts.training_messages(
                family, item["question"], answer, erase=variant != "kept",
                strategy=single_strategy if variant == "single" else None)})
    return records, counts
