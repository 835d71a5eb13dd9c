"""FLAME's tokenizer: the paper's golden tokenization, whole function names, digits and spaces alone, case back."""
import pytest

from slm.errors import SlmError
from slm.recipes.flame.generator import generate_workbooks
from slm.recipes.flame.tokenizer import check_tokenizer, decode, restore_case, train_formula_tokenizer


@pytest.fixture(scope="module")
def tok():
    return train_formula_tokenizer([f for b in generate_workbooks(150, seed=0) for f in b.formulas], 1500)


def test_golden_tokenization_in_the_papers_format(tok):
    ids = tok.encode('=SUMIF(B1:B5, "Not available", A1:A5)')
    # The paper: = sumif ( b 1 : b 5 , ␣ " not ␣ available ", ␣ a 1 : a 5 )   (plus T5's </s>)
    assert tok.convert_ids_to_tokens(ids) == ["=", "sumif", "(", "b", "1", ":", "b", "5", ",", " ", '"', "not", " ",
                                              "available", '"', ",", " ", "a", "1", ":", "a", "5", ")", "</s>"]


def test_function_names_whole_digits_alone_and_lossless_lowercase(tok):
    from slm.recipes.flame.functions import NAMES

    for name in NAMES:
        assert tok.convert_ids_to_tokens(tok.encode(f"={name}(A1)")[:3]) == ["=", name.lower(), "("]
    pieces = tok.convert_ids_to_tokens(tok.encode("=STDEV.S(X1)+1203")[:-1])
    assert pieces[:3] == ["=", "stdev.s", "("] and pieces[-5:] == ["+", "1", "2", "0", "3"]
    text = "=VLOOKUP($B2,'Lookup Table'!A:C,3,FALSE)"
    assert decode(tok, tok.encode(text)) == text.lower()
    assert restore_case(decode(tok, tok.encode(text)), text) == text
    assert restore_case('=if(a1="yes",1)', '=IF(A1="Yes")') == '=IF(A1="Yes",1)'
    assert restore_case('=if(a1="new",1)') == '=IF(A1="new",1)'  # a string the source lacks stays as written


def test_layout_and_refusals(tok):
    check_tokenizer(tok)
    assert [tok.pad_token_id, tok.eos_token_id, tok.unk_token_id, tok.mask_token_id] == [0, 1, 2, 3]
    assert tok.convert_ids_to_tokens(tok.encode("=A1+<mask>"))[-2:] == ["<mask>", "</s>"]
    with pytest.raises(SlmError, match="too small"):
        train_formula_tokenizer(["=A1"], vocab_size=100)
