import pytest
import torch

import slm
from slm.errors import SlmError
from slm.infer import Engine, SamplingParams


def hf_greedy(path, prompts, max_new_tokens):
    """transformers' own greedy generate, left-padded as HF recommends for decoder-only batches."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path).eval()
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=0, eos_token_id=None)
    return out[:, width:].tolist()


def test_greedy_matches_transformers_single(hf_llama_dir):
    model, _ = slm.load(hf_llama_dir)
    prompt = [5, 17, 42, 8, 91, 3]
    [completion] = Engine(model).generate([prompt], SamplingParams(max_tokens=24))
    assert completion.token_ids == hf_greedy(hf_llama_dir, [prompt], 24)[0]
    assert completion.finish_reason == "length"


def test_greedy_matches_transformers_batched_ragged(hf_llama_dir):
    model, _ = slm.load(hf_llama_dir)
    prompts = [[5, 17, 42, 8, 91, 3], [7], [60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70], [33, 2, 9]]
    completions = Engine(model).generate(prompts, SamplingParams(max_tokens=20))
    expected = hf_greedy(hf_llama_dir, prompts, 20)
    assert [c.token_ids for c in completions] == expected
    # And each row equals that prompt generated alone: padding changes nothing.
    alone = [Engine(model).generate([p], SamplingParams(max_tokens=20))[0].token_ids for p in prompts]
    assert alone == expected


def test_batches_larger_than_max_batch_size_keep_order(tiny_model):
    prompts = [[i + 1, i + 2] for i in range(5)]
    small = Engine(tiny_model, max_batch_size=2).generate(prompts, SamplingParams(max_tokens=6))
    big = Engine(tiny_model, max_batch_size=8).generate(prompts, SamplingParams(max_tokens=6))
    assert [c.token_ids for c in small] == [c.token_ids for c in big]


def test_eos_stops_and_different_max_tokens_per_row(tiny_model):
    engine = Engine(tiny_model)
    [free] = engine.generate([[3, 4, 5]], SamplingParams(max_tokens=8))
    eos = free.token_ids[3]
    engine = Engine(tiny_model, eos_token_ids=[eos])
    first = free.token_ids.index(eos)
    c1, c2 = engine.generate([[3, 4, 5], [3, 4, 5]], [SamplingParams(max_tokens=8), SamplingParams(max_tokens=2)])
    assert c1.token_ids == free.token_ids[:first + 1] and c1.finish_reason == "stop"
    assert c2.token_ids == free.token_ids[:2] and (c2.finish_reason == "length" or first < 2)
    [ignored] = engine.generate([[3, 4, 5]], SamplingParams(max_tokens=8, ignore_eos=True))
    assert ignored.token_ids == free.token_ids


def test_seeded_sampling_is_reproducible_and_independent_of_batch(tiny_model):
    engine = Engine(tiny_model)
    params = SamplingParams(max_tokens=12, temperature=1.0, seed=123)
    [a] = engine.generate([[1, 2, 3]], params)
    [b] = engine.generate([[1, 2, 3]], params)
    # Same seed in a batch next to another request: same tokens (each row has its own generator).
    c, _ = engine.generate([[1, 2, 3], [9, 8]], [params, SamplingParams(max_tokens=5, temperature=1.0, seed=7)])
    [d] = engine.generate([[1, 2, 3]], SamplingParams(max_tokens=12, temperature=1.0, seed=124))
    assert a.token_ids == b.token_ids == c.token_ids
    assert d.token_ids != a.token_ids


def test_sequences_that_join_a_running_batch_decode_as_they_would_alone(tiny_model):
    """Continuous batching: rows admitted between steps (greedy, seeded sampling, repetition penalty, one that
    ends on its first token) produce exactly their tokens when run alone, and the batch's rows are unchanged."""
    engine = Engine(tiny_model, max_batch_size=4)
    greedy = SamplingParams(max_tokens=10, ignore_eos=True)
    joiners = [([7, 8, 9], SamplingParams(max_tokens=8, temperature=1.0, seed=5, ignore_eos=True)),
               ([4, 5, 6, 7, 8], SamplingParams(max_tokens=6, repetition_penalty=1.5, ignore_eos=True)),
               ([2, 3], SamplingParams(max_tokens=1, ignore_eos=True)),
               ([1] * 40, greedy)]  # longer than the batch so far: must wait (max_prompt_len)
    first = [([1, 2, 3, 4], greedy), ([5, 6], greedy)]
    alone = [engine.generate([prompt], params)[0].token_ids for prompt, params in first + joiners]
    seqs = [engine.new_sequence(prompt, params, i) for i, (prompt, params) in enumerate(first + joiners)]
    offers, calls = {2: seqs[2:4], 4: seqs[4:6]}, []

    def admit(free, max_prompt_len, max_new_tokens):
        calls.append((free, max_prompt_len, max_new_tokens))
        offered = offers.pop(len(calls), [])
        return [s for s in offered if len(s.prompt_ids) <= max_prompt_len and s.params.max_tokens <= max_new_tokens]

    for _ in engine.steps(seqs[:2], admit=admit):
        pass
    assert [s.output_ids for s in seqs[:5]] == alone[:5]
    assert seqs[4].finish_reason == "length" and len(seqs[4].output_ids) == 1
    assert seqs[5].output_ids == []  # never fitted: 40 prompt tokens against a batch of at most 4 + 10
    # Asked only with free rows: (free rows, the cache's length so far = the longest prompt that fits, room).
    assert calls[0] == (2, 4, 96 - 4) and calls[1] == (2, 5, 96 - 5) and all(c[0] > 0 for c in calls)


def test_top_k_one_is_greedy(tiny_model):
    engine = Engine(tiny_model)
    [greedy] = engine.generate([[4, 5, 6]], SamplingParams(max_tokens=10))
    [top1] = engine.generate([[4, 5, 6]], SamplingParams(max_tokens=10, temperature=1.5, top_k=1, seed=0))
    assert top1.token_ids == greedy.token_ids


def test_repetition_penalty_discourages_repeats(tiny_model):
    engine = Engine(tiny_model)
    [plain] = engine.generate([[4, 5, 6]], SamplingParams(max_tokens=30))
    [penalized] = engine.generate([[4, 5, 6]], SamplingParams(max_tokens=30, repetition_penalty=100.0))
    assert len(set(penalized.token_ids)) > len(set(plain.token_ids))


def test_stop_strings_cut_text_and_stream_holds_them_back(tiny_model, tokenizer):
    engine = Engine(tiny_model, tokenizer)
    [free] = engine.generate(["def main"], SamplingParams(max_tokens=20, ignore_eos=True))
    assert len(free.text) > 6
    stop = free.text[3:6]
    [cut] = engine.generate(["def main"], SamplingParams(max_tokens=20, ignore_eos=True, stop=[stop]))
    assert cut.finish_reason == "stop"
    assert cut.text == free.text[:free.text.find(stop)]
    streamed = list(engine.stream("def main", SamplingParams(max_tokens=20, ignore_eos=True, stop=[stop])))
    assert "".join(e.text for e in streamed) == cut.text
    assert streamed[-1].finish_reason == "stop" and all(e.finish_reason is None for e in streamed[:-1])


def test_stream_concatenates_to_generate(tiny_model, tokenizer):
    engine = Engine(tiny_model, tokenizer)
    prompts = ["import os", "class A:\n    def"]
    params = SamplingParams(max_tokens=15, temperature=0.9, top_p=0.9, min_p=0.02, seed=5)
    completions = engine.generate(prompts, params)
    texts, tokens = ["", ""], [[], []]
    for event in engine.stream(prompts, params):
        texts[event.index] += event.text
        tokens[event.index].append(event.token_id)
    assert tokens == [c.token_ids for c in completions]
    assert texts == [c.text for c in completions]


def test_context_limit_ends_with_length(tiny_model):
    engine = Engine(tiny_model)
    prompt = list(range(1, 90))  # max_seq_len is 96
    [c] = engine.generate([prompt], SamplingParams(max_tokens=50))
    # The cache holds 96 positions; the last sampled token is returned but never fed back.
    assert c.finish_reason == "length" and len(prompt) + len(c.token_ids) == 97
    with pytest.raises(SlmError, match="no room"):
        engine.generate([list(range(1, 97))], SamplingParams(max_tokens=5))


def test_bad_inputs_raise_slm_errors(tiny_model):
    engine = Engine(tiny_model)
    with pytest.raises(SlmError):
        SamplingParams(top_p=0)
    with pytest.raises(SlmError):
        SamplingParams(max_tokens=0)
    with pytest.raises(SlmError, match="tokenizer"):
        engine.generate(["text"], SamplingParams())
    with pytest.raises(SlmError, match="token ids"):
        engine.generate([[10_000]], SamplingParams())
    with pytest.raises(SlmError, match="empty"):
        engine.generate([[]], SamplingParams())


def test_a_stop_string_that_is_a_special_token_stops_as_that_token(tokenizer):
    """Text is decoded without special tokens, so ChatML's <|im_end|> as a stop string must become a stop id."""
    from slm.infer.engine import Sequence

    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    chat = Sequence([1], SamplingParams(max_tokens=4, stop=["<|im_end|>", "\n\n"]), tokenizer)
    plain = Sequence([1], SamplingParams(max_tokens=4, stop=["\n\n"]), tokenizer)
    assert end in chat.stop_ids and end not in plain.stop_ids
