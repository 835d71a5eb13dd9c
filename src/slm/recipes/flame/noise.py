"""User-inspired noise: 18 operators modelled on the mistakes people make when they type formulas.

    noised = apply_user_noise('=SUMIF(A2:A9,">5",B2:B9)', random.Random(0))   # e.g. '=SUMIF(A2:A9,>5,B2:B9)'
    OPERATORS["space_in_operator"].apply(lex(formula), rng)                  # tokens, or None where it cannot

Each operator works on lexer tokens and returns the changed tokens, or None where it does not apply (no string
to unquote, no comparison to reverse). `breaks_syntax` marks the operators whose result never parses (tests hold
them to it); the others give a formula that may parse but means something else (a swapped or missing argument).
"""
from __future__ import annotations

import random
import re
from typing import Callable, NamedTuple

from slm.recipes.flame.functions import FUNCTIONS
from slm.recipes.flame.lexer import Token, join, lex

Tokens = list[Token]


class Operator(NamedTuple):
    name: str
    apply: Callable[[Tokens, random.Random], Tokens | None]
    breaks_syntax: bool
    mistake: str


def calls(tokens: Tokens) -> list[tuple[int, int, list[tuple[int, int]]]]:
    """Every well-bracketed function call: (index of the name, index of its ')', [(start, end) of each argument's
    tokens]), arguments split at the call's own separators."""
    out = []
    for i, t in enumerate(tokens):
        if t.kind != "func" or i + 1 >= len(tokens) or tokens[i + 1] != Token("paren", "("):
            continue
        depth, start, args = 0, i + 2, []
        for j in range(i + 1, len(tokens)):
            u = tokens[j]
            if u.kind in ("paren", "brace"):
                depth += 1 if u.text in "({" else -1
                if depth == 0:
                    if j > i + 2 or args:
                        args.append((start, j))
                    out.append((i, j, args))
                    break
            elif u.kind == "sep" and depth == 1:
                args.append((start, j))
                start = j + 1
    return out


def _indices(tokens: Tokens, test) -> list[int]:
    return [i for i, t in enumerate(tokens) if test(t)]


def _replace(tokens: Tokens, i: int, *new: Token) -> Tokens:
    return tokens[:i] + list(new) + tokens[i + 1:]


def drop_close_paren(tokens, rng):
    found = _indices(tokens, lambda t: t == Token("paren", ")"))
    if not found:
        return None
    i = found[-1] if rng.random() < 0.6 else rng.choice(found)
    return tokens[:i] + tokens[i + 1:]


def extra_close_paren(tokens, rng):
    found = _indices(tokens, lambda t: t == Token("paren", ")"))
    if not found:
        return None
    return tokens + [Token("paren", ")")] if rng.random() < 0.6 else _replace(tokens, rng.choice(found),
                                                                                Token("paren", ")"), Token("paren", ")"))


def drop_open_paren(tokens, rng):
    found = _indices(tokens, lambda t: t == Token("paren", "("))
    if not found:
        return None
    i = rng.choice(found)
    return tokens[:i] + tokens[i + 1:]


def semicolon_for_comma(tokens, rng):
    seps = sorted({j for _, _, args in calls(tokens) for _, j in args[:-1] if tokens[j].text == ","})
    if not seps:
        return None
    chosen = seps if rng.random() < 0.7 else [rng.choice(seps)]
    out = list(tokens)
    for j in chosen:
        out[j] = Token("sep", ";")
    return out


def drop_quote(tokens, rng):
    found = _indices(tokens, lambda t: t.kind == "string" and len(t.text) >= 2 and t.text.endswith('"'))
    if not found:
        return None
    i = rng.choice(found)
    text = tokens[i].text
    return _replace(tokens, i, Token("name", text[:-1] if rng.random() < 0.6 else text[1:]))


def unquote_criteria(tokens, rng):
    found = _indices(tokens, lambda t: t.kind == "string" and re.match(r'"(<>|>=|<=|>|<|=)', t.text))
    if not found:
        return None
    i = rng.choice(found)
    return _replace(tokens, i, Token("name", tokens[i].text[1:-1]))


def unquote_text(tokens, rng):
    found = _indices(tokens, lambda t: t.kind == "string" and re.fullmatch(r'"[A-Za-z][A-Za-z /]*"', t.text))
    if not found:
        return None
    i = rng.choice(found)
    return _replace(tokens, i, Token("name", tokens[i].text[1:-1]))


def drop_argument(tokens, rng):
    found = [c for c in calls(tokens) if len(c[2]) >= 2]
    if not found:
        return None
    _, _, args = rng.choice(found)
    k = len(args) - 1 if rng.random() < 0.6 else rng.randrange(len(args))
    start, end = args[k]
    if k == len(args) - 1:
        return tokens[:args[k - 1][1]] + tokens[end:]  # drop the separator before the last argument
    return tokens[:start] + tokens[args[k + 1][0]:]


def extra_argument(tokens, rng):
    found = calls(tokens)
    if not found:
        return None
    _, close, args = rng.choice(found)
    sep = next((tokens[j] for _, j in args[:-1]), Token("sep", ","))
    extra = tokens[args[-1][0]:args[-1][1]] if args and rng.random() < 0.5 else [Token("number", "0")]
    return tokens[:close] + ([sep] if args else []) + extra + tokens[close:]


def misspell_function(tokens, rng):
    found = _indices(tokens, lambda t: t.kind == "func" and len(t.text) >= 2)
    if not found:
        return None
    i = rng.choice(found)
    name = tokens[i].text
    for _ in range(20):
        k = rng.randrange(len(name))
        edit = rng.choice(["drop", "double", "swap", "vowel"])
        if edit == "drop":
            typo = name[:k] + name[k + 1:]
        elif edit == "double":
            typo = name[:k] + name[k] + name[k:]
        elif edit == "swap" and k + 1 < len(name):
            typo = name[:k] + name[k + 1] + name[k] + name[k + 2:]
        else:
            typo = name[:k] + rng.choice("AEIOU") + name[k + 1:]
        if typo and typo.upper() not in FUNCTIONS and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", typo) \
                and not re.fullmatch(r"[A-Za-z]{1,3}[0-9]+", typo):
            return _replace(tokens, i, Token("func", typo))
    return None


_REVERSED = {">=": "=>", "<=": "=<", "<>": "><"}


def reversed_comparison(tokens, rng):
    found = _indices(tokens, lambda t: t.kind == "op" and t.text in _REVERSED)
    if not found:
        return None
    i = rng.choice(found)
    return _replace(tokens, i, Token("op", _REVERSED[tokens[i].text][0]), Token("op", _REVERSED[tokens[i].text][1]))


def space_in_operator(tokens, rng):
    found = _indices(tokens, lambda t: t.kind == "op" and t.text in _REVERSED)
    if not found:
        return None
    i = rng.choice(found)
    a, b = tokens[i].text
    return _replace(tokens, i, Token("op", a), Token("ws", " "), Token("op", b))


def range_missing_column(tokens, rng):
    found = [i for i in range(len(tokens) - 2) if tokens[i].kind == "cell" and tokens[i + 1].kind == "colon"
             and tokens[i + 2].kind == "cell"]
    if not found:
        return None
    i = rng.choice(found) + 2
    return _replace(tokens, i, Token("number", re.sub(r"^.*?([0-9]+)$", r"\1", tokens[i].text)))


def swap_arguments(tokens, rng):
    found = [c for c in calls(tokens) if len(c[2]) >= 2]
    rng.shuffle(found)
    for _, _, args in found:
        a, b = rng.sample(range(len(args)), 2) if len(args) > 2 else (0, 1)
        a, b = min(a, b), max(a, b)
        (s1, e1), (s2, e2) = args[a], args[b]
        if join(tokens[s1:e1]).strip() != join(tokens[s2:e2]).strip():
            return tokens[:s1] + tokens[s2:e2] + tokens[e1:s2] + tokens[s1:e1] + tokens[e2:]
    return None


def missing_equals(tokens, rng):
    if not tokens or tokens[0] != Token("op", "="):
        return None
    return tokens[1:]


def bang_not_equal(tokens, rng):
    found = _indices(tokens, lambda t: t == Token("op", "<>"))
    if not found:
        return None
    return _replace(tokens, rng.choice(found), Token("unknown", "!"), Token("op", "="))


def double_equals(tokens, rng):
    found = [i for i, t in enumerate(tokens) if i > 0 and t == Token("op", "=")]
    if not found:
        return None
    return _replace(tokens, rng.choice(found), Token("op", "="), Token("op", "="))


def unquoted_sheet(tokens, rng):
    found = _indices(tokens, lambda t: t.kind in ("cell", "range", "name") and t.text.startswith("'") and "'!" in t.text)
    if not found:
        return None
    i = rng.choice(found)
    sheet, _, ref = tokens[i].text.rpartition("!")
    return _replace(tokens, i, Token("name", sheet[1:-1].replace("''", "'") + "!" + ref))


OPERATORS: dict[str, Operator] = {op.name: op for op in [
    Operator("drop_close_paren", drop_close_paren, True, "a closing bracket missing"),
    Operator("extra_close_paren", extra_close_paren, True, "one closing bracket too many"),
    Operator("drop_open_paren", drop_open_paren, True, "an opening bracket missing"),
    Operator("semicolon_for_comma", semicolon_for_comma, True, "; between arguments (another locale's separator)"),
    Operator("drop_quote", drop_quote, True, "a string's opening or closing quote missing"),
    Operator("unquote_criteria", unquote_criteria, True, 'a criteria expression not quoted (>5 for ">5")'),
    Operator("unquote_text", unquote_text, False, "text written without quotes"),
    Operator("drop_argument", drop_argument, False, "an argument missing (wrong arity)"),
    Operator("extra_argument", extra_argument, False, "an argument too many (wrong arity)"),
    Operator("misspell_function", misspell_function, True, "a misspelled function name"),
    Operator("reversed_comparison", reversed_comparison, True, "=> for >=, =< for <=, >< for <>"),
    Operator("space_in_operator", space_in_operator, True, "a space inside >=, <= or <>"),
    Operator("range_missing_column", range_missing_column, True, "a range's end without its column (A2:40)"),
    Operator("swap_arguments", swap_arguments, False, "two arguments in the wrong order"),
    Operator("missing_equals", missing_equals, True, "the leading = forgotten"),
    Operator("bang_not_equal", bang_not_equal, True, "!= for <>"),
    Operator("double_equals", double_equals, True, "== for ="),
    Operator("unquoted_sheet", unquoted_sheet, False, "a sheet name with spaces not quoted"),
]}


def apply_operator(name: str, formula: str, rng: random.Random) -> str | None:
    """The formula after one operator, or None where it does not apply (or would change nothing)."""
    out = OPERATORS[name].apply(lex(formula), rng)
    if out is None:
        return None
    noised = join(out)
    return noised if noised != formula else None


def apply_user_noise(formula: str, rng: random.Random, operators: int = 1) -> tuple[str, list[str]]:
    """The formula after `operators` user-inspired operators picked at random among those that apply, and their
    names; the formula unchanged and [] when none applies."""
    used = []
    for _ in range(operators):
        names = list(OPERATORS)
        rng.shuffle(names)
        for name in names:
            noised = apply_operator(name, formula, rng)
            if noised is not None:
                formula = noised
                used.append(name)
                break
    return formula, used
