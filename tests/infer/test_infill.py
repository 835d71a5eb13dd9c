"""Infilling (slm.infer.infill): the R denoiser's prompt, span parsing, filling, cached decoding after a
prefix-LM prefill that equals recomputing the whole row, and `slm generate --infill`."""
import json

import pytest
import torch

import slm
from slm.errors import SlmError
from slm.infer import infill as I
from slm.models import build_model, make_attention_mask, preset
from slm.objectives.denoisers import add_ul2_tokens, ul2_tokens


@pytest.fixture(scope="module")
def tiny(corpus_texts):
    tok = slm.train_tokenizer(corpus_texts[:10], vocab_size=300)
    model = build_model(preset("nano", vocab_size=len(tok), dim=32, n_layers=2, n_heads=2, n_kv_heads=2, ffn_dim=64,
                               max_seq_len=96)).init_weights(0).eval()
    add_ul2_tokens(model, tok, n_sentinels=10)
    return model, tok


def test_prompt_puts_one_sentinel_per_gap_behind_the_nlu_token(tiny):
    _, tok = tiny
    t = ul2_tokens(tok)
    ids, gaps = I.infill_prompt(tok, "a = <gap>\nb = <gap>")
    assert gaps == 2 and ids[0] == t.modes["R"]
    assert [i for i in ids if i >= t.sentinel_top - t.n_sentinels] == [t.sentinel_top - 1, t.sentinel_top - 2]
    assert tok.decode(ids[1:]) == "a = <extra_id_0>\nb = <extra_id_1>"
    with pytest.raises(SlmError, match="no gap"):
        I.infill_prompt(tok, "no gaps here")
    with pytest.raises(SlmError, match="only 10 sentinels"):
        I.infill_prompt(tok, "<gap>" * 11)


def test_target_spans_reads_each_sentinels_span_and_stops_at_eos():
    from slm.objectives.span_corruption import target_spans

    top, n = 100, 10
    assert target_spans([99, 5, 6, 98, 7, 1, 97, 8], top, n, 3, eos_id=1) == [[5, 6], [7], []]
    assert target_spans([98, 7], top, n, 2) == [[], [7]]  # a missing span is empty, not shifted


def test_infill_puts_each_span_into_its_gap(tiny, monkeypatch):
    model, tok = tiny
    t = ul2_tokens(tok)
    one, two = tok("x + 1", add_special_tokens=False)["input_ids"], tok("y", add_special_tokens=False)["input_ids"]
    answer = [t.sentinel_top - 1, *one, t.sentinel_top - 2, *two]
    monkeypatch.setattr(I, "greedy_targets", lambda *a, **k: answer)
    out = I.infill(model, tok, "a = <gap>\nb = <gap>\n")
    assert out == {"text": "a = x + 1\nb = y\n", "spans": ["x + 1", "y"]}


def test_cached_decoding_after_a_prefix_prefill_equals_recomputing_the_row(tiny):
    model, tok = tiny
    t = ul2_tokens(tok)
    prompt, _ = I.infill_prompt(tok, "def f(x):\n    return <gap>\n")
    got = I.greedy_targets(model, prompt, eos_id=-1, max_tokens=12)
    assert len(got) == 12
    row = list(prompt)
    with torch.no_grad():
        for _ in range(12):  # the whole row each step, the prompt bidirectional and the rest causal
            mask = make_attention_mask(len(row), 0, prefix_lengths=torch.tensor([len(prompt)]))
            row.append(int(model(torch.tensor([row]), attention_mask=mask)[0, -1].argmax()))
    assert got == row[len(prompt):]
    # The prefill is not a causal one: with a causal prompt the first token's logits differ.
    with torch.no_grad():
        causal = model(torch.tensor([prompt]))[0, -1]
        mask = make_attention_mask(len(prompt), 0, prefix_lengths=torch.tensor([len(prompt)]))
        prefix = model(torch.tensor([prompt]), attention_mask=mask)[0, -1]
    assert not torch.allclose(causal, prefix, atol=1e-5)
    assert t.eos_id == tok.eos_token_id


def test_encoder_decoders_infill_from_their_inputs(corpus_texts):
    tok = slm.train_tokenizer(corpus_texts[:10], vocab_size=400, kind="t5-bpe")
    model = build_model(preset("t5-tiny", vocab_size=len(tok), dim=32, n_layers=1, n_heads=2, head_dim=16,
                               ffn_dim=64, dropout=0.0)).init_weights(0).eval()
    add_ul2_tokens(model, tok)
    out = I.infill(model, tok, "import <gap>\n", max_tokens=5)
    assert out["text"].startswith("import ") and len(out["spans"]) == 1


def test_generate_infill_cli(tiny, tmp_path, capsys):
    from slm.cli import main

    model, tok = tiny
    slm.save(model, tok, tmp_path / "m")
    assert main(["generate", str(tmp_path / "m"), "--infill", "--prompt", "x = <gap> + 1", "--max-tokens", "4",
                 "--json"]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["prompt"] == "x = <gap> + 1" and record["text"].endswith(" + 1") and len(record["spans"]) == 1
    plain = tmp_path / "plain"
    bare = build_model(preset("nano", vocab_size=300, dim=32, n_layers=1, n_heads=2, n_kv_heads=2, ffn_dim=64))
    slm.save(bare.init_weights(0), slm.train_tokenizer(["a b c"] * 10, vocab_size=300), plain)
    assert main(["generate", str(plain), "--infill", "--prompt", "x = <gap>"]) == 2
    assert "lacks UL2's" in capsys.readouterr().err
