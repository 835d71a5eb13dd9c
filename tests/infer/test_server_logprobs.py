"""logprobs: completions (logprobs k, echo: the prompt's tokens scored as vLLM returns them) and chat
(logprobs, top_logprobs), checked against the model's own log-softmax."""
from __future__ import annotations

import pytest
import torch

from slm.infer import Engine

pytestmark = pytest.mark.slow


def reference(model, ids):
    """log-softmax of every position's next-token scores, [T, V]."""
    with torch.no_grad():
        return model(torch.tensor([ids]))[0].float().log_softmax(-1)


def test_echo_scores_the_prompt(client, tiny_model, tokenizer):
    ids = tokenizer.encode("def main():\n    return 0")
    out = client.completions.create(model="tiny", prompt=ids, max_tokens=1, temperature=0, logprobs=2, echo=True)
    lp = out.choices[0].logprobs
    assert len(lp.tokens) == len(ids) + 1 and lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    ref = reference(tiny_model, ids)
    for j in range(1, len(ids)):
        assert lp.token_logprobs[j] == pytest.approx(ref[j - 1, ids[j]].item(), abs=1e-4)
        top = lp.top_logprobs[j]
        assert max(top.values()) == pytest.approx(ref[j - 1].max().item(), abs=1e-4)
        assert len(top) <= 3  # the 2 best and the chosen one
    assert out.choices[0].text.startswith(tokenizer.decode(ids))
    # The generated token's log-probability is the last entry; max_tokens 0 scores the prompt alone.
    assert lp.token_logprobs[-1] == pytest.approx(ref[-1].max().item(), abs=1e-4)
    only = client.completions.create(model="tiny", prompt=ids, max_tokens=0, logprobs=0, echo=True)
    assert only.choices[0].logprobs.token_logprobs == lp.token_logprobs[:-1]
    assert only.choices[0].text == tokenizer.decode(ids) and only.usage.completion_tokens == 0


def test_batched_prompts_score_independently(client, tiny_model, tokenizer):
    prompts = [tokenizer.encode("import os"), tokenizer.encode("class A:\n    pass")]
    out = client.completions.create(model="tiny", prompt=prompts, max_tokens=1, temperature=0, logprobs=1, echo=True)
    assert [c.index for c in out.choices] == [0, 1]
    for ids, choice in zip(prompts, out.choices):
        ref = reference(tiny_model, ids)
        got = choice.logprobs.token_logprobs[1:len(ids)]
        assert got == pytest.approx([ref[j - 1, ids[j]].item() for j in range(1, len(ids))], abs=1e-4)


def test_generated_logprobs_completions_and_streaming(client, tiny_model, tokenizer):
    out = client.completions.create(model="tiny", prompt="def main", max_tokens=6, temperature=0, logprobs=3)
    lp = out.choices[0].logprobs
    ids = tokenizer.encode("def main")
    engine_ids = Engine(tiny_model, tokenizer).generate(["def main"])[0].token_ids[:6]
    ref = reference(tiny_model, ids + engine_ids)
    for i, token in enumerate(engine_ids):
        if token in Engine(tiny_model, tokenizer).eos_token_ids:
            break
        assert lp.token_logprobs[i] == pytest.approx(ref[len(ids) - 1 + i, token].item(), abs=1e-4)
    chunks = list(client.completions.create(model="tiny", prompt="def main", max_tokens=6, temperature=0, logprobs=3,
                                            stream=True))
    streamed = [v for c in chunks if c.choices[0].logprobs for v in c.choices[0].logprobs.token_logprobs]
    assert streamed == pytest.approx(lp.token_logprobs, abs=1e-6)


def test_chat_logprobs_and_top_logprobs(client):
    messages = [{"role": "user", "content": "def main"}]
    out = client.chat.completions.create(model="tiny", messages=messages, max_tokens=5, temperature=0,
                                         logprobs=True, top_logprobs=3)
    content = out.choices[0].logprobs.content
    text = out.choices[0].message.content
    if "\ufffd" not in text:  # a random model may split UTF-8 characters across tokens
        assert "".join(c.token for c in content) == text
    assert 1 <= len(content) <= 5
    for c in content:
        assert len(c.top_logprobs) == 3 and c.logprob == pytest.approx(c.top_logprobs[0].logprob, abs=1e-5)  # greedy
        assert bytes(c.bytes).decode() == c.token
    plain = client.chat.completions.create(model="tiny", messages=messages, max_tokens=5, temperature=0)
    assert plain.choices[0].logprobs is None
    chunks = list(client.chat.completions.create(model="tiny", messages=messages, max_tokens=5, temperature=0,
                                                 logprobs=True, stream=True))
    streamed = [e.logprob for c in chunks if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content]
    assert streamed == pytest.approx([c.logprob for c in content], abs=1e-6)
