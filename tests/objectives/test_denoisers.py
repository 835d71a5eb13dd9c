"""UL2's denoisers: each one's rate and mean span over 1e4 rows, exact reconstruction, the right mode token, the
mixture's rates (chi-square), determinism per (seed, epoch, index), and the prefix-LM mask on a real decoder."""
import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from slm.errors import ConfigError, SlmError
from slm.objectives.denoisers import (MODE_TOKENS, UL2, UL2R, Denoiser, UL2Denoising, UL2Tokens, denoise,
                                      layout_lengths, mixture_from, raw_length_for)
from slm.objectives.span_corruption import noise_mask, reconstruct

TOP, EOS, PAD = 1000, 1, 0
TOKENS = UL2Tokens({"R": 900, "X": 901, "S": 902}, sentinel_top=TOP, n_sentinels=100, eos_id=EOS, pad_id=PAD)


def _spans(mask):
    starts = np.flatnonzero(mask & ~np.concatenate([[False], mask[:-1]]))
    ends = np.flatnonzero(mask & ~np.concatenate([mask[1:], [False]]))
    return ends - starts + 1


# Row lengths where T5's rounding (spans = round(noise / mean span)) leaves the realised mean at the nominal one.
@pytest.mark.parametrize("denoiser, length", [(d, 2560) for d in {*UL2.denoisers, *UL2R.denoisers}
                                              if d.kind != "S"])
def test_rate_and_mean_span_of_each_denoiser_over_ten_thousand_rows(denoiser, length):
    rng = np.random.default_rng(0)
    noise, lens = 0, []
    for _ in range(10_000):
        mask = noise_mask(length, denoiser.rate, denoiser.mean_span, rng)
        noise += int(mask.sum())
        lens.extend(_spans(mask).tolist())
    assert abs(noise / (10_000 * length) / denoiser.rate - 1) < 0.05
    assert abs(np.mean(lens) / denoiser.mean_span - 1) < 0.05


def test_sequential_denoiser_targets_a_quarter_of_the_row_on_average():
    rng = np.random.default_rng(0)
    row = np.arange(2, 258)
    shares = []
    for _ in range(10_000):
        inputs, targets = denoise(row, Denoiser("S", rate=0.25), rng, sentinel_top=TOP, eos_id=EOS)
        assert len(inputs) > 1 and len(targets) > 1  # at least one token on each side
        shares.append((len(targets) - 1) / len(row))
    assert abs(np.mean(shares) / 0.25 - 1) < 0.05
    assert np.std(shares) > 0.05  # a random cut, not a fixed one


@pytest.mark.parametrize("denoiser", list(UL2.denoisers))
def test_inputs_and_targets_reconstruct_the_original_with_the_right_mode_token(denoiser):
    row = np.random.default_rng(1).integers(2, 800, size=300)
    transform = UL2Denoising(mixture_from([{"kind": denoiser.kind, "mean_span": denoiser.mean_span,
                                            "rate": denoiser.rate}]), TOKENS, layout="seq2seq", length=400)
    for index in range(5):
        picked, inputs, targets = transform.example(row, 0, index)
        assert picked == denoiser
        assert inputs[0] == TOKENS.modes[denoiser.kind]
        assert {"R": "[NLU]", "X": "[NLG]", "S": "[S2S]"}[denoiser.kind] == MODE_TOKENS[denoiser.kind]
        if denoiser.kind == "S":
            original = np.concatenate([inputs[1:-1], targets[:-1]])
        else:
            original = reconstruct(inputs[1:], targets, TOP, EOS)
        assert np.array_equal(original, row)
        assert len(inputs) <= layout_lengths(len(row), denoiser, "seq2seq")[0]
        assert len(targets) <= layout_lengths(len(row), denoiser, "seq2seq")[1]


@pytest.mark.parametrize("mixture", [UL2, UL2R])
def test_mixture_rates_pass_a_chi_square_test(mixture):
    transform = UL2Denoising(mixture, TOKENS, layout="seq2seq", length=200)
    row = np.arange(2, 130)
    picks = [transform.example(row, 0, i)[0] for i in range(10_000)]
    observed = [sum(p == d for p in picks) for d in mixture.denoisers]
    expected = mixture.probabilities * len(picks)
    assert chisquare(observed, expected).pvalue > 0.001
    # ...and a mixture with other rates fails it: the test can tell them apart.
    skewed = np.roll(expected, 1)
    assert chisquare(observed, skewed).pvalue < 0.001


def test_ul2r_is_half_sequential_and_ul2_a_fifth():
    share = {name: sum(w for d, w in zip(m.denoisers, m.probabilities) if d.kind == "S")
             for name, m in (("ul2", UL2), ("ul2r", UL2R))}
    assert share == pytest.approx({"ul2": 0.2, "ul2r": 0.5})
    assert sum(w for d, w in zip(UL2R.denoisers, UL2R.probabilities) if d.kind == "R") == pytest.approx(0.25)


def test_examples_depend_on_seed_epoch_and_index_only():
    rows = torch.from_numpy(np.random.default_rng(2).integers(2, 800, size=(6, 120)))
    transform = UL2Denoising(UL2R, TOKENS, layout="prefix_lm",
                             length=max(layout_lengths(120, d, "prefix_lm")[0] for d in UL2R.denoisers))
    full = transform({"input_ids": rows, "sample_index": torch.arange(6), "noise_epoch": torch.zeros(6, dtype=int)})
    half = transform({"input_ids": rows[3:], "sample_index": torch.arange(3, 6),
                      "noise_epoch": torch.zeros(3, dtype=int)})
    assert torch.equal(full["input_ids"][3:], half["input_ids"]) and torch.equal(full["labels"][3:], half["labels"])
    later = transform({"input_ids": rows, "sample_index": torch.arange(6), "noise_epoch": torch.ones(6, dtype=int)})
    assert not torch.equal(full["input_ids"], later["input_ids"])


def test_prefix_lm_rows_fit_and_label_only_the_targets():
    raw = raw_length_for(128, UL2R, "prefix_lm")
    assert all(layout_lengths(raw, d, "prefix_lm")[0] <= 128 for d in UL2R.denoisers)
    assert any(layout_lengths(raw + 1, d, "prefix_lm")[0] > 128 for d in UL2R.denoisers)
    rows = torch.from_numpy(np.random.default_rng(3).integers(2, 800, size=(32, raw)))
    transform = UL2Denoising(UL2R, TOKENS, layout="prefix_lm", length=128)
    batch = transform({"input_ids": rows, "sample_index": torch.arange(32), "noise_epoch": torch.zeros(32, dtype=int)})
    for r in range(32):
        denoiser, inputs, targets = transform.example(rows[r].numpy(), 0, r)
        prefix = len(inputs) - 1  # the inputs' </s> is dropped inside a row
        kept = targets[:-1] if denoiser.kind == "S" else targets
        labelled = batch["labels"][r][batch["labels"][r] != -100]
        assert torch.equal(labelled, torch.from_numpy(kept))
        assert (batch["labels"][r][:prefix - 1] == -100).all()
        mask = batch["attention_mask"][r, 0]
        assert mask[:prefix, :prefix].all()  # the prefix sees itself both ways
        assert not mask[prefix, prefix + 1:].any()  # a target token sees no later one


def test_prefix_lm_mask_on_a_decoder_hides_the_future_of_targets_only():
    from slm.models import Decoder, ModelConfig, make_attention_mask

    model = Decoder(ModelConfig(vocab_size=64, dim=32, n_layers=2, n_heads=2, ffn_dim=64, max_seq_len=32))
    model.init_weights(0).eval()
    ids = torch.randint(0, 64, (1, 20), generator=torch.Generator().manual_seed(0))
    prefix = 8
    mask = make_attention_mask(20, 0, prefix_lengths=torch.tensor([prefix]))
    with torch.no_grad():
        base = model(ids, attention_mask=mask)
        for t in (prefix + 2, 15):  # a target token changes nothing before it, everything from it on
            changed = ids.clone()
            changed[0, t] = (changed[0, t] + 1) % 64
            out = model(changed, attention_mask=mask)
            assert torch.allclose(out[0, :t], base[0, :t], atol=1e-6)
            assert not torch.allclose(out[0, t], base[0, t], atol=1e-4)
        changed = ids.clone()
        changed[0, prefix - 1] = (changed[0, prefix - 1] + 1) % 64  # the prefix's last token
        out = model(changed, attention_mask=mask)
        assert all(not torch.allclose(out[0, p], base[0, p], atol=1e-4) for p in range(20))
        # Causal attention, for contrast, keeps positions before the change fixed.
        assert torch.allclose(model(changed)[0, :prefix - 1], model(ids)[0, :prefix - 1], atol=1e-6)


def test_bad_denoisers_and_rows_are_one_line_errors():
    with pytest.raises(ConfigError, match="rate"):
        Denoiser("R", 3, 1.5)
    with pytest.raises(ConfigError, match="kind"):
        Denoiser("Q")
    with pytest.raises(ConfigError, match="unknown denoiser mixture"):
        mixture_from("ul3")
    with pytest.raises(ConfigError, match="denoiser list"):
        mixture_from([{"kind": "R", "span": 3}])
    few = UL2Tokens(TOKENS.modes, TOP, n_sentinels=4, eos_id=EOS, pad_id=PAD)
    transform = UL2Denoising(mixture_from([{"kind": "X", "mean_span": 3, "rate": 0.5}]), few, layout="seq2seq",
                             length=200)
    with pytest.raises(SlmError, match="sentinels"):
        transform.example(np.arange(2, 130), 0, 0)
    with pytest.raises(SlmError, match="too short"):
        raw_length_for(3, UL2R, "prefix_lm")
