"""Compiled batch-1 decoding (slm.infer.compiled): same logits and tokens as eager decoding, a few graphs."""
import copy

import pytest
import torch
from torch import nn

from slm.errors import ConfigError, SlmError
from slm.infer import Engine, SamplingParams
from slm.infer.compiled import CompiledStep, RowDotLinear, bucket, windows
from slm.infer.quant import prepare_for_decoding
from slm.models import Decoder


def test_row_dot_linear_is_the_linear_outside_a_compiled_graph():
    torch.manual_seed(0)
    linear = nn.Linear(24, 40, bias=True)
    row = RowDotLinear.from_linear(linear)
    assert row.weight.data_ptr() == linear.weight.data_ptr()  # shares the weight (a tied LM head stays tied)
    x = torch.randn(3, 5, 24)
    assert torch.allclose(row(x), linear(x), atol=1e-6)  # 15 rows: W times the rows
    assert torch.allclose(row(x[:1, :1]), linear(x[:1, :1]), atol=1e-6)  # one row: F.linear


def test_row_dot_linear_compiled_matches_for_one_row():
    torch.manual_seed(0)
    linear = nn.Linear(48, 40, bias=True)
    row = RowDotLinear.from_linear(linear)
    compiled = torch.compile(row, fullgraph=True, dynamic=False)
    x = torch.randn(1, 1, 48)
    with torch.no_grad():
        assert torch.allclose(compiled(x), linear(x), atol=1e-5)


def test_cache_windows_are_powers_of_two_up_to_the_context():
    assert [bucket(n, 1024) for n in (1, 64, 65, 200, 513, 1024)] == [64, 64, 128, 256, 1024, 1024]
    assert bucket(700, 600) == 600  # never beyond the model's context
    assert bucket(300, None) == 512
    assert windows(96) == [64, 96]
    assert windows(512) == [64, 128, 256, 512]


@pytest.mark.parametrize("overrides", [dict(), dict(arch="phi", n_kv_heads=4, rotary_fraction=0.5)],
                         ids=["llama-gqa", "phi"])
def test_compiled_engine_decodes_the_eager_tokens(make_config, overrides):
    model = Decoder(make_config(300, **overrides)).init_weights(seed=5).eval()
    with torch.no_grad():  # spread the logits: greedy parity should not hinge on float-rounding ties
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(4.0)
    eager = Engine(prepare_for_decoding(copy.deepcopy(model)))
    compiled = Engine(prepare_for_decoding(copy.deepcopy(model), compile=True), compile="inductor")
    greedy = SamplingParams(max_tokens=20, ignore_eos=True)
    for prompt in ([5, 6, 7], [9, 10, 11, 12, 13, 14, 15]):
        assert compiled.generate([prompt], greedy)[0].token_ids == eager.generate([prompt], greedy)[0].token_ids
    long = SamplingParams(max_tokens=80, ignore_eos=True)  # crosses from the 64-position window to the last (96)
    assert compiled.generate([[5, 6, 7]], long)[0].token_ids == eager.generate([[5, 6, 7]], long)[0].token_ids
    sampled = SamplingParams(max_tokens=20, temperature=0.8, top_k=50, seed=3, ignore_eos=True)
    assert compiled.generate([[5, 6, 7]], sampled)[0].token_ids == eager.generate([[5, 6, 7]], sampled)[0].token_ids
    # Batches of several rows decode eagerly with the same weights and give the eager tokens too.
    prompts = [[5, 6, 7], [9, 10, 11, 12, 13]]
    assert [c.token_ids for c in compiled.generate(prompts, greedy)] == \
        [c.token_ids for c in eager.generate(prompts, greedy)]


def test_compiled_step_writes_the_cache_like_an_eager_step(make_config):
    model = prepare_for_decoding(Decoder(make_config(300)).init_weights(seed=2).eval(), compile=True)
    ids = torch.tensor([[3, 4, 5, 6]])
    with torch.inference_mode():
        eager_cache, static_cache = model.new_cache(1, 96), model.new_cache(1, 96)  # read as a 64-position window
        model(ids, cache=eager_cache)
        model(ids, cache=static_cache)
        expected = model(torch.tensor([[7]]), cache=eager_cache)[:, -1]
        step = CompiledStep(model)
        got = step(torch.tensor([7]), static_cache)
    assert static_cache.length == eager_cache.length == 5
    assert torch.allclose(got, expected, atol=1e-5)
    assert torch.equal(step.argmax, got.argmax(-1))  # the greedy token, computed in the graph
    assert torch.allclose(static_cache.k[:, :, :, :5], eager_cache.k[:, :, :, :5], atol=1e-6)
    assert torch.allclose(static_cache.v[:, :, :, :5], eager_cache.v[:, :, :, :5], atol=1e-6)


def test_compiled_int8_steps_compute_with_the_dequantized_weights_in_fp32(make_config, dequantize):
    """Compiled one-row steps multiply the int8 weights and their scales in fp32 (the eager int8 kernel rounds
    activations to bf16): step for step, the logits of a float model holding the dequantized weights."""
    int8 = prepare_for_decoding(Decoder(make_config(300)).init_weights(seed=6).eval(), int8=True, compile=True)
    dequantized = dequantize(int8)
    step = CompiledStep(int8)
    with torch.inference_mode():
        compiled_cache, eager_cache = int8.new_cache(1, 96), dequantized.new_cache(1, 96)
        prompt = torch.tensor([[5, 6, 7]])
        dequantized(prompt, cache=compiled_cache)  # the same prompt keys and values for both
        token = dequantized(prompt, cache=eager_cache)[:, -1].argmax(-1)
        for _ in range(70):  # crosses from the 64-position window to the last (96)
            expected = dequantized(token.view(1, 1), cache=eager_cache)[:, -1]
            got = step(token, compiled_cache)
            assert torch.allclose(got, expected, atol=1e-4)
            token = expected.argmax(-1)
    assert len(step.graphs) == 2


def test_compile_needs_an_slm_decoder():
    with pytest.raises(ConfigError, match="slm decoder"):
        Engine(nn.Linear(4, 4), compile=True)


def test_a_failing_compilation_is_reported_with_the_way_out(make_config, monkeypatch):
    model = prepare_for_decoding(Decoder(make_config(300)).init_weights(seed=0).eval(), compile=True)
    engine = Engine(model, compile="inductor")

    def broken(*args):
        raise RuntimeError("InductorError: CppCompileError: C++ compile error\nlots of detail")

    monkeypatch.setattr(torch._inductor, "standalone_compile", broken)
    with pytest.raises(SlmError, match="C\\+\\+ compiler.*without compile"):
        engine.generate([[5, 6, 7]], SamplingParams(max_tokens=4, ignore_eos=True))


def test_warm_up_compiles_the_graph_a_served_request_uses(make_config, monkeypatch):
    model = prepare_for_decoding(Decoder(make_config(300)).init_weights(seed=1).eval(), compile=True)
    engine = Engine(model, compile="inductor")
    engine.warm_up()
    assert [key[0] for key in engine.compiled_step.graphs] == windows(model.config.max_seq_len)

    def no_compiling(*args):
        raise AssertionError("compiled during a request")

    monkeypatch.setattr(engine.compiled_step, "_compile", no_compiling)
    seq = engine.new_sequence([5, 6, 7], SamplingParams(max_tokens=6, ignore_eos=True))
    for _ in engine.steps([seq], admit=lambda free, max_prompt_len, max_new_tokens: []):  # as the server runs it
        pass
    assert len(seq.output_ids) == 6
    Engine(model).warm_up()  # without compile: nothing to do


def test_compiled_step_reads_the_current_weights(make_config):
    """The weights are inputs of the graph, not constants baked into it: a change after compiling counts."""
    model = prepare_for_decoding(Decoder(make_config(300)).init_weights(seed=4).eval(), compile=True)
    step = CompiledStep(model)
    with torch.inference_mode():
        before = step(torch.tensor([7]), model.new_cache(1, 96))
        model.layers[0].mlp.down_proj.weight.mul_(3.0)
        after = step(torch.tensor([7]), model.new_cache(1, 96))
        expected = model(torch.tensor([[7]]), cache=model.new_cache(1, 96))[:, -1]
    assert len(step.graphs) == 1
    assert not torch.allclose(after, before, atol=1e-3)
    assert torch.allclose(after, expected, atol=1e-5)


def test_several_compiled_engines_in_one_process(make_config):
    """Each engine keeps its own graphs; nine in one process decode as their eager models do."""
    prompt, params = [5, 6, 7], SamplingParams(max_tokens=4, ignore_eos=True)
    for seed, context in enumerate((96, 200, 300)):  # 2 + 3 + 4 windows = 9 graphs
        model = Decoder(make_config(300, max_seq_len=context)).init_weights(seed=seed).eval()
        engine = Engine(prepare_for_decoding(copy.deepcopy(model), compile=True), compile="inductor")
        engine.warm_up()
        assert engine.generate([prompt], params)[0].token_ids == Engine(model).generate([prompt], params)[0].token_ids


@pytest.mark.parametrize("heads,kv_heads", [(4, 2), (4, 4)])
def test_read_only_cache_attention_matches_sdpa_over_the_written_cache(heads, kv_heads):
    from slm.infer.compiled import StaticKVCache

    torch.manual_seed(0)
    D, context, position, window = 16, 128, 37, 64
    k_cache, v_cache = torch.randn(2, 1, kv_heads, context, D), torch.randn(2, 1, kv_heads, context, D)
    q, k, v = torch.randn(1, heads, 1, D), torch.randn(1, kv_heads, 1, D), torch.randn(1, kv_heads, 1, D)
    before = k_cache.clone(), v_cache.clone()
    got = StaticKVCache(k_cache, v_cache, torch.tensor([position]), window).attend(1, q, k, v)
    assert torch.equal(k_cache, before[0]) and torch.equal(v_cache, before[1])  # read only: the engine writes
    keys, values = k_cache[1].clone(), v_cache[1].clone()
    keys[:, :, position], values[:, :, position] = k[:, :, 0], v[:, :, 0]
    rep = heads // kv_heads
    keys, values = keys[:, :, :position + 1].repeat_interleave(rep, 1), values[:, :, :position + 1].repeat_interleave(rep, 1)
    expected = torch.nn.functional.scaled_dot_product_attention(q, keys, values).reshape(1, 1, heads * D)
    assert torch.allclose(got, expected, atol=1e-5)
