"""The encoder family: RoBERTa/BERT logits equal transformers' both ways, parameter counts, heads, registry."""
import json

import pytest
import torch
import transformers
from transformers import BertConfig, RobertaConfig

import slm
from slm.errors import CheckpointError
from slm.models import Encoder, EncoderConfig, family_for_model_type, family_of
from slm.models.encoder import param_count, roberta_position_ids, with_head

VOCAB = 97


def roberta_config(**kw):
    # Odd shapes everywhere: 3 heads of 12, a pad id that is not 1, more position rows than needed.
    base = dict(vocab_size=VOCAB, hidden_size=36, num_hidden_layers=2, num_attention_heads=3, intermediate_size=52,
                max_position_embeddings=45, type_vocab_size=1, pad_token_id=3, bos_token_id=0, eos_token_id=2,
                layer_norm_eps=1e-5, num_labels=5)
    return RobertaConfig(**{**base, **kw})


def bert_config(**kw):
    base = dict(vocab_size=VOCAB, hidden_size=40, num_hidden_layers=2, num_attention_heads=5, intermediate_size=66,
                max_position_embeddings=37, type_vocab_size=3, pad_token_id=5, layer_norm_eps=1e-12, num_labels=3)
    return BertConfig(**{**base, **kw})


def _randomise(model):
    # HF zero-inits biases and sets norms to one: perturb everything so that every tensor's mapping is tested.
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def _inputs(pad_id, type_vocab=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(6, VOCAB, (3, 19), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 13:] = 0  # right padding, as collators make it
    mask[2, 5:] = 0
    ids[mask == 0] = pad_id
    types = torch.randint(0, type_vocab, ids.shape, generator=g)
    return ids, mask, types


def _hf_out(hf_model, ids, mask, types):
    out = hf_model(input_ids=ids, attention_mask=mask, token_type_ids=types)
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


CASES = {
    "RobertaForMaskedLM": (roberta_config, "AutoModelForMaskedLM", (3, 19, VOCAB)),
    "RobertaForSequenceClassification": (roberta_config, "AutoModelForSequenceClassification", (3, 5)),
    "RobertaForTokenClassification": (roberta_config, "AutoModelForTokenClassification", (3, 19, 5)),
    "RobertaModel": (roberta_config, "AutoModel", (3, 19, 36)),
    "BertForMaskedLM": (bert_config, "AutoModelForMaskedLM", (3, 19, VOCAB)),
    "BertForSequenceClassification": (bert_config, "AutoModelForSequenceClassification", (3, 3)),
    "BertForTokenClassification": (bert_config, "AutoModelForTokenClassification", (3, 19, 3)),
    "BertModel": (bert_config, "AutoModel", (3, 19, 40)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_logits_match_transformers_both_ways(name, tmp_path):
    make_config, auto, shape = CASES[name]
    hf_cfg = make_config()
    hf_model = _randomise(getattr(transformers, name)(hf_cfg))
    hf_model.save_pretrained(tmp_path / "hf")
    ours, tok = slm.load(tmp_path / "hf")
    assert tok is None and isinstance(ours, Encoder)
    ids, mask, types = _inputs(hf_cfg.pad_token_id, hf_cfg.type_vocab_size)
    with torch.no_grad():
        ref = _hf_out(hf_model, ids, mask, types)
        got = ours(ids, attention_mask=mask, token_type_ids=types)
    assert got.shape == shape
    assert torch.allclose(got, ref, atol=1e-4, rtol=0), (got - ref).abs().max()
    if name.endswith("Model"):  # the bare models carry the pooler: dense + tanh on the first token
        with torch.no_grad():
            pooled = hf_model(input_ids=ids, attention_mask=mask, token_type_ids=types).pooler_output
            assert torch.allclose(ours.pooled(got), pooled, atol=1e-4, rtol=0)
    # and back: slm writes, transformers' Auto class for the head reads the same logits
    slm.save(ours, None, tmp_path / "ours")
    written = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert written["architectures"] == [name]
    back = getattr(transformers, auto).from_pretrained(tmp_path / "ours").eval()
    assert type(back).__name__ == name
    with torch.no_grad():
        again = _hf_out(back, ids, mask, types)
    assert torch.allclose(again, got, atol=1e-4, rtol=0), (again - got).abs().max()


def test_untied_mlm_decoder_round_trips(tmp_path):
    hf_model = _randomise(transformers.RobertaForMaskedLM(roberta_config(tie_word_embeddings=False)))
    hf_model.save_pretrained(tmp_path / "hf")
    ours, _ = slm.load(tmp_path / "hf")
    assert ours.head.decoder.weight.data_ptr() != ours.embed.weight.data_ptr()
    ids, mask, types = _inputs(3)
    with torch.no_grad():
        got = ours(ids, mask)
        assert torch.allclose(got, hf_model(input_ids=ids, attention_mask=mask).logits, atol=1e-4, rtol=0)
    slm.save(ours, None, tmp_path / "ours")
    back = transformers.AutoModelForMaskedLM.from_pretrained(tmp_path / "ours").eval()
    with torch.no_grad():
        assert torch.allclose(back(input_ids=ids, attention_mask=mask).logits, got, atol=1e-4, rtol=0)


def test_roberta_positions_count_real_tokens_from_pad_plus_one():
    ids = torch.tensor([[0, 7, 8, 2, 1, 1]])
    assert roberta_position_ids(ids, pad_id=1).tolist() == [[2, 3, 4, 5, 1, 1]]


@pytest.mark.parametrize("preset,hf_class,hf_kwargs", [
    ("roberta-base", "RobertaForMaskedLM", dict(max_position_embeddings=514, type_vocab_size=1)),
    ("roberta-large", "RobertaForMaskedLM", dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                                  intermediate_size=4096, max_position_embeddings=514,
                                                  type_vocab_size=1)),
    ("bert-base", "BertForMaskedLM", {}),
])
def test_preset_parameter_counts_equal_transformers(preset, hf_class, hf_kwargs):
    config_class = RobertaConfig if hf_class.startswith("Roberta") else BertConfig
    with torch.device("meta"):
        hf_model = getattr(transformers, hf_class)(config_class(**hf_kwargs))
    assert param_count(slm.preset(preset)) == hf_model.num_parameters()
    with torch.device("meta"):
        seq = getattr(transformers, hf_class.replace("MaskedLM", "SequenceClassification"))(
            config_class(**hf_kwargs, num_labels=3))
        bare = getattr(transformers, hf_class.replace("ForMaskedLM", "Model"))(config_class(**hf_kwargs))
    assert param_count(slm.preset(preset, head="sequence", num_labels=3)) == seq.num_parameters()
    assert param_count(slm.preset(preset, head="none")) == bare.num_parameters()


def test_roberta_base_is_125m_and_large_355m():
    assert round(param_count(slm.preset("roberta-base")) / 1e6) == 125
    assert round(param_count(slm.preset("roberta-large")) / 1e6) == 355


def test_registry_dispatches_by_model_type():
    assert family_for_model_type("roberta").name == "encoder"
    assert family_for_model_type("bert").name == "encoder"
    assert family_for_model_type("llama").name == "decoder"
    assert family_of(slm.preset("roberta-tiny")).module_class is Encoder
    with pytest.raises(CheckpointError, match="not supported"):
        family_for_model_type("gpt_neox")


def test_with_head_keeps_the_body_and_adds_a_classifier():
    mlm = Encoder(slm.preset("roberta-tiny", vocab_size=120, n_layers=1)).init_weights(0).eval()
    clf = with_head(mlm, "sequence", labels=["a", "b", "c"]).eval()
    ids = torch.randint(4, 120, (2, 9))
    with torch.no_grad():
        assert torch.equal(clf.hidden_states(ids), mlm.hidden_states(ids))
        assert clf(ids).shape == (2, 3)
    assert clf.config.labels == ["a", "b", "c"]


def test_unsupported_architecture_and_activation_are_refused(tmp_path):
    hf_model = transformers.RobertaForMaskedLM(roberta_config())
    hf_model.save_pretrained(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    (tmp_path / "m" / "config.json").write_text(json.dumps({**cfg, "architectures": ["RobertaForCausalLM"]}))
    with pytest.raises(CheckpointError, match="RobertaForCausalLM"):
        slm.load(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text(json.dumps({**cfg, "hidden_act": "relu"}))
    with pytest.raises(CheckpointError, match="hidden_act"):
        slm.load(tmp_path / "m")


def test_encoder_config_validation():
    with pytest.raises(slm.ConfigError, match="divide"):
        EncoderConfig(dim=30, n_heads=4)
    with pytest.raises(slm.ConfigError, match="head"):
        EncoderConfig(head="lm")


def test_generate_refuses_an_encoder_in_one_line(tmp_path, capsys):
    from slm.cli import main

    slm.save(Encoder(slm.preset("roberta-tiny", vocab_size=120, n_layers=1)).init_weights(0), None, tmp_path / "enc")
    assert main(["generate", str(tmp_path / "enc"), "--prompt", "hi"]) == 2
    err = capsys.readouterr().err.strip()
    assert "does not generate text" in err and len(err.splitlines()) == 1
