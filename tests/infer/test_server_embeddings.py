"""/v1/embeddings: mean-pooled final hidden states, L2-normalised, in OpenAI's shape (float and base64)."""
from __future__ import annotations

import openai
import pytest
import torch
from server_util import live_server

from slm.infer import Engine
from slm.infer.server import create_app

pytestmark = pytest.mark.slow


def test_embeddings_are_normalised_mean_pooled_hidden_states(tiny_model, tokenizer):
    app = create_app(Engine(tiny_model, tokenizer), model_name="tiny")
    texts = ["def main():", "import os\nimport sys"]
    with live_server(app) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        out = client.embeddings.create(model="tiny", input=texts)  # the client asks for base64 and decodes it
        floats = client.embeddings.create(model="tiny", input=texts, encoding_format="float")
        ids = client.embeddings.create(model="tiny", input=[tokenizer.encode(t) for t in texts],
                                       encoding_format="float")
        with pytest.raises(openai.BadRequestError):
            client.embeddings.create(model="tiny", input=[[10_000]])
    assert [d.index for d in out.data] == [0, 1] and out.model == "tiny"
    assert out.usage.prompt_tokens == sum(len(tokenizer.encode(t)) for t in texts)
    for text, a, b, c in zip(texts, out.data, floats.data, ids.data):
        with torch.no_grad():
            hidden = tiny_model.hidden_states(torch.tensor([tokenizer.encode(text)]))[0].mean(0)
        expected = torch.nn.functional.normalize(hidden, dim=0)
        assert len(a.embedding) == tiny_model.config.dim
        assert torch.tensor(b.embedding) == pytest.approx(expected, abs=1e-5)
        assert a.embedding == pytest.approx(b.embedding, abs=1e-6) and c.embedding == b.embedding
        assert torch.tensor(b.embedding).norm().item() == pytest.approx(1.0, abs=1e-5)
