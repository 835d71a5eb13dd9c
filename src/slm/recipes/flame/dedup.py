"""Sketch deduplication: keep one formula per sketch per workbook (FLAME's), or per sketch overall (the ablation).

    kept = dedup(workbooks, scope="workbook")     # [(workbook name, formula), ...] in their original order
    dedup(workbooks, scope="global")              # =SUM(A1:A10) in one book and =SUM(B2:B9) in another: one left

A sketch replaces constants and references by their type (lexer.sketch): =SUM(A1:A10) and =SUM(B2:B9) are both
=SUM(cell:cell), so the copies of a formula filled down a column count once; the first of each is kept.
"""
from __future__ import annotations

from slm.errors import ConfigError
from slm.recipes.flame.lexer import sketch

SCOPES = ("workbook", "global", "none")


def dedup(workbooks, scope: str = "workbook") -> list[tuple[str, str]]:
    if scope not in SCOPES:
        raise ConfigError(f"dedup scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    seen: set = set()
    kept = []
    for book in workbooks:
        for formula in book.formulas:
            key = sketch(formula) if scope == "global" else (book.name, sketch(formula))
            if scope == "none" or key not in seen:
                seen.add(key)
                kept.append((book.name, formula))
    return kept
