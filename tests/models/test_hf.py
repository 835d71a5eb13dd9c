"""HF interop: slm and transformers agree on logits in both directions, and bad checkpoints fail clearly."""
import json

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, PhiConfig, PhiForCausalLM

import slm
from slm.errors import CheckpointError

LLAMA_CASES = {
    "gqa-tied": dict(num_key_value_heads=2, tie_word_embeddings=True, rope_theta=500000.0, rms_norm_eps=1e-6),
    "gqa-untied": dict(num_key_value_heads=2, tie_word_embeddings=False, rope_theta=2500.0, rms_norm_eps=1e-5),
    "mha-untied": dict(num_key_value_heads=4, tie_word_embeddings=False, rope_theta=10000.0, rms_norm_eps=3e-5),
}


def tiny_llama(**kw):
    cfg = LlamaConfig(vocab_size=101, hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
                      max_position_embeddings=128, **kw)
    return LlamaForCausalLM(cfg).eval()


def tiny_phi(**kw):
    cfg = PhiConfig(vocab_size=101, hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
                    max_position_embeddings=128, partial_rotary_factor=0.5, **kw)
    return PhiForCausalLM(cfg).eval()


def _randomise(model):
    # HF zero-inits biases and sets norms to one: perturb everything so that every tensor's mapping is tested.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def _ids(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 101, (2, 23), generator=g)


def _check_both_ways(hf_model, tmp_path):
    torch.manual_seed(0)
    _randomise(hf_model)
    hf_model.save_pretrained(tmp_path / "hf")
    ours, tok = slm.load(tmp_path / "hf")
    assert tok is None
    x = _ids()
    with torch.no_grad():
        ref = hf_model(x).logits
        got = ours(x)
    assert got.shape == (2, 23, 101)
    assert torch.allclose(got, ref, atol=1e-4, rtol=0), (got - ref).abs().max()
    # and back: slm writes, transformers reads
    slm.save(ours, None, tmp_path / "ours")
    back = AutoModelForCausalLM.from_pretrained(tmp_path / "ours").eval()
    with torch.no_grad():
        assert torch.allclose(back(x).logits, got, atol=1e-4, rtol=0)
    return ours


@pytest.mark.parametrize("case", sorted(LLAMA_CASES))
def test_llama_parity_both_ways(case, tmp_path):
    ours = _check_both_ways(tiny_llama(**LLAMA_CASES[case]), tmp_path)
    cfg = LLAMA_CASES[case]
    assert ours.config.n_kv_heads == cfg["num_key_value_heads"]
    assert ours.config.rope_theta == cfg["rope_theta"]
    assert ours.config.norm_eps == cfg["rms_norm_eps"]
    assert ours.config.tie_embeddings == cfg["tie_word_embeddings"]
    assert (ours.lm_head.weight is ours.embed.weight) == cfg["tie_word_embeddings"]


def test_phi_parity_both_ways(tmp_path):
    ours = _check_both_ways(tiny_phi(), tmp_path)
    assert ours.config.arch == "phi" and ours.config.rotary_dim == 8


def test_phi_with_gqa_parity(tmp_path):
    _check_both_ways(tiny_phi(num_key_value_heads=2), tmp_path)


def test_from_scratch_slm_model_loads_in_transformers(tmp_path):
    model = slm.Decoder(slm.preset("nano", vocab_size=300, n_layers=2)).init_weights(seed=1)
    slm.save(model, None, tmp_path / "m")
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "m").eval()
    x = torch.randint(0, 300, (1, 40))
    with torch.no_grad():
        assert torch.allclose(hf(x).logits, model(x), atol=1e-4, rtol=0)


def test_sharded_checkpoint_round_trip(tmp_path):
    model = slm.Decoder(slm.preset("nano", vocab_size=300, n_layers=2)).init_weights(seed=2)
    slm.save(model, None, tmp_path / "m", max_shard_bytes=400_000)
    index = json.loads((tmp_path / "m" / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    again, _ = slm.load(tmp_path / "m")
    x = torch.randint(0, 300, (1, 12))
    with torch.no_grad():
        assert torch.equal(again(x), model(x))
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "m").eval()
    with torch.no_grad():
        assert torch.allclose(hf(x).logits, model(x), atol=1e-4, rtol=0)


def test_save_is_atomic_and_keeps_the_old_directory_on_failure(tmp_path, monkeypatch):
    model = slm.Decoder(slm.preset("nano", vocab_size=300, n_layers=1)).init_weights(seed=3)
    slm.save(model, None, tmp_path / "m")
    before = (tmp_path / "m" / "model.safetensors").read_bytes()

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr("slm.models.hf.save_file", boom)
    with pytest.raises(RuntimeError):
        slm.save(slm.Decoder(model.config).init_weights(seed=4), None, tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary left behind


def test_missing_directory(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        slm.load(tmp_path / "nope")


def test_truncated_weights_are_reported(tmp_path):
    model = slm.Decoder(slm.preset("nano", vocab_size=300, n_layers=1)).init_weights(seed=3)
    slm.save(model, None, tmp_path / "m")
    f = tmp_path / "m" / "model.safetensors"
    f.write_bytes(f.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        slm.load(tmp_path / "m")


def test_pickle_only_checkpoint_is_refused(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(tiny_llama().config.to_dict()))
    (d / "pytorch_model.bin").write_bytes(b"not opened")
    with pytest.raises(CheckpointError, match="safetensors only"):
        slm.load(d)


def test_shape_mismatch_is_reported(tmp_path):
    model = slm.Decoder(slm.preset("nano", vocab_size=300, n_layers=1)).init_weights(seed=3)
    slm.save(model, None, tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["intermediate_size"] = 128
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="has shape"):
        slm.load(tmp_path / "m")


def test_unsupported_family_is_reported(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "gpt_neox"}))
    with pytest.raises(CheckpointError, match="not supported"):
        slm.load(d)


def test_tokenizer_model_mismatch_is_refused(tmp_path, corpus_texts):
    tok = slm.train_tokenizer(corpus_texts[:5], vocab_size=600)
    model = slm.Decoder(slm.preset("nano", vocab_size=300, n_layers=1))
    with pytest.raises(slm.SlmError, match="do not belong together"):
        slm.save(model, tok, tmp_path / "m")
