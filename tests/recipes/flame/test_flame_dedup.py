"""Sketch deduplication per workbook (FLAME's) and globally (the ablation); formulas from users' files."""
import pytest

from slm.errors import SlmError
from slm.recipes.flame.dedup import dedup
from slm.recipes.flame.generator import Workbook, generate_workbooks
from slm.recipes.flame.sources import read_workbooks


def test_sketch_dedup_merges_within_a_workbook_not_across():
    one = [Workbook("a", ["=SUM(A1:A10)", "=SUM(B2:B9)", "=A1+1"])]
    assert dedup(one, "workbook") == [("a", "=SUM(A1:A10)"), ("a", "=A1+1")]
    two = [Workbook("a", ["=SUM(A1:A10)"]), Workbook("b", ["=SUM(B2:B9)"])]
    assert dedup(two, "workbook") == [("a", "=SUM(A1:A10)"), ("b", "=SUM(B2:B9)")]
    assert dedup(two, "global") == [("a", "=SUM(A1:A10)")]
    assert len(dedup(two, "none")) == 2


def test_generated_workbooks_make_dedup_meaningful():
    books = generate_workbooks(100, seed=1)
    total = sum(len(b.formulas) for b in books)
    per_book, overall = len(dedup(books, "workbook")), len(dedup(books, "global"))
    assert overall < per_book < total  # filled-down copies go per workbook; common shapes repeat across books


def test_formula_files(tmp_path):
    (tmp_path / "f.txt").write_text("=SUM(A1:A3)\nnot a formula\n\n=A1*2\n")
    (tmp_path / "f.csv").write_text('workbook,cell,formula\nw1,A1,=SUM(A1:A3)\nw2,B1,"=IF(A1=""x"",1,0)"\n')
    books = read_workbooks([tmp_path / "f.txt", tmp_path / "f.csv"])
    assert [(b.name, b.formulas) for b in books] == [("f.txt", ["=SUM(A1:A3)", "=A1*2"]),
                                                     ("w1", ["=SUM(A1:A3)"]), ("w2", ['=IF(A1="x",1,0)'])]
    with pytest.raises(SlmError, match="no column 'nope'"):
        read_workbooks([tmp_path / "f.csv"], column="nope")
    with pytest.raises(SlmError, match="not found"):
        read_workbooks([tmp_path / "missing.txt"])


def test_xlsx_needs_openpyxl_or_reads_formula_cells(tmp_path):
    try:
        import openpyxl
    except ImportError:
        (tmp_path / "b.xlsx").write_bytes(b"PK")
        with pytest.raises(SlmError, match="openpyxl"):
            read_workbooks([tmp_path / "b.xlsx"])
        return
    wb = openpyxl.Workbook()
    wb.active["A1"], wb.active["A2"] = 3, "=A1*2"
    wb.save(tmp_path / "b.xlsx")
    assert read_workbooks([tmp_path / "b.xlsx"])[0].formulas == ["=A1*2"]
