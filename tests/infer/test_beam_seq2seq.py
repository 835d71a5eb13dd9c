"""Generation with encoder-decoders (greedy, seeded sampling) and beam search (both families) equal
transformers' generate token for token, and beam scores equal its sequences_scores."""
import itertools

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, T5Config, T5ForConditionalGeneration

from slm.errors import SlmError
from slm.infer.beam import MAX_BEAMS, BeamParams
from slm.infer.engine import Engine
from slm.infer.sampling import SamplingParams
from slm.models.hf import load_model

VOCAB, EOS = 40, 1
T5_EOS_GAIN, LLAMA_EOS_GAIN = 2.0, 2.0
PROMPTS = [[5, 6, 7, 8, 9, 10, 11], [12, 13, 14]]  # ragged: the batch is padded


def _spread(model, std, eos_gain):
    # A random model with HF's init repeats one token; wider weights give varied outputs, and a larger EOS row
    # of the output projection makes some of them end.
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, std)
        model.get_output_embeddings().weight[EOS] *= eos_gain
    return model.eval()


@pytest.fixture(scope="module")
def t5(tmp_path_factory):
    config = T5Config(vocab_size=VOCAB, d_model=32, d_kv=12, d_ff=48, num_layers=2, num_heads=3,
                      feed_forward_proj="gated-gelu", decoder_start_token_id=0, eos_token_id=EOS, pad_token_id=0)
    hf = _spread(T5ForConditionalGeneration(config), 0.3, T5_EOS_GAIN)
    path = tmp_path_factory.mktemp("t5")
    hf.save_pretrained(path)
    return hf, Engine(load_model(path)), 1  # generated tokens start after the decoder start token


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, eos_token_id=EOS,
                         bos_token_id=None, pad_token_id=None)
    hf = _spread(LlamaForCausalLM(config), 0.3, LLAMA_EOS_GAIN)
    path = tmp_path_factory.mktemp("llama")
    hf.save_pretrained(path)
    return hf, Engine(load_model(path)), None  # generated tokens start after the prompt


def _hf_new_tokens(hf, prompt, start, **kwargs):
    out = hf.generate(torch.tensor([prompt]), max_new_tokens=10, pad_token_id=0, eos_token_id=EOS, **kwargs)
    seqs = out.sequences if hasattr(out, "sequences") else out
    return out, seqs[:, start if start is not None else len(prompt):]


def _trim(ids: list[int]) -> list[int]:
    return ids[:ids.index(EOS) + 1] if EOS in ids else ids


def test_seq2seq_greedy_equals_transformers_single_and_batched(t5):
    hf, engine, start = t5
    batched = engine.generate(PROMPTS, SamplingParams(max_tokens=10))
    for prompt, completion in zip(PROMPTS, batched):
        [alone] = engine.generate([prompt], SamplingParams(max_tokens=10))
        _, ref = _hf_new_tokens(hf, prompt, start, do_sample=False)
        assert completion.token_ids == alone.token_ids == _trim(ref[0].tolist())
    # transformers' own left-padded batch gives the same tokens (T5's positions are relative).
    width = max(map(len, PROMPTS))
    ids = torch.tensor([[0] * (width - len(p)) + p for p in PROMPTS])
    mask = (ids != 0).long()
    ref = hf.generate(ids, attention_mask=mask, max_new_tokens=10, do_sample=False, eos_token_id=EOS, pad_token_id=0)
    for completion, row in zip(batched, ref[:, 1:].tolist()):
        assert completion.token_ids == _trim(row)


def test_seq2seq_seeded_sampling_equals_transformers(t5):
    hf, engine, start = t5
    for seed in (0, 3):
        params = SamplingParams(max_tokens=10, temperature=0.9, top_k=20, seed=seed)
        batched = engine.generate(PROMPTS, params)  # each row draws from its own seeded generator
        for prompt, completion in zip(PROMPTS, batched):
            torch.manual_seed(seed)
            _, ref = _hf_new_tokens(hf, prompt, start, do_sample=True, temperature=0.9, top_k=20, top_p=1.0)
            assert completion.token_ids == _trim(ref[0].tolist())


@pytest.mark.parametrize("family", ["t5", "llama"])
def test_beam_search_equals_transformers(family, request):
    hf, engine, start = request.getfixturevalue(family)
    grid = [(4, 1.0, False, 2), (3, 0.0, True, 3), (4, -0.5, "never", 1), (2, 2.0, "never", 2), (3, 1.0, True, 1)]
    stopped = 0
    for beams, penalty, early, n in grid:
        params = BeamParams(num_beams=beams, max_tokens=10, length_penalty=penalty, early_stopping=early,
                            num_return_sequences=n)
        results = engine.beam_search(PROMPTS, params)  # both prompts in one padded batch
        for prompt, hyps in zip(PROMPTS, results):
            out, ref = _hf_new_tokens(hf, prompt, start, num_beams=beams, length_penalty=penalty,
                                      early_stopping=early, num_return_sequences=n, do_sample=False,
                                      output_scores=True, return_dict_in_generate=True)
            assert len(hyps) == n
            for j, hyp in enumerate(hyps):
                row = ref[j].tolist()
                # transformers fills shorter rows with pad_token_id or, when that is 0, with EOS
                assert row[:len(hyp.token_ids)] == hyp.token_ids and set(row[len(hyp.token_ids):]) <= {0, EOS}
                assert abs(hyp.score - out.sequences_scores[j].item()) < 1e-4
                stopped += hyp.finish_reason == "stop"
            assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
    assert stopped > 0  # the grid reaches EOS, so finished-hypothesis bookkeeping is exercised


def test_one_beam_is_greedy(llama):
    _, engine, _ = llama
    [[hyp]] = engine.beam_search([PROMPTS[0]], BeamParams(num_beams=1, max_tokens=10))
    [greedy] = engine.generate([PROMPTS[0]], SamplingParams(max_tokens=10))
    assert hyp.token_ids == greedy.token_ids


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_beams=0), "num_beams must be an integer from 1"),
    (dict(num_beams=MAX_BEAMS + 1), f"from 1 to {MAX_BEAMS}"),
    (dict(num_beams=2, num_return_sequences=3), "num_return_sequences must be from 1 to num_beams"),
    (dict(early_stopping="sometimes"), "early_stopping"),
])
def test_bad_beam_params_are_one_line_errors(kwargs, message):
    with pytest.raises(SlmError, match=message):
        BeamParams(**kwargs)


def test_server_completions_take_a_seq2seq_checkpoint(t5):
    # OpenAI completions: the prompt is the encoder's input; the served tokens are the engine's greedy ones.
    from fastapi.testclient import TestClient

    from slm.infer.server import create_app

    _, engine, _ = t5
    expected = [c.token_ids for c in engine.generate(PROMPTS, SamplingParams(max_tokens=6))]
    with TestClient(create_app(engine)) as client:
        for prompt, tokens in zip(PROMPTS, expected):
            r = client.post("/v1/completions", json={"prompt": prompt, "max_tokens": 6})
            assert r.status_code == 200, r.text
            assert r.json()["usage"]["completion_tokens"] == len(tokens)
