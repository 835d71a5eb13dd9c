import random

import pytest


@pytest.fixture(scope="session")
def byte_tokenizer_dir(tmp_path_factory, corpus_texts):
    """A tiny byte-level BPE (GPT-2 convention: no bos added, eos = <|endoftext|>), saved to disk."""
    import slm
    from slm.tokenizer import save_tokenizer

    tok = slm.train_tokenizer(corpus_texts[:10], vocab_size=320, kind="byte-bpe")
    return save_tokenizer(tok, tmp_path_factory.mktemp("tok") / "byte")


@pytest.fixture(scope="session")
def llama_tokenizer_dir(tmp_path_factory, corpus_texts):
    """A tiny Llama-style BPE: its convention puts <s> in front, so prepared documents start with bos."""
    import slm
    from slm.tokenizer import save_tokenizer

    tok = slm.train_tokenizer(corpus_texts[:10], vocab_size=400, kind="llama-bpe")
    return save_tokenizer(tok, tmp_path_factory.mktemp("tok") / "llama")


def word_documents(n, words_per_doc=(5, 40), seed=0):
    """n distinct small documents of varying length."""

    from slm.data.sources import Document

    rng = random.Random(seed)
    vocab = ["def", "class", "return", "data", "loader", "token", "shard", "epoch", "alpha", "beta", "gamma", "x"]
    return [Document(f"doc {i}: " + " ".join(rng.choice(vocab) for _ in range(rng.randint(*words_per_doc))),
                     f"gen#{i}") for i in range(n)]


@pytest.fixture(scope="session")
def make_docs():
    return word_documents
