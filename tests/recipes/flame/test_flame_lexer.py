"""The formula lexer is lossless and knows Excel's token kinds; the parser refuses what Excel refuses."""
import pytest

from slm.recipes.flame.generator import generate_workbooks, shift
from slm.recipes.flame.lexer import check, is_valid, join, lex, normalise, sketch


def kinds(formula):
    return [(t.kind, t.text) for t in lex(formula) if t.kind != "ws"]


def test_token_kinds_of_excel_syntax():
    assert kinds("='Sales Data'!$B$2:B9") == [("op", "="), ("cell", "'Sales Data'!$B$2"), ("colon", ":"),
                                              ("cell", "B9")]
    assert kinds("=SUM(Sheet2!A:A,1:3,$C:$D)") == [("op", "="), ("func", "SUM"), ("paren", "("),
                                                  ("range", "Sheet2!A:A"), ("sep", ","), ("range", "1:3"),
                                                  ("sep", ","), ("range", "$C:$D"), ("paren", ")")]
    assert kinds('=IF(A1<>"say ""hi""",TRUE,#N/A)')[4:] == [("op", "<>"), ("string", '"say ""hi"""'),
                                                            ("sep", ","), ("bool", "TRUE"), ("sep", ","),
                                                            ("error", "#N/A"), ("paren", ")")]
    assert kinds("=Table1[[#This Row],[Amount]]*TaxRate+15%") == [
        ("op", "="), ("structured", "Table1[[#This Row],[Amount]]"), ("op", "*"), ("name", "TaxRate"),
        ("op", "+"), ("number", "15"), ("op", "%")]
    assert kinds("=SUM({1,2;3,4})>=--A2") == [("op", "="), ("func", "SUM"), ("paren", "("), ("brace", "{"),
                                             ("number", "1"), ("sep", ","), ("number", "2"), ("sep", ";"),
                                             ("number", "3"), ("sep", ","), ("number", "4"), ("brace", "}"),
                                             ("paren", ")"), ("op", ">="), ("op", "-"), ("op", "-"),
                                             ("cell", "A2")]
    assert kinds("=LOG10(ABCD1)&[@Qty]")[1:] == [("func", "LOG10"), ("paren", "("), ("name", "ABCD1"),
                                                 ("paren", ")"), ("op", "&"), ("structured", "[@Qty]")]
    assert kinds("=1.5E+3") == [("op", "="), ("number", "1.5E+3")]


@pytest.mark.parametrize("text", ['=SUM(A1:A5', '="unclosed', "=A1 ! B2", "", "=$", "=[Col", "'odd'!"])
def test_lexer_is_total_and_lossless_on_broken_text(text):
    assert join(lex(text)) == text


def test_lexer_round_trips_every_generated_formula_and_each_parses():
    formulas = [f for b in generate_workbooks(120, seed=3) for f in b.formulas]
    assert len(formulas) > 1000
    assert all(join(lex(f)) == f for f in formulas)
    assert [f for f in formulas if not is_valid(f)] == []


@pytest.mark.parametrize("bad, why", [
    ("=SUM(A1:A5", "end"), ("=SUM(A1:A5))", "unexpected"), ("=SUMM(A1)", "unknown function"),
    ("=ROUND(A1)", "arguments"), ("=IF(A1=>2,1,0)", "unexpected"), ("=COUNTIF(A:A,>5)", "unexpected"),
    ("=SUM(A1;A2)", "expected ','"), ("=SUM(A1:5)", "range"), ('=IF(A1="x,1,0)', "string"), ("SUM(A1)", "="),
    ("=A1!=2", "unexpected"), ("=A1 > = 2", "unexpected")])
def test_parser_refuses_broken_formulas(bad, why):
    assert why in check(bad)


def test_parser_accepts_locale_separator_when_asked():
    assert is_valid("=SUM(A1;A2)", separator=";") and not is_valid("=SUM(A1,A2)", separator=";")


def test_sketch_normalise_and_shift():
    assert sketch("=SUM(A1:A10)") == sketch("= sum(b2 : b9)") == "=SUM(cell:cell)"
    assert sketch('=IF(A1>5,"yes",2.5)') == "=IF(cell>num,str,num)"
    assert normalise(' = sum(a1, "Mixed Case")') == '=SUM(A1,"Mixed Case")'
    assert shift("=$A$1*B2+Sheet2!C3+D:D", rows=2) == "=$A$1*B4+Sheet2!C5+D:D"
    assert shift("=$A1*B$2+Z3", columns=1) == "=$A1*C$2+AA3"
