"""FLAME's formula tokenizer: punctuation, whitespace, digits and built-in function names are single tokens,
BPE only on the rest (sheet, table, column and named-range names, the words inside strings); lowercased.

    tok = train_formula_tokenizer(formulas, vocab_size=16000)    # a transformers PreTrainedTokenizerFast
    tok.convert_ids_to_tokens(tok.encode('=SUMIF(B1:B5, "Not available", A1:A5)'))
    # ['=', 'sumif', '(', 'b', '1', ':', 'b', '5', ',', ' ', '"', 'not', ' ', 'available', '"', ',', ' ', 'a', '1',
    #  ':', 'a', '5', ')', '</s>']
    restore_case(tok.decode(ids, skip_special_tokens=True), source)    # back to Excel's case

Layout (T5's): <pad> 0, </s> 1 (appended to every encoded text), <unk> 2, <mask> 3 (one masked run of the
pre-training objectives, a completion's missing tail). The pre-tokenizer isolates every character that is not a
letter, so punctuation, each space and each digit are their own tokens; runs of letters go to the BPE. Function
names are added tokens matched as whole words (after lowercasing), so `sumif` is one token while `sum1` (a
cell) and `checksum` (a name) are not split around `sum`. Decoding concatenates the tokens.

Lowercasing loses case; restore_case gives it back: everything outside strings upper case (Excel's own display),
and a token the source formula also holds (case-insensitively: a string, 'Sales Data'!B2) as the source wrote it.
"""
from __future__ import annotations

import string
from typing import Iterable

from slm.errors import SlmError

SPECIALS = {"pad": "<pad>", "eos": "</s>", "unk": "<unk>", "mask": "<mask>"}
MASK = SPECIALS["mask"]
_LETTERS = r"A-Za-z\u00c0-\u024f"


def train_formula_tokenizer(formulas: Iterable[str], vocab_size: int = 16000, min_frequency: int = 2):
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, \
        trainers
    from transformers import PreTrainedTokenizerFast

    from slm.recipes.flame.functions import NAMES

    alphabet = sorted(set(string.printable) - set("\x0b\x0c"))
    floor = len(SPECIALS) + len(alphabet) + len(NAMES)
    if vocab_size <= floor:
        raise SlmError(f"flame tokenizer: vocab_size {vocab_size} is too small (needs more than {floor}: specials, "
                       "the printable characters and the function names)")
    tok = Tokenizer(models.BPE(unk_token=SPECIALS["unk"]))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(f"[{_LETTERS}]+|[^{_LETTERS}]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(NAMES), min_frequency=min_frequency,
                                  special_tokens=list(SPECIALS.values()), initial_alphabet=alphabet,
                                  show_progress=False)
    tok.train_from_iterator(formulas, trainer)
    tok.add_tokens([AddedToken(name.lower(), single_word=True, normalized=True) for name in NAMES])
    eos = SPECIALS["eos"]
    tok.post_processor = processors.TemplateProcessing(single=f"$A {eos}", pair=f"$A {eos} $B {eos}",
                                                       special_tokens=[(eos, tok.token_to_id(eos))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, clean_up_tokenization_spaces=False,
                                   **{f"{k}_token": v for k, v in SPECIALS.items()})


def check_tokenizer(tokenizer) -> None:
    """Refuse a tokenizer of another layout (a checkpoint trained elsewhere): ids 0-3 are the FLAME specials."""
    for i, token in enumerate(SPECIALS.values()):
        if tokenizer.convert_tokens_to_ids(token) != i:
            raise SlmError(f"this is not a FLAME formula tokenizer ({token} is not id {i}); use a checkpoint that "
                           "`slm recipe flame` trained")


def encode(tokenizer, text: str) -> list[int]:
    """Token ids of a text, </s> last (the post-processor adds it)."""
    return tokenizer.encode(text)


def decode(tokenizer, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)


def restore_case(output: str, source: str = "") -> str:
    """Excel's case for a lowercased formula: upper case outside strings; a token the source also holds
    (ignoring case) written as the source wrote it, any other string left as it is."""
    from slm.recipes.flame.lexer import lex

    # Any token the source also holds (a string, a quoted sheet name with its reference) comes back as written.
    known = {t.text.lower(): t.text for t in lex(source) if t.kind != "ws"}
    return "".join(known.get(t.text.lower(), t.text if t.kind == "string" else t.text.upper()) for t in lex(output))
