"""A local generator of grade-school math problems, each with the program that solves it.

A problem is built from parts: a story family (items, money, time, distance), a start sentence, one or two
steps that change the running quantity, an optional irrelevant sentence (as in GSM-IC) and a final question.
Every part has its own sentence and its own lines of code, and parts come in several phrasings. The
*template* of a problem is the exact sequence of parts and phrasings it was built from, e.g.
`items|start.packs/1|give/0|percent/1|final.bags/0|noise.age`. Splits are made by template: a test template
never occurs in training, so a test problem is never a re-numbering of a training problem. Each piece of
wording does occur in training in other combinations: what the test measures is composition, as GSM8K's
test set measures problems built from familiar steps in unfamiliar orders.

The code is written in TinyGSM's style (variables named after quantities, one operation per line, `result`
returned); the answer is what the program returns (checked by running it, see formats.execute_programs).
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

NAMES = [("Emma", "she"), ("Liam", "he"), ("Olivia", "she"), ("Noah", "he"), ("Ava", "she"), ("Lucas", "he"),
         ("Mia", "she"), ("Ethan", "he"), ("Sofia", "she"), ("Mason", "he"), ("Zoe", "she"), ("Omar", "he"),
         ("Lily", "she"), ("Ravi", "he"), ("Nora", "she"), ("Diego", "he")]
ITEMS = [("apple", "apples"), ("marble", "marbles"), ("sticker", "stickers"), ("cookie", "cookies"),
         ("book", "books"), ("pencil", "pencils"), ("shell", "shells"), ("card", "cards"), ("egg", "eggs"),
         ("flower", "flowers")]
THINGS = [("notebook", "notebooks"), ("toy car", "toy cars"), ("ticket", "tickets"), ("sandwich", "sandwiches")]
ACTIVITIES = ["reads", "practices the piano", "jogs", "paints", "studies", "swims"]
VEHICLES = ["car", "bus", "train", "truck"]


@dataclass
class State:
    """What the sentences so far have set up: who, what, and the running quantity's variable and value."""

    rng: random.Random
    name: str
    pronoun: str
    noun: tuple[str, str] = ("", "")
    var: str = ""
    value: int = 0
    lines: list[str] = field(default_factory=list)

    @property
    def P(self) -> str:  # sentence-initial pronoun
        return self.pronoun.capitalize()

    @property
    def poss(self) -> str:
        return "her" if self.pronoun == "she" else "his"

    def code(self, *lines: str) -> None:
        self.lines.extend(lines)


class Reject(Exception):
    """These numbers do not fit this part (a division would not be exact, a count would go negative)."""


def _divisor(rng: random.Random, value: int, low: int = 2, high: int = 12) -> int:
    options = [k for k in range(low, high + 1) if value % k == 0 and value // k > 1]
    if not options:
        raise Reject
    return rng.choice(options)


def _percent(rng: random.Random, value: int) -> int:
    options = [p for p in (10, 20, 25, 50, 75) if value * p % 100 == 0]
    if not options:
        raise Reject
    return rng.choice(options)


# ---------------------------------------------------------------------------------------------- families
# Each part: (sentence phrasings, apply). apply(state, variant) writes code and returns the sentence.
# Start parts choose the subject; steps change the running quantity; finals ask the question and set result.

def _items_start_have(s: State, v: int) -> str:
    a = s.rng.randint(8, 60)
    s.code(f"{s.var} = {a}")
    s.value = a
    return [f"{s.name} has {a} {s.noun[1]}.", f"There are {a} {s.noun[1]} in {s.name}'s bag."][v]


def _items_start_packs(s: State, v: int) -> str:
    a, b = s.rng.randint(2, 9), s.rng.randint(3, 12)
    s.code(f"packs = {a}", f"per_pack = {b}", f"{s.var} = packs * per_pack")
    s.value = a * b
    return [f"{s.name} buys {a} packs of {s.noun[1]}. Each pack has {b} {s.noun[1]}.",
            f"{s.name} has {a} boxes with {b} {s.noun[1]} in each box."][v]


def _items_start_days(s: State, v: int) -> str:
    a, b = s.rng.randint(5, 40), s.rng.randint(5, 40)
    s.code(f"first = {a}", f"second = {b}", f"{s.var} = first + second")
    s.value = a + b
    return [f"{s.name} collects {a} {s.noun[1]} on Monday and {b} {s.noun[1]} on Tuesday.",
            f"{s.name} picks {a} {s.noun[1]} in the morning and {b} in the afternoon."][v]


def _items_more(s: State, v: int) -> str:
    b = s.rng.randint(2, 30)
    s.code(f"more = {b}", f"{s.var} = {s.var} + more")
    s.value += b
    return [f"{s.P} buys {b} more {s.noun[1]}.", f"Later {s.pronoun} finds {b} more {s.noun[1]}."][v]


def _items_give(s: State, v: int) -> str:
    if s.value < 3:
        raise Reject
    b = s.rng.randint(1, s.value - 1)
    s.code(f"given = {b}", f"{s.var} = {s.var} - given")
    s.value -= b
    return [f"{s.P} gives {b} {s.noun[1]} to a friend.", f"{s.P} loses {b} of the {s.noun[1]}."][v]


def _items_times(s: State, v: int) -> str:
    k = s.rng.choice([2, 3])
    word = {2: ["doubles", "twice"], 3: ["triples", "three times"]}[k]
    s.code(f"factor = {k}", f"{s.var} = {s.var} * factor")
    s.value *= k
    return [f"Then {s.pronoun} {word[0]} the number of {s.noun[1]}.",
            f"A week later {s.pronoun} has {word[1]} as many {s.noun[1]} as before."][v]


def _items_daily(s: State, v: int) -> str:
    r, d = s.rng.randint(2, 9), s.rng.randint(2, 7)
    s.code(f"per_day = {r}", f"days = {d}", f"{s.var} = {s.var} + per_day * days")
    s.value += r * d
    return [f"{s.P} gets {r} more {s.noun[1]} every day for {d} days.",
            f"For {d} days {s.pronoun} adds {r} {s.noun[1]} each day."][v]


def _items_percent(s: State, v: int) -> str:
    p = _percent(s.rng, s.value)
    s.code(f"percent = {p}", f"removed = {s.var} * percent // 100", f"{s.var} = {s.var} - removed")
    s.value -= s.value * p // 100
    return [f"{s.P} gives away {p}% of the {s.noun[1]}.", f"{p} percent of the {s.noun[1]} get lost."][v]


def _items_final_count(s: State, v: int) -> str:
    s.code(f"result = {s.var}")
    return [f"How many {s.noun[1]} does {s.pronoun} have now?", f"How many {s.noun[1]} are there in the end?"][v]


def _items_final_money(s: State, v: int) -> str:
    c = s.rng.randint(2, 9)
    s.code(f"price = {c}", f"result = {s.var} * price")
    s.value *= c
    return [f"{s.P} sells each {s.noun[0]} for ${c}. How much money does {s.pronoun} make?",
            f"If one {s.noun[0]} is worth ${c}, how many dollars are all the {s.noun[1]} worth?"][v]


def _items_final_bags(s: State, v: int) -> str:
    k = _divisor(s.rng, s.value)
    s.code(f"per_bag = {k}", f"result = {s.var} // per_bag")
    s.value //= k
    return [f"{s.P} puts the {s.noun[1]} into bags of {k}. How many bags does {s.pronoun} fill?",
            f"{s.P} shares the {s.noun[1]} equally among {k} friends. How many does each friend get?"][v]


def _items_final_dozens(s: State, v: int) -> str:
    s.code("dozen = 12", f"result = {s.var} / dozen")
    s.value /= 12
    return [f"How many dozens of {s.noun[1]} does {s.pronoun} have?",
            f"How many dozen {s.noun[1]} is that?"][v]


def _money_start_has(s: State, v: int) -> str:
    a = s.rng.randint(20, 200)
    s.code(f"money = {a}")
    s.value = a
    return [f"{s.name} has ${a}.", f"{s.name} has {a} dollars in {s.poss} wallet."][v]


def _money_start_wage(s: State, v: int) -> str:
    r, h = s.rng.randint(5, 20), s.rng.randint(2, 9)
    s.code(f"per_hour = {r}", f"hours = {h}", "money = per_hour * hours")
    s.value = r * h
    return [f"{s.name} earns ${r} per hour and works {h} hours.",
            f"{s.name} works for {h} hours at ${r} an hour."][v]


def _money_earn(s: State, v: int) -> str:
    b = s.rng.randint(5, 50)
    s.code(f"earned = {b}", "money = money + earned")
    s.value += b
    return [f"{s.P} earns ${b} mowing lawns.", f"{s.P} gets ${b} for {s.poss} birthday."][v]


def _money_spend(s: State, v: int) -> str:
    if s.value < 6:
        raise Reject
    b = s.rng.randint(1, s.value // 2)
    s.code(f"spent = {b}", "money = money - spent")
    s.value -= b
    return [f"{s.P} spends ${b} on a book.", f"{s.P} pays {b} dollars for lunch."][v]


def _money_buy(s: State, v: int) -> str:
    thing = s.rng.choice(THINGS)
    c = s.rng.randint(2, 9)
    most = s.value // c
    if most < 2:
        raise Reject
    k = s.rng.randint(1, min(most - 1, 6))
    s.code(f"count = {k}", f"cost = {c}", "money = money - count * cost")
    s.value -= k * c
    return [f"{s.P} buys {k} {thing[1]} that cost ${c} each.",
            f"{s.P} buys {k} {thing[1]} at {c} dollars per {thing[0]}."][v]


def _money_percent(s: State, v: int) -> str:
    p = _percent(s.rng, s.value)
    s.code(f"percent = {p}", "saved = money * percent // 100", "money = money - saved")
    s.value -= s.value * p // 100
    return [f"{s.P} puts {p}% of {s.poss} money in the bank.", f"{s.P} saves {p} percent of the money."][v]


def _money_final_left(s: State, v: int) -> str:
    s.code("result = money")
    return [f"How much money does {s.pronoun} have left?", f"How many dollars does {s.name} have now?"][v]


def _money_final_split(s: State, v: int) -> str:
    k = _divisor(s.rng, s.value, 2, 10)
    s.code(f"jars = {k}", "result = money // jars")
    s.value //= k
    return [f"{s.P} splits the money equally into {k} jars. How much is in each jar?",
            f"If {s.pronoun} shares the money equally with {k - 1} friends, how much does each person get?"][v]


def _money_final_cents(s: State, v: int) -> str:
    s.code("cents_per_dollar = 100", "result = money * cents_per_dollar")
    s.value *= 100
    return [f"How many cents does {s.pronoun} have in the end?", f"How much is {s.poss} money in cents?"][v]


def _time_start_daily(s: State, v: int) -> str:
    a, d = s.rng.choice([10, 15, 20, 25, 30, 40, 45, 50]), s.rng.randint(2, 7)
    act = s.rng.choice(ACTIVITIES)
    s.code(f"minutes_per_day = {a}", f"days = {d}", "minutes = minutes_per_day * days")
    s.value = a * d
    return [f"{s.name} {act} for {a} minutes a day for {d} days.",
            f"For {d} days, {s.name} {act} {a} minutes each day."][v]


def _time_start_hours(s: State, v: int) -> str:
    h = s.rng.randint(1, 5)
    s.code(f"hours = {h}", "minutes_per_hour = 60", "minutes = hours * minutes_per_hour")
    s.value = h * 60
    return [f"{s.name} spends {h} hours at the library.", f"{s.name}'s trip takes {h} hours."][v]


def _time_more(s: State, v: int) -> str:
    b = s.rng.choice([5, 10, 15, 20, 30, 40])
    s.code(f"extra = {b}", "minutes = minutes + extra")
    s.value += b
    return [f"On Sunday {s.pronoun} adds {b} more minutes.", f"Then {s.pronoun} needs {b} extra minutes."][v]


def _time_less(s: State, v: int) -> str:
    options = [b for b in (5, 10, 15, 20, 30) if b < s.value]
    if not options:
        raise Reject
    b = s.rng.choice(options)
    s.code(f"skipped = {b}", "minutes = minutes - skipped")
    s.value -= b
    return [f"{s.P} skips {b} minutes on one day.", f"A break cuts {b} minutes from the total."][v]


def _time_final_minutes(s: State, v: int) -> str:
    s.code("result = minutes")
    return ["How many minutes is that in total?", f"How many minutes does {s.pronoun} spend altogether?"][v]


def _time_final_hours(s: State, v: int) -> str:
    s.code("minutes_per_hour = 60", "result = minutes / minutes_per_hour")  # may be fractional: 1.5 hours
    s.value /= 60
    return ["How many hours is that in total?", f"How many hours does {s.pronoun} spend altogether?"][v]


def _time_final_seconds(s: State, v: int) -> str:
    s.code("seconds_per_minute = 60", "result = minutes * seconds_per_minute")
    s.value *= 60
    return ["How many seconds is that?", "How long is that in seconds?"][v]


def _distance_start_speed(s: State, v: int) -> str:
    vehicle = s.rng.choice(VEHICLES)
    r, h = s.rng.choice([20, 30, 40, 50, 60, 80]), s.rng.randint(2, 6)
    s.code(f"speed = {r}", f"hours = {h}", "km = speed * hours")
    s.value = r * h
    return [f"A {vehicle} travels at {r} km per hour for {h} hours.",
            f"For {h} hours a {vehicle} moves at a speed of {r} km an hour."][v]


def _distance_start_laps(s: State, v: int) -> str:
    n, l = s.rng.randint(2, 9), s.rng.choice([2, 3, 4, 5])
    s.code(f"laps = {n}", f"km_per_lap = {l}", "km = laps * km_per_lap")
    s.value = n * l
    return [f"{s.name} cycles {n} laps of a {l} km track.", f"{s.name} runs {n} laps and each lap is {l} km."][v]


def _distance_more(s: State, v: int) -> str:
    b = s.rng.randint(3, 40)
    s.code(f"more = {b}", "km = km + more")
    s.value += b
    return [f"After that it goes {b} more km.", f"Then {b} km are added to the trip."][v]


def _distance_back(s: State, v: int) -> str:
    if s.value < 4:
        raise Reject
    b = s.rng.randint(1, s.value // 2)
    s.code(f"back = {b}", "km = km - back")
    s.value -= b
    return [f"A detour of {b} km is skipped.", f"The road is {b} km shorter than planned."][v]


def _distance_final_km(s: State, v: int) -> str:
    s.code("result = km")
    return ["How many km is the trip in total?", "What is the total distance in km?"][v]


def _distance_final_meters(s: State, v: int) -> str:
    s.code("meters_per_km = 1000", "result = km * meters_per_km")
    s.value *= 1000
    return ["How many meters is that?", "What is the total distance in meters?"][v]


def _distance_final_trips(s: State, v: int) -> str:
    k = _divisor(s.rng, s.value, 2, 8)
    s.code(f"stops = {k}", "result = km // stops")
    s.value //= k
    return [f"The distance is split into {k} equal parts. How many km is each part?",
            f"If the trip has {k} equal legs, how long is each leg in km?"][v]


NOISE = {  # irrelevant sentences: a number the program must not use
    "age": lambda s: f"{s.P} is {s.rng.randint(7, 15)} years old.",
    "sister": lambda s: f"{s.poss.capitalize()} sister has {s.rng.randint(2, 30)} {s.rng.choice(ITEMS)[1]}.",
    "school": lambda s: f"The school is {s.rng.randint(2, 9)} km away.",
    "pets": lambda s: f"{s.name} also has {s.rng.randint(2, 6)} pets.",
}


@dataclass(frozen=True)
class Family:
    starts: dict
    steps: dict
    finals: dict
    var: str | None  # the running variable; None: the item's plural


FAMILIES = {
    "items": Family({"have": _items_start_have, "packs": _items_start_packs, "days": _items_start_days},
                    {"more": _items_more, "give": _items_give, "times": _items_times, "daily": _items_daily,
                     "percent": _items_percent},
                    {"count": _items_final_count, "money": _items_final_money, "bags": _items_final_bags,
                     "dozens": _items_final_dozens}, None),
    "money": Family({"has": _money_start_has, "wage": _money_start_wage},
                    {"earn": _money_earn, "spend": _money_spend, "buy": _money_buy, "percent": _money_percent},
                    {"left": _money_final_left, "split": _money_final_split, "cents": _money_final_cents}, "money"),
    "time": Family({"daily": _time_start_daily, "hours": _time_start_hours},
                   {"more": _time_more, "less": _time_less},
                   {"minutes": _time_final_minutes, "hours": _time_final_hours, "seconds": _time_final_seconds},
                   "minutes"),
    "distance": Family({"speed": _distance_start_speed, "laps": _distance_start_laps},
                       {"more": _distance_more, "back": _distance_back},
                       {"km": _distance_final_km, "meters": _distance_final_meters, "trips": _distance_final_trips},
                       "km"),
}
PHRASINGS = 2  # every part has this many phrasings


@dataclass(frozen=True)
class Template:
    family: str
    start: tuple[str, int]
    steps: tuple[tuple[str, int], ...]
    final: tuple[str, int]
    noise: str | None  # the irrelevant sentence's kind, or None

    @property
    def id(self) -> str:
        parts = [self.family, f"start.{self.start[0]}/{self.start[1]}"]
        parts += [f"{name}/{v}" for name, v in self.steps]
        parts += [f"final.{self.final[0]}/{self.final[1]}", f"noise.{self.noise or 'none'}"]
        return "|".join(parts)

    @property
    def skeleton(self) -> str:
        """The parts in order, without their phrasings or the irrelevant sentence: what every paraphrase shares."""
        return "|".join([self.family, f"start.{self.start[0]}", *(name for name, _ in self.steps),
                         f"final.{self.final[0]}"])


@dataclass
class Problem:
    question: str
    code: str  # the whole program in TinyGSM format (formats.render_program)
    answer: float | int | None  # what the program returns (None until run, for external data)
    template: str = ""
    source: str = ""  # "generated" or "file:line"


def all_templates(max_steps: int = 2) -> list[Template]:
    """Every template the generator can build, in a fixed order."""
    out = []
    for fam_name, fam in FAMILIES.items():
        step_seqs: list[tuple] = [()]
        frontier: list[tuple] = [()]
        for _ in range(max_steps):
            frontier = [seq + ((st, v),) for seq in frontier for st in fam.steps for v in range(PHRASINGS)]
            step_seqs += frontier
        for start in fam.starts:
            for sv in range(PHRASINGS):
                for steps in step_seqs:
                    if not steps and max_steps:
                        continue  # at least one step: every problem is multi-step
                    for final in fam.finals:
                        for fv in range(PHRASINGS):
                            for noise in (None, *NOISE):
                                out.append(Template(fam_name, (start, sv), steps, (final, fv), noise))
    return out


def template_split(templates: list[Template], held_out_fraction: float,
                   seed: int | str) -> tuple[list[Template], list[Template]]:
    """(kept, held out): a seeded, stable fraction of templates held out by a hash of their skeleton.

    Splitting by skeleton, not by the template id, keeps every phrasing and noise variant of a held-out problem
    shape out of the kept side: a held-out problem is never a paraphrase (or a GSM-IC distractor variant) of a
    kept one.
    """
    def bucket(t: Template) -> float:
        h = hashlib.sha256(f"{seed}:{t.skeleton}".encode()).digest()
        return int.from_bytes(h[:8], "big") / 2**64

    kept = [t for t in templates if bucket(t) >= held_out_fraction]
    held_out = [t for t in templates if bucket(t) < held_out_fraction]
    return kept, held_out


def instantiate(template: Template, rng: random.Random, tries: int = 50) -> Problem:
    """Fill a template with names and numbers that fit every part (resampled until they do)."""
    from slm.recipes.tinygsm.formats import render_program

    fam = FAMILIES[template.family]
    for _ in range(tries):
        name, pronoun = rng.choice(NAMES)
        s = State(rng, name, pronoun)
        s.noun = rng.choice(ITEMS)
        s.var = fam.var or s.noun[1].replace(" ", "_")
        try:
            sentences = [fam.starts[template.start[0]](s, template.start[1])]
            for step, v in template.steps:
                sentences.append(fam.steps[step](s, v))
            if template.noise:
                sentences.insert(rng.randint(1, len(sentences)), NOISE[template.noise](s))
            sentences.append(fam.finals[template.final[0]](s, template.final[1]))
        except Reject:
            continue
        question = " ".join(sentences)
        return Problem(question, render_program(question, s.lines + ["return result"]), s.value, template.id,
                       "generated")
    raise RuntimeError(f"could not instantiate {template.id} in {tries} tries")  # a generator bug, not user input


def generate(templates: list[Template], n: int, seed: int | str) -> list[Problem]:
    """n problems from `templates` (a family, then one of its templates, uniformly), reproducible from the seed."""
    rng = random.Random(f"tinygsm:{seed}")
    by_family: dict[str, list[Template]] = {}
    for t in templates:
        by_family.setdefault(t.family, []).append(t)
    families = sorted(by_family)  # each family equally often, whatever its number of templates
    return [instantiate(rng.choice(by_family[rng.choice(families)]), rng) for _ in range(n)]
