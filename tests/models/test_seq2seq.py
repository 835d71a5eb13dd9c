"""The encoder-decoder family: T5 v1.0 / v1.1 logits equal transformers' both ways, parameter counts, buckets,
caches (incremental decoding equals recomputation), the seq2seq loss, bad input."""
import json

import pytest
import torch
from transformers import T5Config, T5EncoderModel, T5ForConditionalGeneration

import slm
from slm.models.hf import load_model
from slm.errors import CheckpointError, ConfigError
from slm.models import family_of
from slm.models.seq2seq import (Seq2Seq, Seq2SeqConfig, param_count, relative_position_bucket, seq2seq_loss,
                                shift_right)

VOCAB = 97
# v1.0 and v1.1 shapes with odd bucket counts and distances, d_kv != d_model / heads, tied and untied, more
# decoder than encoder layers.
HF_CONFIGS = {
    "v1.0-tied-relu": dict(feed_forward_proj="relu", tie_word_embeddings=True, relative_attention_num_buckets=11,
                           relative_attention_max_distance=20),
    "v1.1-untied-gated-gelu": dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                                   relative_attention_num_buckets=32, relative_attention_max_distance=7 * 3),
    "gated-silu-tied": dict(feed_forward_proj="gated-silu", tie_word_embeddings=True,
                            relative_attention_num_buckets=9, relative_attention_max_distance=13),
}


def hf_t5(kind: str, cls=T5ForConditionalGeneration, seed: int = 0):
    torch.manual_seed(seed)
    config = T5Config(vocab_size=VOCAB, d_model=36, d_kv=10, d_ff=52, num_layers=2, num_decoder_layers=3,
                      num_heads=3, decoder_start_token_id=0, **HF_CONFIGS[kind])
    model = cls(config)
    with torch.no_grad():  # HF's init is tiny and its norms are ones: perturb every tensor so each mapping counts
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
        if cls is T5ForConditionalGeneration and not HF_CONFIGS[kind]["tie_word_embeddings"]:
            model.lm_head.weight = torch.nn.Parameter(torch.randn(VOCAB, 36) * 0.2)  # truly untied (v1.1)
    return model.eval()


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, VOCAB, (3, 23), generator=g)  # longer than the max distance: the log buckets count
    mask = torch.ones_like(ids)
    mask[1, 15:] = 0
    mask[2, :6] = 0  # left padding too: relative positions do not care where a row starts
    decoder_ids = torch.randint(2, VOCAB, (3, 9), generator=g)
    return ids, mask, decoder_ids


@pytest.mark.parametrize("kind", sorted(HF_CONFIGS))
def test_logits_match_transformers_both_ways(kind, tmp_path):
    hf = hf_t5(kind)
    hf.save_pretrained(tmp_path / "hf")
    ours = load_model(tmp_path / "hf")
    assert family_of(ours).name == "seq2seq"
    assert ours.num_parameters() == hf.num_parameters()
    ids, mask, dec = _inputs()
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
        got = ours(ids, attention_mask=mask, decoder_input_ids=dec)
    assert (got - ref).abs().max() < 1e-4
    slm.save(ours, None, tmp_path / "ours")
    back = T5ForConditionalGeneration.from_pretrained(tmp_path / "ours").eval()
    with torch.no_grad():
        again = back(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
    assert (again - ref).abs().max() < 1e-4
    assert json.loads((tmp_path / "ours" / "generation_config.json").read_text())["decoder_start_token_id"] == 0


def test_encoder_only_checkpoints_both_ways(tmp_path):
    hf = hf_t5("v1.1-untied-gated-gelu", cls=T5EncoderModel)
    hf.save_pretrained(tmp_path / "hf")
    ours = load_model(tmp_path / "hf")
    assert ours.config.encoder_only and ours.decoder is None
    ids, mask, _ = _inputs()
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask).last_hidden_state
        assert (ours(ids, attention_mask=mask) - ref).abs().max() < 1e-4
    slm.save(ours, None, tmp_path / "ours")
    back = T5EncoderModel.from_pretrained(tmp_path / "ours").eval()
    with torch.no_grad():
        assert (back(input_ids=ids, attention_mask=mask).last_hidden_state - ref).abs().max() < 1e-4


@pytest.mark.parametrize("name, hf_kwargs", [
    ("t5-small", dict()),
    ("t5-base", dict(d_model=768, d_ff=3072, num_layers=12, num_heads=12)),
    ("flan-t5-small", dict(d_ff=1024, num_layers=8, num_heads=6, feed_forward_proj="gated-gelu",
                           tie_word_embeddings=False)),
])
def test_preset_parameter_counts_equal_transformers(name, hf_kwargs):
    with torch.device("meta"):
        hf = T5ForConditionalGeneration(T5Config(**hf_kwargs))
        hf_count = sum(p.numel() for p in hf.parameters())
        if not hf_kwargs.get("tie_word_embeddings", True):  # transformers 5 ties a fresh model; checkpoints untie
            hf_count += hf.lm_head.weight.numel()
    assert param_count(slm.preset(name)) == hf_count
    if name == "t5-small":
        assert 60e6 < hf_count < 61e6  # FLAME's 60M


def test_buckets_equal_transformers_formula_on_long_ranges():
    from transformers.models.t5.modeling_t5 import T5Attention

    relative = torch.arange(-300, 300).view(1, -1)
    for bidirectional, buckets, distance in [(True, 32, 128), (False, 32, 128), (True, 11, 20), (False, 9, 13)]:
        ref = T5Attention._relative_position_bucket(relative, bidirectional, buckets, distance)
        assert torch.equal(relative_position_bucket(relative, bidirectional, buckets, distance), ref)


def test_incremental_decoding_equals_full_recomputation():
    cfg = Seq2SeqConfig(vocab_size=VOCAB, dim=32, n_layers=2, n_heads=4, head_dim=8, ffn_dim=48, ffn="gated-gelu",
                        tie_embeddings=False, dropout=0.0, relative_buckets=8, relative_max_distance=10)
    model = Seq2Seq(cfg).init_weights(0).eval()
    ids, mask, dec = _inputs()
    with torch.no_grad():
        full = model(ids, attention_mask=mask, decoder_input_ids=dec)
        enc = model.encode(ids, mask)
        cache = model.new_cache(enc, mask, max_len=16)
        steps = [model.logits(model.decode(dec[:, :3], cache=cache))]  # a 3-token chunk, then one at a time
        for t in range(3, dec.shape[1]):
            steps.append(model.logits(model.decode(dec[:, t:t + 1], cache=cache)))
        assert cache.length == dec.shape[1]
        assert (torch.cat(steps, 1) - full).abs().max() < 1e-5
        cache.select(torch.tensor([2, 0]))  # beam search reorders rows; the rest follows
        nxt = torch.randint(2, VOCAB, (2, 1))
        step = model.logits(model.decode(nxt, cache=cache))
        ref = model(ids[[2, 0]], attention_mask=mask[[2, 0]], decoder_input_ids=torch.cat([dec[[2, 0]], nxt], 1))
        assert (step[:, -1] - ref[:, -1]).abs().max() < 1e-5


def test_loss_is_cross_entropy_over_shifted_labels():
    cfg = Seq2SeqConfig(vocab_size=VOCAB, dim=32, n_layers=1, n_heads=2, head_dim=16, ffn_dim=48, dropout=0.0)
    model = Seq2Seq(cfg).init_weights(0)
    ids, mask, labels = _inputs()
    labels[0, 6:] = -100
    assert shift_right(labels, 0, 0)[0, 7:].eq(0).all() and shift_right(labels, 0, 0)[:, 0].eq(0).all()
    loss, n = seq2seq_loss(model, {"input_ids": ids, "attention_mask": mask, "labels": labels})
    logits = model(ids, attention_mask=mask, decoder_input_ids=shift_right(labels, 0, 0))
    keep = labels != -100
    expected = torch.nn.functional.cross_entropy(logits[keep], labels[keep], reduction="sum")
    assert n == keep.sum() and torch.allclose(loss, expected)
    loss.backward()
    assert model.embed.weight.grad is not None and model.lm_head.weight.grad is not None


def test_bad_configs_and_lengths_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="ffn"):
        Seq2SeqConfig(ffn="gated-swish-x")
    with pytest.raises(ConfigError, match="relative_max_distance"):
        Seq2SeqConfig(relative_buckets=32, relative_max_distance=4)
    model = Seq2Seq(Seq2SeqConfig(vocab_size=VOCAB, dim=16, n_layers=1, n_heads=2, head_dim=8, ffn_dim=16,
                                  max_seq_len=8))
    with pytest.raises(ValueError, match="exceeds the model's 8"):
        model(torch.ones(1, 9, dtype=torch.long), decoder_input_ids=torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="decoder sequence of 9 tokens"):
        model(torch.ones(1, 3, dtype=torch.long), decoder_input_ids=torch.zeros(1, 9, dtype=torch.long))
    hf_t5("v1.0-tied-relu").save_pretrained(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    (tmp_path / "m" / "config.json").write_text(json.dumps({**cfg, "architectures": ["T5ForQuestionAnswering"]}))
    with pytest.raises(CheckpointError, match="T5ForQuestionAnswering is not supported"):
        load_model(tmp_path / "m")
