import pytest


@pytest.fixture(scope="session")
def tokenizer():
    """A small byte-level BPE with slm's ChatML template, trained on a few stdlib files."""
    import slm
    from slm.data.sources import iter_stdlib_texts

    return slm.train_tokenizer(iter_stdlib_texts(12), vocab_size=512, kind="byte-bpe")


@pytest.fixture
def tiny_config(tokenizer):
    from slm.models import ModelConfig

    return ModelConfig(arch="llama", vocab_size=len(tokenizer), dim=64, n_layers=2, n_heads=4, n_kv_heads=2,
                       ffn_dim=128, max_seq_len=256)


@pytest.fixture
def write_jsonl():
    """write_jsonl(path, records): records are dicts (dumped as JSON) or raw strings (written as they are)."""
    import json

    def write(path, records):
        path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
        return path

    return write
