"""Formulas from a user's files, as workbooks: one formula a line (.txt), a CSV column, or an .xlsx workbook.

    books = read_workbooks(["sheets.txt", "export.csv", "budget.xlsx"], column="formula")

A .txt file is one workbook (blank lines and lines not starting with = are skipped); a .csv file is read by its
`column` (default: the first column whose values start with =) and grouped by a `workbook` column when it has
one, else the file is one workbook; an .xlsx file is one workbook of every formula cell of every sheet, read with
openpyxl (optional: `pip install openpyxl`).
"""
from __future__ import annotations

import csv
from pathlib import Path

from slm.errors import SlmError
from slm.recipes.flame.generator import Workbook


def _read_txt(path: Path) -> list[Workbook]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [Workbook(path.name, [line.strip() for line in lines if line.strip().startswith("=")])]


def _read_csv(path: Path, column: str | None) -> list[Workbook]:
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return []
    if column is None:
        column = next((c for c in rows[0] if str(rows[0][c] or "").startswith("=")), None)
        if column is None:
            raise SlmError(f"{path}: no column of the first row starts with '='; name it with --formula-column")
    if column not in rows[0]:
        raise SlmError(f"{path}: no column {column!r} (columns: {', '.join(rows[0])})")
    books: dict[str, Workbook] = {}
    for row in rows:
        formula = (row[column] or "").strip()
        if formula.startswith("="):
            name = row.get("workbook") or path.name
            books.setdefault(name, Workbook(name)).formulas.append(formula)
    return list(books.values())


def _read_xlsx(path: Path) -> list[Workbook]:
    try:
        import openpyxl
    except ImportError:
        raise SlmError(f"{path}: reading .xlsx files needs openpyxl (pip install openpyxl)") from None
    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=False)
    except Exception as e:  # openpyxl raises many types for a bad file
        raise SlmError(f"{path}: cannot read the workbook ({type(e).__name__}: {e})") from None
    book = Workbook(path.name)
    for sheet in wb.worksheets:
        for row in sheet.iter_rows(values_only=True):
            book.formulas.extend(v for v in row if isinstance(v, str) and v.startswith("="))
    return [book]


def read_workbooks(paths, column: str | None = None) -> list[Workbook]:
    books = []
    for p in map(Path, paths):
        if not p.is_file():
            raise SlmError(f"formula file not found: {p}")
        suffix = p.suffix.lower()
        if suffix == ".csv":
            books += _read_csv(p, column)
        elif suffix in (".xlsx", ".xlsm"):
            books += _read_xlsx(p)
        else:
            books += _read_txt(p)
    if not any(b.formulas for b in books):
        raise SlmError(f"no formulas (text starting with '=') in {', '.join(map(str, paths))}")
    return books
