"""The C++ decoding step (slm.infer.native): the eager model's logits, cache and tokens, and clear refusals."""
import copy

import pytest
import torch

from slm.errors import ConfigError, SlmError
from slm.infer import Engine, SamplingParams
from slm.infer.compiled import CompiledStep
from slm.infer import native
from slm.infer.native import NativeStep, unsupported
from slm.infer.quant import QuantLinear, prepare_for_decoding
from slm.models import Decoder


def spread(model: Decoder) -> Decoder:
    """Larger weights spread the logits, so greedy parity does not hinge on float-rounding ties."""
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(4.0)
    return model


@pytest.mark.parametrize("overrides", [dict(), dict(n_heads=4, n_kv_heads=4), dict(dim=48, rotary_fraction=0.5),
                                       dict(tie_embeddings=True)],
                         ids=["gqa", "mha", "head-dim-12-partial-rotary", "tied"])
def test_native_step_computes_the_eager_logits_and_cache(make_config, overrides):
    model = prepare_for_decoding(Decoder(make_config(300, **overrides)).init_weights(seed=3).eval(), compile=True)
    step = NativeStep(model)
    ids = torch.randint(0, 300, (1, 70), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = model(ids)[0]  # one forward over the whole sequence, no cache
        native_cache, eager_cache = model.new_cache(1, 96), model.new_cache(1, 96)
        model(ids[:, :-1], cache=eager_cache)
        for position in range(ids.shape[1]):
            logits = step(ids[0, position:position + 1], native_cache)
            assert torch.allclose(logits[0], expected[position], atol=1e-4), position
            assert step.argmax.item() == logits[0].argmax().item()
    assert native_cache.length == 70
    assert torch.allclose(native_cache.k[:, :, :, :69], eager_cache.k[:, :, :, :69], atol=1e-5)
    assert torch.allclose(native_cache.v[:, :, :, :69], eager_cache.v[:, :, :, :69], atol=1e-5)


@pytest.mark.parametrize("threads,chunk_bytes,ahead_bytes", [(2, None, 0), (3, None, 0), (2, 128, 0), (3, 300, 0),
                                                          (2, None, 3072)],
                         ids=["2-threads", "3-threads", "2-threads-one-row-chunks", "3-threads-small-chunks",
                              "2-threads-look-ahead"])
def test_native_step_splits_the_work_over_threads_without_changing_it(make_config, threads, chunk_bytes,
                                                                      ahead_bytes):
    """Rows, KV heads and prefetches are shared out per thread. 2 threads take a KV head each for the q/k/v rows
    and attention; 3 threads, more than the model's 2 KV heads, share the q/k/v rows, then the heads (uneven).
    Small chunks make every product many chunks, so threads take over the rest of each other's shares. Asking
    for weights ahead of the loads (past a matrix's end, too) changes nothing either."""
    model = prepare_for_decoding(Decoder(make_config(300, ffn_dim=70)).init_weights(seed=8).eval(), compile=True)
    ids = torch.randint(0, 300, (1, 40), generator=torch.Generator().manual_seed(1))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        step = NativeStep(model, chunk_bytes=chunk_bytes or native.CHUNK_BYTES, ahead_bytes=ahead_bytes)
        cache = model.new_cache(1, 96)
        with torch.inference_mode():
            expected = model(ids)[0]
            for position in range(ids.shape[1]):
                assert torch.allclose(step(ids[0, position:position + 1], cache)[0], expected[position], atol=1e-4)
    finally:
        torch.set_num_threads(before)


def test_weights_larger_than_the_cache_are_asked_for_ahead(make_config, monkeypatch):
    model = prepare_for_decoding(Decoder(make_config(300)).init_weights(seed=8).eval(), compile=True)
    assert 0 < native.last_level_cache_bytes()
    assert NativeStep(model).ahead_bytes == 0  # a tiny model stays in the cache
    monkeypatch.setattr(native, "last_level_cache_bytes", lambda: 1024)
    assert NativeStep(model).ahead_bytes == native.AHEAD_BYTES


def test_compiled_engine_takes_the_native_step_and_decodes_the_eager_tokens(make_config):
    model = spread(Decoder(make_config(300)).init_weights(seed=5).eval())
    eager = Engine(prepare_for_decoding(copy.deepcopy(model)))
    compiled = Engine(prepare_for_decoding(copy.deepcopy(model), compile=True), compile=True)
    assert isinstance(compiled.compiled_step, NativeStep)
    greedy = SamplingParams(max_tokens=80, ignore_eos=True)
    for prompt in ([5, 6, 7], [9, 10, 11, 12, 13, 14, 15]):
        assert compiled.generate([prompt], greedy)[0].token_ids == eager.generate([prompt], greedy)[0].token_ids
    sampled = SamplingParams(max_tokens=20, temperature=0.8, top_k=50, seed=3, ignore_eos=True)
    assert compiled.generate([[5, 6, 7]], sampled)[0].token_ids == eager.generate([[5, 6, 7]], sampled)[0].token_ids
    prompts = [[5, 6, 7], [9, 10, 11, 12, 13]]  # several rows decode eagerly
    assert [c.token_ids for c in compiled.generate(prompts, greedy)] == \
        [c.token_ids for c in eager.generate(prompts, greedy)]


@pytest.mark.parametrize("tied", [False, True])
def test_native_step_multiplies_int8_weights_in_fp32(make_config, dequantize, tied):
    """int8 linears (the LM head included) give the logits of a float model holding the dequantized weights,
    as the compiled int8 graph does; the eager int8 kernel rounds activations to bf16, so it is not the reference."""
    int8 = prepare_for_decoding(Decoder(make_config(300, tie_embeddings=tied)).init_weights(seed=6).eval(),
                                int8=True, compile=True)
    assert isinstance(int8.lm_head, QuantLinear) and unsupported(int8) is None
    reference = dequantize(int8)
    step = NativeStep(int8)
    ids = torch.randint(0, 300, (1, 50), generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        expected = reference(ids)[0]
        cache = int8.new_cache(1, 96)
        for position in range(ids.shape[1]):
            logits = step(ids[0, position:position + 1], cache)
            assert torch.allclose(logits[0], expected[position], atol=1e-4), position
    int8.layers[1].mlp.gate_up_proj.weight_int8.neg_()  # the step holds the model's int8 rows, not a copy
    with torch.inference_mode():
        after = step(torch.tensor([7]), int8.new_cache(1, 96))
        assert torch.allclose(after, dequantize(int8)(torch.tensor([[7]]))[:, -1], atol=1e-4)


def test_compiled_engine_decodes_int8_models_with_the_native_step(make_config, dequantize):
    model = spread(Decoder(make_config(300)).init_weights(seed=5).eval())
    int8 = prepare_for_decoding(model, int8=True, compile=True)
    engine, reference = Engine(int8, compile=True), Engine(prepare_for_decoding(dequantize(int8)))
    assert isinstance(engine.compiled_step, NativeStep)
    greedy = SamplingParams(max_tokens=60, ignore_eos=True)
    assert engine.generate([[5, 6, 7]], greedy)[0].token_ids == reference.generate([[5, 6, 7]], greedy)[0].token_ids


def test_native_step_reads_the_current_weights(make_config):
    model = prepare_for_decoding(Decoder(make_config(300)).init_weights(seed=4).eval(), compile=True)
    step = NativeStep(model)
    with torch.inference_mode():
        before = step(torch.tensor([7]), model.new_cache(1, 96)).clone()
        model.layers[0].mlp.down_proj.weight.mul_(3.0)
        after = step(torch.tensor([7]), model.new_cache(1, 96))
        expected = model(torch.tensor([[7]]))[:, -1]
    assert not torch.allclose(after, before, atol=1e-3)
    assert torch.allclose(after, expected, atol=1e-5)


@pytest.mark.parametrize("overrides,prepare,reason", [
    (dict(arch="phi", n_kv_heads=4, rotary_fraction=0.5), dict(compile=True), "Llama-family"),
    (dict(), None, "fused decoding layout"),  # plain weights, never fused
], ids=["phi", "unfused"])
def test_models_the_native_step_does_not_cover_decode_through_inductor(make_config, overrides, prepare, reason):
    model = Decoder(make_config(300, **overrides)).init_weights(seed=0).eval()
    prepared = model if prepare is None else prepare_for_decoding(model, **prepare)
    assert reason in unsupported(prepared)
    assert isinstance(Engine(prepared, compile=True).compiled_step, CompiledStep)
    with pytest.raises(SlmError, match=reason):
        Engine(prepared, compile="native")


def test_bf16_and_bad_compile_values_are_refused(make_config):
    model = prepare_for_decoding(Decoder(make_config(300)).to(torch.bfloat16).eval(), compile=True)
    assert "fp32" in unsupported(model)
    with pytest.raises(ConfigError, match="compile must be"):
        Engine(model, compile="fast")


def test_inductor_can_be_chosen_for_a_model_the_native_step_covers(make_config):
    model = prepare_for_decoding(Decoder(make_config(300)).init_weights(seed=0).eval(), compile=True)
    assert unsupported(model) is None
    assert isinstance(Engine(model, compile="inductor").compiled_step, CompiledStep)


def test_a_failing_build_falls_back_to_inductor_with_a_warning(make_config, monkeypatch):
    def broken():
        raise SlmError("building slm's C++ decoding step failed (RuntimeError: Ninja is required)")

    monkeypatch.setattr(native, "_build", broken)
    model = prepare_for_decoding(Decoder(make_config(300)).init_weights(seed=0).eval(), compile=True)
    with pytest.warns(UserWarning, match="Ninja is required.*inductor graph"):
        engine = Engine(model, compile=True)
    assert isinstance(engine.compiled_step, CompiledStep)
    with pytest.raises(SlmError, match="Ninja"):
        Engine(model, compile="native")


def test_the_step_rejects_a_cache_of_another_shape(make_config):
    model = prepare_for_decoding(Decoder(make_config(300)).init_weights(seed=0).eval(), compile=True)
    step = NativeStep(model)
    other = Decoder(make_config(300, n_layers=1)).new_cache(1, 96)
    with pytest.raises(RuntimeError, match="cache does not match"):
        step(torch.tensor([7]), other)
    with pytest.raises(RuntimeError, match="outside the vocabulary"):
        step(torch.tensor([300]), model.new_cache(1, 96))
