"""PET's pattern-verbalizer pairs: encoding with mask slots and label scores read from the MLM logits."""
import pytest
import torch

from slm.errors import ConfigError, SlmError
from slm.finetune.classify import Example
from slm.finetune.pet.pvp import (PVP, batch_of, encode_pvp, label_scores, load_pvps, mask_logits, pvp_tokens,
                                  single_token_scores)

TEXTS = ["the soup was tasty . It was good .", "the waiter was rude . It was bad .", "Overall : great . I liked it",
         "Overall : terrible . I hated it", "is it a match ? Yes , No"] * 30


@pytest.fixture(scope="module")
def tok():
    import slm

    return slm.train_tokenizer(TEXTS, vocab_size=600, kind="roberta-bpe")


@pytest.fixture(scope="module")
def mlm(tok):
    from slm.models import build_model, preset

    cfg = preset("roberta-tiny", vocab_size=len(tok), dim=32, n_layers=1, n_heads=2, ffn_dim=64, max_positions=66)
    return build_model(cfg).init_weights(0).eval()


def test_encoding_puts_the_mask_where_the_pattern_has_it(tok):
    pvp = PVP("{text} . It was {mask} .", {"pos": ["good"], "neg": ["bad"]})
    enc = encode_pvp(pvp, tok, [Example("the soup was tasty", "pos")], max_len=32)
    row = enc.rows[0]
    assert row[0] == tok.bos_token_id and row[-1] == tok.eos_token_id
    assert row[enc.mask_pos[0]] == tok.mask_token_id and row.count(tok.mask_token_id) == 1
    # every part is tokenized with a leading space, so the verbalizer's " good" is what follows " was"
    assert tok.decode(row[1:enc.mask_pos[0]]) == " the soup was tasty . It was"
    assert enc.labels.tolist() == [0]


def test_long_fields_are_cut_to_fit_and_the_pattern_survives(tok):
    pvp = PVP("{text} ? {mask} , {text_pair}", {"yes": ["Yes"], "no": ["No"]})
    long = " ".join(["soup"] * 50)
    enc = encode_pvp(pvp, tok, [Example(long, "yes", "waiter")], max_len=16)
    assert len(enc.rows[0]) == 16 and enc.rows[0][enc.mask_pos[0]] == tok.mask_token_id
    assert enc.rows[0][-2] == tok(" waiter", add_special_tokens=False)["input_ids"][-1]  # the short field is kept


def test_label_scores_are_the_mlm_logits_at_the_mask(tok, mlm):
    pvp = PVP("{text} . It was {mask} .", {"pos": ["good", "great"], "neg": ["bad"]})
    examples = [Example("the soup was tasty", "pos"), Example("the waiter was rude and slow", "neg")]
    tokens = pvp_tokens(pvp, tok)
    enc = encode_pvp(pvp, tok, examples, max_len=32)
    scores = label_scores(mlm, enc, tokens, tok.pad_token_id)
    good, great, bad = (tok(" " + w, add_special_tokens=False)["input_ids"][0] for w in ("good", "great", "bad"))
    for i, row in enumerate(enc.rows):
        full = mlm(torch.tensor([row]))[0, enc.mask_pos[i]]  # the whole MLM output at the mask
        assert torch.allclose(scores[i, 0], (full[good] + full[great]) / 2, atol=1e-5)  # words averaged
        assert torch.allclose(scores[i, 1], full[bad], atol=1e-5)


def test_select_path_matches_the_full_forward(tok, mlm):
    pvp = PVP("{text} . It was {mask} .", {"pos": ["good"], "neg": ["bad"]})
    enc = encode_pvp(pvp, tok, [Example("the soup", "pos"), Example("the waiter was rude and slow", "neg")], 32)
    batch = batch_of(enc, [0, 1], tok.pad_token_id)
    at_mask = mask_logits(mlm, batch, 1)[:, 0]
    full = mlm(batch["input_ids"], attention_mask=batch["attention_mask"])
    assert torch.allclose(at_mask, full[torch.arange(2), batch["mask_pos"]], atol=1e-5)
    scores = single_token_scores(at_mask, pvp_tokens(pvp, tok))
    assert scores.shape == (2, 2)


def test_bad_patterns_and_verbalizers_are_one_line_errors(tok):
    with pytest.raises(ConfigError, match="exactly one"):
        PVP("{text} It was .", {"a": ["good"]})
    with pytest.raises(ConfigError, match="unknown slot"):
        PVP("{text} {label} {mask}", {"a": ["good"]})
    with pytest.raises(ConfigError, match="no verbalizer"):
        load_pvps([{"pattern": "{text} {mask}"}])
    with pytest.raises(ConfigError, match="no verbalizer word"):
        pvp_tokens(PVP("{text} {mask}", {"a": ["good"]}), tok, ["a", "b"])
    with pytest.raises(SlmError, match="not in the verbalizer"):
        encode_pvp(PVP("{text} {mask}", {"a": ["good"]}), tok, [Example("x", "zzz")], 16)


def test_yaml_patterns_share_a_verbalizer_or_carry_their_own():
    pvps = load_pvps({"patterns": ["{text} It was {mask} .", {"pattern": "{mask} : {text}", "name": "lead",
                                                             "verbalizer": {"pos": "great", "neg": "awful"}}],
                      "verbalizer": {"pos": ["good"], "neg": ["bad"]}})
    assert [p.name for p in pvps] == ["p0", "lead"]
    assert pvps[0].verbalizer == {"pos": ["good"], "neg": ["bad"]}
    assert pvps[1].verbalizer == {"pos": ["great"], "neg": ["awful"]}
