import copy

import pytest
import torch
from torch import nn

from slm.infer import Engine, SamplingParams
from slm.infer.quant import QuantLinear, quantize_int8, quantize_weight, weight_bytes
from slm.models import Decoder


def test_per_channel_quantization_round_trips_within_half_a_step():
    torch.manual_seed(0)
    w = torch.randn(16, 32) * torch.logspace(-3, 1, 16)[:, None]  # rows of very different scales
    q, scale = quantize_weight(w)
    assert q.dtype == torch.int8 and scale.shape == (16,)
    assert q.abs().amax(dim=1).tolist() == [127] * 16  # each row uses its full range
    assert torch.all((q.float() * scale[:, None] - w).abs() <= scale[:, None] / 2 + 1e-7)


def test_quant_linear_matches_its_dequantized_weight():
    torch.manual_seed(0)
    linear = nn.Linear(32, 24, bias=True)
    ql = QuantLinear.from_linear(linear)
    x = torch.randn(3, 5, 32)
    expected = x @ ql.dequantized_weight().T + linear.bias
    assert torch.allclose(ql(x), expected, rtol=0.02, atol=0.02)  # bf16 activations and output in the CPU kernel
    assert torch.allclose(ql(x), linear(x), atol=0.05)


def test_quantize_int8_model(tiny_model, make_config):
    model = Decoder(make_config(300, tie_embeddings=True)).init_weights(seed=3).eval()
    reference = copy.deepcopy(model)
    before = weight_bytes(model)
    quantize_int8(model)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert linears == [] and isinstance(model.lm_head, QuantLinear)
    assert isinstance(model.embed, nn.Embedding)  # the lookup table stays float
    assert weight_bytes(model) < 0.3 * before
    ids = torch.randint(0, 300, (2, 20))
    with torch.no_grad():
        logp, ref = model(ids).log_softmax(-1), reference(ids).log_softmax(-1)
    assert (logp.exp() - ref.exp()).abs().max() < 0.02
    [c] = Engine(model).generate([[1, 2, 3]], SamplingParams(max_tokens=8))
    assert len(c.token_ids) == 8

    head_kept = quantize_int8(copy.deepcopy(reference), include_lm_head=False)
    assert type(head_kept.lm_head) is nn.Linear and isinstance(head_kept.layers[0].attn.q_proj, QuantLinear)


def test_input_major_weights_keep_the_model_and_its_greedy_output(make_config):
    from slm.infer.quant import InputMajorLinear, input_major_weights

    for tie in (True, False):
        model = Decoder(make_config(300, tie_embeddings=tie)).init_weights(seed=4).eval()
        fast = input_major_weights(copy.deepcopy(model))
        assert not [m for m in fast.modules() if isinstance(m, nn.Linear)]
        assert isinstance(fast.lm_head, InputMajorLinear) and fast.lm_head.weight_t.is_contiguous()
        ids = torch.randint(0, 300, (2, 20))
        with torch.no_grad():
            assert torch.allclose(fast(ids), model(ids), atol=1e-5)
        params = SamplingParams(max_tokens=12, ignore_eos=True)
        prompts = [[5, 6, 7], [9, 10, 11, 12, 13]]
        assert [c.token_ids for c in Engine(fast).generate(prompts, params)] == \
            [c.token_ids for c in Engine(model).generate(prompts, params)]


def test_fused_projections_give_the_same_logits_and_tokens_in_every_decoding_layout(make_config):
    from slm.infer.quant import fuse_projections, prepare_for_decoding
    from slm.models.layers import Attention, SwiGLU

    for overrides in (dict(), dict(arch="phi", n_kv_heads=4, rotary_fraction=0.5)):
        model = Decoder(make_config(300, **overrides)).init_weights(seed=5).eval()
        fused = fuse_projections(copy.deepcopy(model))
        attn = [m for m in fused.modules() if isinstance(m, Attention)]
        assert attn and all(m.qkv_proj is not None and not hasattr(m, "q_proj") for m in attn)
        mlps = [m for m in fused.modules() if isinstance(m, SwiGLU)]
        assert all(m.gate_up_proj is not None and not hasattr(m, "gate_proj") for m in mlps)
        assert bool(mlps) == (model.config.arch == "llama")
        ids = torch.randint(0, 300, (2, 20))
        with torch.no_grad():
            assert torch.allclose(fused(ids), model(ids), atol=1e-5)
        params = SamplingParams(max_tokens=12, ignore_eos=True)
        prompts = [[5, 6, 7], [9, 10, 11, 12, 13]]  # different lengths: padded prefill, masked decoding
        expected = [c.token_ids for c in Engine(model).generate(prompts, params)]
        for layout in (dict(input_major=False), dict(input_major=True)):
            fast = prepare_for_decoding(copy.deepcopy(model), **layout)
            assert [c.token_ids for c in Engine(fast).generate(prompts, params)] == expected, (overrides, layout)
        int8 = prepare_for_decoding(copy.deepcopy(model), int8=True)
        assert all(isinstance(m.qkv_proj, QuantLinear) for m in int8.modules() if isinstance(m, Attention))


def _smaps_field(address: int, field: str) -> str:
    """A field of the /proc/self/smaps entry of the mapping that holds `address`."""
    inside = False
    for line in open("/proc/self/smaps"):
        head = line.split()[0]
        if "-" in head and ":" not in head:
            start, end = (int(x, 16) for x in head.split("-"))
            inside = start <= address < end
        elif inside and head == field + ":":
            return line.split()[1]
    raise AssertionError(f"no {field} for {address:#x}")


def test_decoding_weights_move_onto_huge_pages_in_place(make_config):
    from slm.infer.compiled import RowDotLinear
    from slm.infer.quant import (decoding_weights, fuse_projections, gather_on_huge_pages, huge_page_buffer,
                                 input_major_weights, replace_linears)

    if huge_page_buffer(1) is None:
        pytest.skip("no transparent huge pages here")
    layouts = {"int8": quantize_int8, "rows": lambda m: replace_linears(m, RowDotLinear.from_linear),
               "input-major": input_major_weights}
    ids = torch.randint(0, 300, (2, 20))
    for tie in (True, False):
        model = Decoder(make_config(300, tie_embeddings=tie)).init_weights(seed=6).eval()
        for name, layout in layouts.items():
            prepared = layout(fuse_projections(copy.deepcopy(model)))
            weights = decoding_weights(prepared)
            before = [(w, w.stride(), w.clone()) for w in weights]
            with torch.no_grad():
                expected = prepared(ids)
            assert gather_on_huge_pages(prepared)
            for (w, stride, value), now in zip(before, decoding_weights(prepared)):
                assert now is w and w.stride() == stride and torch.equal(w, value), name
            storages = {w.untyped_storage().data_ptr() for w in weights}
            assert len(storages) == 1, name  # one buffer
            assert all(w.data_ptr() % 64 == 0 for w in weights)
            assert _smaps_field(weights[0].data_ptr(), "THPeligible") == "1"
            if tie and name == "rows":  # the table follows the head it is tied to
                assert prepared.embed.weight.data_ptr() == prepared.lm_head.weight.data_ptr()
            with torch.no_grad():
                assert torch.equal(prepared(ids), expected), name


def test_without_huge_pages_nothing_moves(make_config, monkeypatch):
    from slm.infer import quant

    monkeypatch.setattr(quant, "huge_page_buffer", lambda nbytes: None)
    model = quant.prepare_for_decoding(Decoder(make_config(300)).init_weights(seed=6).eval(), compile=True)
    pointers = {w.untyped_storage().data_ptr() for w in quant.decoding_weights(model)}
    assert len(pointers) > 1


def test_a_refused_huge_page_advice_means_no_buffer(monkeypatch):
    import mmap
    import types

    from slm.infer import quant

    class Refusing:
        closed = False

        def __init__(self, *args, **kwargs):
            pass

        def madvise(self, advice):
            raise OSError(22, "Invalid argument")

        def close(self):
            Refusing.closed = True

    fake = types.SimpleNamespace(mmap=Refusing, MADV_HUGEPAGE=14, MAP_PRIVATE=mmap.MAP_PRIVATE,
                                 MAP_ANONYMOUS=mmap.MAP_ANONYMOUS)
    monkeypatch.setattr(quant, "mmap", fake)
    setting = quant.Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if not setting.exists() or "[never]" in setting.read_text():
        pytest.skip("no transparent huge pages here")
    assert quant.huge_page_buffer(1 << 20) is None and Refusing.closed
