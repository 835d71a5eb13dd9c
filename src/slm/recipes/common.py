"""Pieces several recipes share: the embedded corpus as a tokenizer and token shards, and mean ± sd cells."""
from __future__ import annotations

import math
import statistics
from pathlib import Path


def stdlib_shards(root: Path, corpus_files: int, vocab_size: int, kind: str) -> Path:
    """root/tokenizer (a `kind` BPE trained on `corpus_files` stdlib files) and root/data (their shards, 2% held
    out), made once: a rerun finds them."""
    from slm.data.shards import prepare
    from slm.data.sources import iter_stdlib_texts, stdlib_documents
    from slm.tokenizer import save_tokenizer, train_tokenizer

    data = root / "data"
    if not (data / "index.json").is_file():
        tok = train_tokenizer(iter_stdlib_texts(corpus_files), vocab_size=vocab_size, kind=kind)
        save_tokenizer(tok, root / "tokenizer")
        prepare(stdlib_documents(corpus_files), root / "tokenizer", data, val_fraction=0.02, workers=1, progress=False)
    return data


def mean_sd(values, scale: float = 1.0, digits: int = 1) -> str:
    """'mean ± sd' over the seeds (NaNs, a value a row does not have, left out; '-' when none is left)."""
    values = [scale * v for v in values if not math.isnan(v)]
    if not values:
        return "-"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.{digits}f} ± {spread:.{digits}f}"
