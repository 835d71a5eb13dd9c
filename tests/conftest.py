import os

import pytest
import torch

# Two cores are shared by the suite; extra intra-op threads only add contention for tiny models.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def corpus_texts():
    """A few hundred KB of the embedded corpus: enough to train small tokenizers quickly."""
    from slm.data.sources import iter_stdlib_texts

    return list(iter_stdlib_texts(40))
