"""Realistic Excel formulas from a grammar over the function list, grouped in workbooks.

    books = generate_workbooks(200, seed=0)      # [Workbook(name, formulas), ...]
    books[0].formulas[:3]                        # ['=SUMIF(B2:B41, "Paid", D2:D41)', '=SUMIF(B3:B42, ...', ...]

A workbook is a small world the formulas share: sheet names (some that need quotes), a table with columns,
named ranges, the used rows of its data, and one writing style (", " or "," between arguments). Its formulas
are a few templates, each filled down or right over several cells the way users copy a formula, so relative
references shift and absolute ones ($B$1) stay: most formulas of a workbook share a sketch with another one of
it, which is what makes sketch deduplication per workbook (and the global variant) meaningful.

Expressions are drawn by argument type (functions.py) to a random nesting depth (1-4, mostly 1-2): numbers from
cells, constants, arithmetic and numeric functions; ranges as A2:A40, $B$2:$B$40, Sheet2!C:C, 'Sales Data'!B2:B9,
named ranges and structured references; criteria as quoted comparisons (">=10", "<>"&B1); text, logicals,
lookups, arrays, percentages, unary minus and errors. Every generated formula parses (lexer.is_valid).
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from slm.recipes.flame.functions import FUNCTIONS, Function
from slm.recipes.flame.lexer import Token, column_index, join, lex

SHEETS = ["Sheet1", "Sheet2", "Data", "Summary", "Inputs", "Calc", "Jan", "Feb", "Q1", "Sales Data", "Raw Data",
          "Budget 2023", "Lookup Table", "Staff List", "P&L", "Menu"]
NAMES = ["TaxRate", "Revenue", "Costs", "StartDate", "EndDate", "Rates", "Prices", "Targets", "Headcount",
         "ExchangeRate", "Discount", "Region_List", "Months", "Threshold", "Budget"]
TABLES = {"Table1": ["Amount", "Date", "Region", "Status"], "Sales": ["Qty", "Price", "Product", "Rep"],
          "tblOrders": ["Order ID", "Customer", "Total", "Shipped"], "Employees": ["Name", "Dept", "Salary", "Start"]}
WORDS = ["Yes", "No", "Not available", "N/A", "Pending", "Complete", "Total", "Paid", "Overdue", "High", "Low",
         "Medium", "Open", "Closed", "Pass", "Fail", "East", "West", "North", "South", "Late", "On time", "OK",
         "Error", "Missing", "Active", "Inactive", "Approved", "Rejected", "Y", "N", "x", "Q1", "Q2"]
FORMATS = ["0.00", "0%", "0.0%", "dd/mm/yyyy", "mmm-yy", "yyyy-mm-dd", "$#,##0", "#,##0.00", "mmmm", "dddd", "hh:mm"]
COMPARISONS = [">", "<", ">=", "<=", "<>", "="]


@dataclass
class Workbook:
    name: str
    formulas: list[str] = field(default_factory=list)


class _Context:
    """One workbook's world: sheets, a table, named ranges, its data rows and columns, and its style."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.sheets = rng.sample(SHEETS, rng.randint(1, 4))
        self.table = rng.choice(list(TABLES)) if rng.random() < 0.35 else None
        self.names = rng.sample(NAMES, rng.randint(0, 4))
        self.first_row = rng.choice([2, 2, 2, 3, 5])
        self.last_row = self.first_row + rng.choice([8, 19, 29, 49, 99, 199, 499, 999])
        self.columns = [chr(65 + i) for i in rng.sample(range(12), rng.randint(3, 8))]
        self.separator = ", " if rng.random() < 0.3 else ","
        self.row = rng.randint(self.first_row, min(self.last_row, self.first_row + 30))


class FormulaGenerator:
    def __init__(self, rng: random.Random, context: _Context, max_depth: int):
        self.rng, self.ctx, self.max_depth = rng, context, max_depth
        self._by_return: dict[str, list[Function]] = {}
        for f in FUNCTIONS.values():
            self._by_return.setdefault(f.returns, []).append(f)

    # ---------------------------------------------------------------------------- references
    def column(self) -> str:
        return self.rng.choice(self.ctx.columns)

    def sheet_prefix(self, p: float = 0.15) -> str:
        if self.rng.random() >= p:
            return ""
        sheet = self.rng.choice(self.ctx.sheets)
        needs_quotes = not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", sheet) or re.fullmatch(r"[A-Za-z]{1,3}[0-9]+", sheet)
        return f"'{sheet}'!" if needs_quotes else f"{sheet}!"  # 'Q1'! as Excel writes it: Q1 is a cell

    def cell(self) -> str:
        rng, ctx = self.rng, self.ctx
        r = rng.random()
        if r < 0.6:
            return f"{self.column()}{ctx.row}"  # the formula's own row: shifts when filled down
        if r < 0.8:
            return f"${self.column()}${rng.choice([1, 2, ctx.first_row - 1 or 1])}"  # a fixed input cell
        return f"{self.sheet_prefix(0.5)}{self.column()}{rng.randint(1, ctx.last_row)}"

    def range(self) -> str:
        rng, ctx = self.rng, self.ctx
        r = rng.random()
        if r < 0.1 and ctx.names:
            return rng.choice(ctx.names)
        if r < 0.2 and ctx.table:
            return f"{ctx.table}[{rng.choice(TABLES[ctx.table])}]"
        prefix = self.sheet_prefix()
        col = self.column()
        if r < 0.28:
            return f"{prefix}{col}:{col}"
        a = "$" if rng.random() < 0.35 else ""
        end = self.column() if rng.random() < 0.2 else col
        return f"{prefix}{a}{col}{a}{ctx.first_row}:{a}{end}{a}{ctx.last_row}"

    # ---------------------------------------------------------------------------- constants
    def number(self) -> str:
        rng = self.rng
        r = rng.random()
        if r < 0.4:
            return str(rng.choice([0, 1, 2, 3, 5, 10, 12, 100, 1000, 7, 24, 60, 365]))
        if r < 0.6:
            return f"{rng.choice([0.05, 0.1, 0.15, 0.2, 0.25, 0.5, 1.5, 0.075, 2.5])}"
        if r < 0.7:
            return f"{rng.choice([5, 10, 15, 20, 50])}%"
        return str(rng.randint(1, 5000))

    def string(self, words=WORDS) -> str:
        return '"' + self.rng.choice(words).replace('"', '""') + '"'

    def criteria(self) -> str:
        rng = self.rng
        r = rng.random()
        if r < 0.35:
            return self.string()
        if r < 0.6:
            return f'"{rng.choice(COMPARISONS[:5])}{rng.choice([0, 1, 5, 10, 100, 50, 1000])}"'
        if r < 0.75:
            return f'"{rng.choice(COMPARISONS[:5])}"&{self.cell()}'
        if r < 0.9:
            return self.cell()
        return self.number()

    # ---------------------------------------------------------------------------- expressions
    def call(self, f: Function, depth: int) -> str:
        rng = self.rng
        if f.max_args == 0:
            return f"{f.name}()"
        extra = f.max_args - f.min_args
        count = f.min_args
        if extra:
            step = max(1, f.repeat)
            count += step * rng.choice([0, 0, 1, 1, 2]) if f.repeat else rng.choice([0, 1])
            count = min(count, f.max_args, f.min_args + 6)
        args = [self.argument(f, i, depth + 1) for i in range(count)]
        return f"{f.name}({self.ctx.separator.join(args)})"

    def argument(self, f: Function, index: int, depth: int) -> str:
        kind = f.arg_type(index)
        if f.name in ("VLOOKUP", "HLOOKUP") and index == 3:
            return self.rng.choice(["FALSE", "0", "TRUE"])
        if f.name in ("VLOOKUP", "HLOOKUP") and index == 2:
            return str(self.rng.randint(2, 6))
        if f.name == "TEXT" and index == 1:
            return self.string(FORMATS)
        return self.of_type(kind, depth)

    def function(self, returns: str, depth: int) -> str:
        pool = self._by_return[returns] + (self._by_return["a"] if returns != "a" else [])
        f = self.rng.choices(pool, weights=[p.weight for p in pool])[0]
        return self.call(f, depth)

    def of_type(self, kind: str, depth: int) -> str:
        rng = self.rng
        deeper = depth < self.max_depth
        if kind == "r":
            return self.range()
        if kind == "c":
            return self.criteria()
        if kind == "i":
            return str(rng.choice([0, 1, 1, 2, 2, 3])) if rng.random() < 0.85 or not deeper else self.function("n", depth)
        if kind == "l":
            return self.cell() if rng.random() < 0.7 else (self.string() if rng.random() < 0.5 else self.number())
        if kind == "t":
            r = rng.random()
            if deeper and r < 0.25:
                return self.function("t", depth)
            if r < 0.4:
                return f'{self.cell()}&" "&{self.cell()}'
            return self.string() if r < 0.7 else self.cell()
        if kind == "b":
            r = rng.random()
            if deeper and r < 0.2:
                return self.function("b", depth)
            if r < 0.4:
                return f"{self.cell()}={self.string()}"
            left = self.function("n", depth) if deeper and r > 0.85 else self.cell()
            return f"{left}{rng.choice(COMPARISONS)}{self.number() if rng.random() < 0.6 else self.cell()}"
        if kind == "a":
            r = rng.random()
            if r < 0.12:
                return '""'
            if r < 0.35:
                return self.of_type("t", depth)
            if r < 0.37:
                return rng.choice(["#N/A", "NA()", "0"])
            return self.of_type("n", depth)
        # numbers
        r = rng.random()
        if deeper and r < 0.3:
            return self.function("n", depth)
        if r < 0.55:
            return self.cell()
        if r < 0.7:
            return self.number()
        if r < 0.9:
            op = rng.choice(["+", "-", "*", "/", "*", "-"])
            expr = f"{self.of_type('n', depth + 1)}{op}{self.of_type('n', depth + 1)}"
            return f"({expr})" if rng.random() < 0.4 else expr
        if r < 0.95:
            return f"-{self.cell()}"
        if r < 0.97:
            return "{" + ",".join(str(rng.randint(1, 9)) for _ in range(rng.randint(2, 4))) + "}"
        return f"--({self.cell()}{rng.choice(COMPARISONS)}{self.number()})"

    def formula(self) -> str:
        rng = self.rng
        r = rng.random()
        if r < 0.8:
            body = self.function(rng.choices("nabt", weights=[6, 4, 0.3, 1])[0], 1)
        elif r < 0.95:
            body = f"{self.of_type('n', 2)}{rng.choice(['+', '-', '*', '/'])}{self.of_type('n', 2)}"
        else:
            body = self.of_type("t", 1)
        return "=" + body


def shift(formula: str, rows: int = 0, columns: int = 0) -> str:
    """The formula copied `rows` down and `columns` right: relative references move, $-anchored parts stay."""
    out = []
    for t in lex(formula):
        if t.kind == "cell":
            prefix, _, ref = t.text.rpartition("!")
            m = re.fullmatch(r"(\$?)([A-Za-z]{1,3})(\$?)([0-9]+)", ref)
            col_abs, col, row_abs, row = m.groups()
            if not col_abs and columns:
                col = _column_letters(column_index(col) + columns)
            if not row_abs:
                row = str(max(1, int(row) + rows))
            t = Token("cell", f"{prefix + '!' if prefix else ''}{col_abs}{col}{row_abs}{row}")
        out.append(t)
    return join(out)


def _column_letters(n: int) -> str:
    out = ""
    while n:
        n, r = divmod(n - 1, 26)
        out = chr(65 + r) + out
    return out


def generate_workbook(rng: random.Random, name: str) -> Workbook:
    """A few templates, each copied down (or right) over a few cells, in the order they sit in the sheet."""
    ctx = _Context(rng)
    book = Workbook(name)
    for _ in range(rng.randint(2, 8)):
        gen = FormulaGenerator(rng, ctx, max_depth=rng.choices([1, 2, 3, 4], weights=[3, 4, 2, 1])[0])
        template = gen.formula()
        copies = rng.choice([1, 1, 2, 3, 5, 8, 12, 20])
        right = rng.random() < 0.2
        for k in range(copies):
            book.formulas.append(shift(template, 0, k) if right else shift(template, k, 0))
    return book


def generate_workbooks(n: int, seed: int | str = 0) -> list[Workbook]:
    rng = random.Random(f"slm-flame-workbooks:{seed}")
    return [generate_workbook(rng, f"book-{seed}-{i}") for i in range(n)]
