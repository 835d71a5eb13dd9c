import math

import torch

from slm.infer import Engine, SamplingParams
from slm.infer.sampling import (BatchSettings, apply_min_p, apply_repetition_penalty, apply_top_k, apply_top_p,
                                probabilities, seen_mask)

INF = float("-inf")


def test_each_processor_on_a_known_row():
    probs = torch.tensor([[0.5, 0.25, 0.15, 0.1]])
    scores = probs.log()
    assert torch.isinf(apply_top_k(scores, torch.tensor([2]))).tolist() == [[False, False, True, True]]
    # top_p 0.7: 0.5 alone is short of 0.7, 0.5 + 0.25 reaches it; the rest go.
    assert torch.isinf(apply_top_p(scores, torch.tensor([0.7]))).tolist() == [[False, False, True, True]]
    assert torch.isinf(apply_top_p(scores, torch.tensor([0.5]))).tolist() == [[False, True, True, True]]
    # min_p 0.4: threshold 0.2 keeps 0.5 and 0.25.
    assert torch.isinf(apply_min_p(scores, torch.tensor([0.4]))).tolist() == [[False, False, True, True]]
    penalized = apply_repetition_penalty(torch.tensor([[2.0, -2.0, 1.0]]), torch.tensor([[True, True, False]]),
                                         torch.tensor([2.0]))
    assert penalized.tolist() == [[1.0, -4.0, 1.0]]


def test_probabilities_mix_settings_per_row():
    scores = torch.tensor([[2.0, 1.0, 0.0, -1.0]] * 3)
    params = [SamplingParams(temperature=0), SamplingParams(temperature=1.0),
              SamplingParams(temperature=2.0, top_k=2)]
    p = probabilities(scores, BatchSettings.build(params))
    assert p[0].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert torch.allclose(p[1], scores[1].softmax(-1))
    expected = torch.tensor([1.0, 0.5]).softmax(-1)
    assert torch.allclose(p[2, :2], expected) and p[2, 2:].sum() == 0
    assert math.isclose(p.sum(-1)[2].item(), 1.0, rel_tol=1e-6)


def test_seen_mask_marks_prompt_and_output_tokens():
    assert seen_mask([[1, 3], []], 4).tolist() == [[False, True, False, True], [False] * 4]


class LogProbModel(torch.nn.Module):
    """A model-like object that is not a Decoder and returns log-probabilities (as a composition would)."""

    def __init__(self, model):
        super().__init__()
        self.inner = model

    def new_cache(self, batch, max_len):
        return self.inner.new_cache(batch, max_len)

    def forward(self, input_ids, position_ids=None, attention_mask=None, cache=None, logits_to_keep=0):
        return self.inner(input_ids, position_ids, attention_mask, cache, logits_to_keep).log_softmax(-1)


def test_engine_drives_any_model_like_object(tiny_model):
    prompts = [[3, 4, 5], [7]]
    plain = Engine(tiny_model).generate(prompts, SamplingParams(max_tokens=10))
    wrapped = Engine(LogProbModel(tiny_model)).generate(prompts, SamplingParams(max_tokens=10))
    assert [c.token_ids for c in wrapped] == [c.token_ids for c in plain]
    sampled = SamplingParams(max_tokens=10, temperature=0.9, top_p=0.9, seed=4)
    assert Engine(LogProbModel(tiny_model)).generate([[3, 4]], sampled)[0].token_ids == \
        Engine(tiny_model).generate([[3, 4]], sampled)[0].token_ids
