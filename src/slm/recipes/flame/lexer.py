"""An Excel formula lexer and a small parser that says whether a formula is well formed.

    tokens = lex('=SUMIF(B1:B5, "Not available", A1:A5)')
    [t.kind for t in tokens][:4]       # ['op', 'func', 'paren', 'cell']
    "".join(t.text for t in tokens)    # the formula, exactly: the lexer is total and lossless
    is_valid("=SUM(A1:A5")             # False: the parser checks brackets, arities, references, operators

The lexer never fails: text it cannot read becomes an `unknown` token (or an unclosed `string`), so buggy formulas
lex too and the noise operators, the tokenizer and sketch deduplication can all work on lexer tokens. Kinds:

    ws          a run of whitespace              string      "text" with "" for a quote (unclosed: to the end)
    func        a name right before "("          number      12, 1.5, .5, 1E+3 (a % after it is an op)
    cell        [sheet!]$A$1                     bool        TRUE / FALSE
    range       [sheet!]A:C, [sheet!]$1:$3       error       #N/A, #DIV/0!, #REF!, ...
    name        a named range or other name      structured  Table1[Col], Table1[[#This Row],[Col]], [@Col]
    op          + - * / ^ & = <> >= <= > < % @   sep         , ;
    paren       ( )                              brace       { }
    colon       :  (between two references)      unknown     anything else, one character

A sheet prefix is `Name!` or `'Quoted name'!` (a quote inside doubled); it belongs to the reference after it.
"""
from __future__ import annotations

import re
from typing import NamedTuple


class Token(NamedTuple):
    kind: str
    text: str


ERRORS = ("#GETTING_DATA", "#DIV/0!", "#VALUE!", "#SPILL!", "#CALC!", "#NAME?", "#NULL!", "#REF!", "#NUM!", "#N/A")
_SHEET = r"(?:'(?:[^']|'')+'|[A-Za-z_][A-Za-z0-9_.]*)!"
_COL, _ROW = r"\$?[A-Za-z]{1,3}", r"\$?[0-9]+"
_PATTERNS = [
    ("ws", r"\s+"),
    ("range", rf"(?:{_SHEET})?(?:{_COL}:{_COL}|{_ROW}:{_ROW})(?![A-Za-z0-9_.(!\[])"),
    ("cell", rf"(?:{_SHEET})?{_COL}{_ROW}(?![A-Za-z0-9_.(!\[])"),
    ("number", r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"),
    ("bool", r"(?:TRUE|FALSE)(?![A-Za-z0-9_.(\[])"),
    ("ident", rf"(?:{_SHEET})?[A-Za-z_\\][A-Za-z0-9_.]*"),
    ("op", r"<>|>=|<=|[-+*/^&=<>%@]"),
    ("sep", r"[,;]"),
    ("paren", r"[()]"),
    ("brace", r"[{}]"),
    ("colon", r":"),
]
_REGEX = re.compile("|".join(f"(?P<{k}>{p})" for k, p in _PATTERNS), re.IGNORECASE)
MAX_COLUMN = 16384  # XFD


def column_index(letters: str) -> int:
    n = 0
    for ch in letters.upper():
        n = n * 26 + ord(ch) - 64
    return n


def _plausible_cell(text: str) -> bool:
    """A1-style text (or A:C, 1:3) whose columns are at most XFD and rows at least 1 (else a name, like ABCD1)."""
    for part in text.rsplit("!", 1)[-1].replace("$", "").split(":"):
        letters = re.match(r"[A-Za-z]*", part).group(0)
        digits = part[len(letters):]
        if (letters and column_index(letters) > MAX_COLUMN) or (digits and int(digits) < 1):
            return False
    return True


def _string_end(formula: str, i: int) -> int:
    """The index after the string that starts at formula[i] == '"' (the end of the formula when unclosed)."""
    j = i + 1
    while j < len(formula):
        if formula[j] == '"':
            if j + 1 < len(formula) and formula[j + 1] == '"':
                j += 2
                continue
            return j + 1
        j += 1
    return len(formula)


def _bracket_end(formula: str, i: int) -> int | None:
    """The index after the balanced [...] that starts at formula[i] == '[', or None when it never closes."""
    depth = 0
    for j in range(i, len(formula)):
        if formula[j] == "[":
            depth += 1
        elif formula[j] == "]":
            depth -= 1
            if depth == 0:
                return j + 1
    return None


def lex(formula: str) -> list[Token]:
    """The formula as lexer tokens; "".join(t.text for t in lex(f)) == f for every string f."""
    tokens: list[Token] = []
    i, n = 0, len(formula)
    while i < n:
        ch = formula[i]
        if ch == '"':
            j = _string_end(formula, i)
            tokens.append(Token("string", formula[i:j]))
            i = j
            continue
        if ch == "#":
            upper = formula[i:i + 13].upper()
            error = next((e for e in ERRORS if upper.startswith(e)), None)
            if error:
                tokens.append(Token("error", formula[i:i + len(error)]))
                i += len(error)
                continue
        if ch == "[":
            j = _bracket_end(formula, i)
            if j is not None:
                tokens.append(Token("structured", formula[i:j]))
                i = j
                continue
        m = _REGEX.match(formula, i)
        if m is None:
            tokens.append(Token("unknown", ch))
            i += 1
            continue
        kind, text = m.lastgroup, m.group(0)
        if kind in ("cell", "range") and not _plausible_cell(text):
            m = re.compile(rf"(?:{_SHEET})?[A-Za-z_\\][A-Za-z0-9_.]*").match(formula, i)
            kind, text = "ident", m.group(0)
        if kind == "ident":
            after = i + len(text)
            if after < n and formula[after] == "[":  # Table1[Column]
                j = _bracket_end(formula, after)
                if j is not None:
                    tokens.append(Token("structured", formula[i:j]))
                    i = j
                    continue
            kind = "func" if after < n and formula[after] == "(" and "!" not in text else "name"
        tokens.append(Token(kind, text))
        i += len(text)
    return tokens


def join(tokens) -> str:
    return "".join(t.text for t in tokens)


REFERENCE_KINDS = ("cell", "range", "name", "structured")
VALUE_KINDS = ("number", "string", "bool", "error") + REFERENCE_KINDS
SKETCH_PLACEHOLDERS = {"cell": "cell", "range": "range", "number": "num", "string": "str", "structured": "table"}


def sketch(formula: str) -> str:
    """The formula's sketch: constants and references by their type, whitespace gone, case folded
    (=SUM(A1:A10) and = sum(b2 : b9) are both =SUM(cell:cell))."""
    return "".join(SKETCH_PLACEHOLDERS.get(t.kind, t.text.upper()) for t in lex(formula) if t.kind != "ws")


def normalise(formula: str) -> str:
    """The paper's normalisation before exact match: references and identifiers capitalised, whitespace outside
    strings stripped; strings kept as they are."""
    return "".join(t.text if t.kind == "string" else t.text.upper() for t in lex(formula.strip()) if t.kind != "ws")


# ------------------------------------------------------------------------------------------------ the parser
_BINARY = {"+", "-", "*", "/", "^", "&", "=", "<>", ">=", "<=", ">", "<"}
_UNARY = {"+", "-", "@"}


class _Parser:
    """Recursive descent over the non-whitespace tokens; raises ValueError(reason) at the first problem."""

    def __init__(self, tokens: list[Token], functions: dict, separator: str):
        self.tokens = [t for t in tokens if t.kind != "ws"]
        self.functions, self.separator, self.i = functions, separator, 0

    def peek(self) -> Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            raise ValueError("the formula ends too early")
        self.i += 1
        return token

    def formula(self) -> None:
        first = self.take()
        if first != Token("op", "="):
            raise ValueError("a formula starts with =")
        self.expression()
        if self.peek() is not None:
            raise ValueError(f"unexpected {self.peek().text!r}")

    def expression(self) -> None:
        self.operand()
        while (t := self.peek()) is not None and t.kind == "op" and t.text in _BINARY:
            self.i += 1
            self.operand()

    def operand(self) -> None:
        while (t := self.peek()) is not None and t.kind == "op" and t.text in _UNARY:
            self.i += 1
        self.primary()
        while (t := self.peek()) is not None and t.kind == "op" and t.text == "%":
            self.i += 1

    def primary(self) -> None:
        t = self.take()
        if t.kind == "string" and (len(t.text) < 2 or not t.text.endswith('"')):
            raise ValueError("a string is not closed")
        if t.kind in ("cell", "range", "name", "structured"):
            if (c := self.peek()) is not None and c.kind == "colon":
                self.i += 1
                end = self.take()
                if t.kind != "cell" or end.kind != "cell":
                    raise ValueError(f"a range needs a cell on both sides of ':', got {end.text!r}")
            return
        if t.kind in ("number", "string", "bool", "error"):
            return
        if t.kind == "func":
            self.call(t.text)
            return
        if t == Token("paren", "("):
            self.expression()
            if self.take() != Token("paren", ")"):
                raise ValueError("a bracket is not closed")
            return
        if t == Token("brace", "{"):
            self.array()
            return
        raise ValueError(f"unexpected {t.text!r}")

    def call(self, name: str) -> None:
        spec = self.functions.get(name.upper())
        if spec is None:
            raise ValueError(f"unknown function {name}")
        self.take()  # "("
        count = 0
        if self.peek() == Token("paren", ")"):
            self.i += 1
        else:
            while True:
                count += 1
                if (t := self.peek()) is not None and not (t.kind == "sep" or t == Token("paren", ")")):
                    self.expression()  # an empty argument (IF(A1,,1)) is allowed
                t = self.take()
                if t == Token("paren", ")"):
                    break
                if t.kind != "sep" or t.text != self.separator:
                    raise ValueError(f"expected {self.separator!r} or ')' in {name}, got {t.text!r}")
        if not spec.min_args <= count <= spec.max_args:
            raise ValueError(f"{name} takes {spec.min_args}-{spec.max_args} arguments, got {count}")

    def array(self) -> None:
        while True:
            t = self.take()
            if t.kind == "op" and t.text == "-":
                t = self.take()
            if t.kind not in ("number", "string", "bool", "error"):
                raise ValueError("an array holds constants only")
            t = self.take()
            if t == Token("brace", "}"):
                return
            if t.kind != "sep":
                raise ValueError("array items are separated by , or ;")


def check(formula: str, separator: str = ",") -> str | None:
    """Why the formula is not well formed (unknown function, wrong arity, unbalanced bracket, ...), or None."""
    from slm.recipes.flame.functions import FUNCTIONS

    tokens = lex(formula)
    bad = next((t for t in tokens if t.kind == "unknown"), None)
    if bad is not None:
        return f"unexpected {bad.text!r}"
    try:
        _Parser(tokens, FUNCTIONS, separator).formula()
    except ValueError as e:
        return str(e)
    return None


def is_valid(formula: str, separator: str = ",") -> bool:
    return check(formula, separator) is None
