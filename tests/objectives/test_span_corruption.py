"""T5 span corruption: the statistics random_spans_noise_mask promises, exact reconstruction, fixed lengths,
determinism per (seed, epoch, index), and T5's input/target length arithmetic."""
import numpy as np
import pytest
import torch

from slm.errors import SlmError
from slm.objectives.span_corruption import (SpanCorruption, SpanCorruptionConfig, corrupt, lengths_for, noise_mask,
                                            raw_length_for, reconstruct)

TOP, EOS = 1000, 1


def _spans(mask):
    starts = np.flatnonzero(mask & ~np.concatenate([[False], mask[:-1]]))
    ends = np.flatnonzero(mask & ~np.concatenate([mask[1:], [False]]))
    return ends - starts + 1


@pytest.mark.parametrize("density, mean_span, length", [(0.15, 3.0, 568), (0.5, 8.0, 128), (0.25, 1.0, 77)])
def test_noise_density_and_mean_span_over_ten_thousand_rows(density, mean_span, length):
    rng = np.random.default_rng(0)
    noise, spans, lens = 0, 0, []
    first_kept = last_noise = True
    for _ in range(10_000):
        mask = noise_mask(length, density, mean_span, rng)
        noise += int(mask.sum())
        s = _spans(mask)
        spans += len(s)
        lens.extend(s.tolist())
        first_kept &= not mask[0]
        last_noise &= bool(mask[-1])
    assert abs(noise / (10_000 * length) / density - 1) < 0.05
    assert abs(np.mean(lens) / mean_span - 1) < 0.05
    assert first_kept and last_noise  # kept text first, a noise span last, as T5 lays rows out
    # Span lengths vary (a uniform random segmentation), not all equal to the mean.
    assert np.std(lens) > 0 or mean_span == 1.0


def test_inputs_and_targets_reconstruct_the_original_and_have_fixed_lengths():
    rng = np.random.default_rng(1)
    tokens = rng.integers(2, TOP - 100, size=114)
    for _ in range(200):
        mask = noise_mask(len(tokens), 0.15, 3.0, rng)
        inputs, targets = corrupt(tokens, mask, TOP, EOS)
        assert (len(inputs), len(targets)) == lengths_for(len(tokens), 0.15, 3.0)
        assert inputs[-1] == targets[-1] == EOS
        n = len(_spans(mask))
        sentinels = [t for t in inputs if t >= TOP - 100]
        assert sentinels == list(range(TOP - 1, TOP - 1 - n, -1))  # <extra_id_0>, <extra_id_1>, ... counting down
        assert targets[0] == TOP - 1
        assert np.array_equal(reconstruct(inputs, targets, TOP, EOS), tokens)


def test_length_arithmetic_equals_t5s_for_512_tokens():
    # T5 / nanoT5: inputs of 512 at density 0.15 and mean span 3 read 568 raw tokens and give 114 targets.
    raw = raw_length_for(512, 0.15, 3.0)
    assert raw == 568 and lengths_for(raw, 0.15, 3.0) == (512, 114)


def test_transform_is_a_function_of_seed_epoch_and_index_only():
    transform = SpanCorruption(SpanCorruptionConfig(seed=3), sentinel_top=TOP, eos_id=EOS)
    rows = torch.randint(2, 800, (4, 568))
    batch = {"input_ids": rows, "sample_index": torch.tensor([7, 8, 9, 10]), "noise_epoch": torch.tensor([0, 0, 1, 1])}
    out = transform(batch)
    assert out["input_ids"].shape == (4, 512) and out["labels"].shape == (4, 114)
    alone = transform({"input_ids": rows[2:3], "sample_index": torch.tensor([9]), "noise_epoch": torch.tensor([1])})
    assert torch.equal(alone["input_ids"][0], out["input_ids"][2])  # batch-independent
    again = transform({**batch, "noise_epoch": torch.tensor([1, 1, 1, 1])})
    assert not torch.equal(again["input_ids"][0], out["input_ids"][0])  # a new epoch, a new mask


def test_bad_settings_are_one_line_errors():
    with pytest.raises(SlmError, match="noise_density"):
        SpanCorruptionConfig(noise_density=1.5)
    with pytest.raises(SlmError, match="sentinels"):
        SpanCorruption(SpanCorruptionConfig(mean_span=1.0), sentinel_top=TOP, eos_id=EOS, n_sentinels=10).row(
            np.arange(2, 600), 0, 0)
    with pytest.raises(SlmError, match="sample_index"):
        SpanCorruption(sentinel_top=TOP, eos_id=EOS)({"input_ids": torch.zeros(1, 8, dtype=torch.long)})
