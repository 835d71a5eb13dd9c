"""The TinyGSM verifier (label layout, loss, last-token scoring, save/load) and the selectors."""
import pytest
import torch

from slm.finetune import IGNORE, SFTBatches
from slm.models import Decoder, ModelConfig
from slm.recipes.tinygsm.selection import Sample, majority_vote, selection_metrics, verifier_pick, weighted_vote
from slm.recipes.tinygsm.verifier import Verifier, score, verifier_example, verifier_loss


@pytest.fixture
def verifier():
    cfg = ModelConfig(arch="llama", vocab_size=64, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=64,
                      max_seq_len=64, tie_embeddings=True)
    v = Verifier.from_generator(Decoder(cfg).init_weights(0))
    torch.nn.init.normal_(v.head.weight, std=0.5)  # a head with an opinion, so that scores differ
    return v


def test_label_layout_broadcasts_the_label_to_completion_tokens_only():
    ex = verifier_example([5, 6, 7], [8, 9], correct=True)
    assert ex.input_ids == [5, 6, 7, 8, 9]
    assert ex.labels == [IGNORE, IGNORE, IGNORE, 1, 1]
    wrong = verifier_example([5], [8, 9, 10], correct=False)
    assert wrong.labels == [IGNORE, 0, 0, 0]
    with pytest.raises(ValueError):
        verifier_example([1], [], True)


def test_verifier_loss_is_bce_over_completion_positions_only(verifier):
    examples = [verifier_example([1, 2, 3], [4, 5], True), verifier_example([1, 2], [6, 7, 8], False)]
    batch = next(iter(SFTBatches(examples, seq_len=16, batch_size=2, pad_id=0, pack=False, shuffle=False)))
    loss_sum, n = verifier_loss(verifier, batch)
    assert int(n) == 5
    logits = verifier(batch["input_ids"], attention_mask=batch["attention_mask"])
    expected = 0.0
    for row, ex in enumerate(examples):
        for t, y in enumerate(ex.labels):
            if y != IGNORE:
                expected += torch.nn.functional.binary_cross_entropy_with_logits(logits[row, t], torch.tensor(float(y)))
    assert torch.allclose(loss_sum, expected, atol=1e-5)
    # A prompt token's hidden state changes nothing in the loss if its target is masked: change the
    # label value at a prompt position and the loss stays (it was -100 and is never read).
    assert (batch["labels"][0, :3] == IGNORE).all()


def test_packed_batches_give_the_same_loss_as_padded_ones(verifier):
    examples = [verifier_example([1, 2, 3], [4, 5], True), verifier_example([1, 2], [6, 7, 8], False),
                verifier_example([9], [10, 11, 12, 13], True)]
    padded = next(iter(SFTBatches(examples, seq_len=32, batch_size=3, pad_id=0, pack=False, shuffle=False)))
    packed = next(iter(SFTBatches(examples, seq_len=32, batch_size=3, pad_id=0, pack=True, shuffle=False)))
    assert packed["input_ids"].shape[0] == 1  # all three share one row
    a, na = verifier_loss(verifier, padded)
    b, nb = verifier_loss(verifier, packed)
    assert int(na) == int(nb) == 2 + 3 + 4
    assert torch.allclose(a, b, atol=1e-4)


def test_score_reads_the_last_token_and_ignores_padding(verifier):
    short, long = [1, 2, 3, 4], [1, 2, 3, 4, 5, 6, 7]
    alone = score(verifier, [short])
    together = score(verifier, [short, long])
    assert alone[0] == pytest.approx(together[0], abs=1e-5)
    logits = verifier(torch.tensor([long]))
    assert together[1] == pytest.approx(torch.sigmoid(logits[0, -1]).item(), abs=1e-5)
    # the score is the last position's: it is not the mean over positions
    assert together[1] != pytest.approx(torch.sigmoid(logits[0, 4:]).mean().item(), abs=1e-6)
    assert all(0.0 < s < 1.0 for s in together)


def test_fresh_head_is_undecided():
    cfg = ModelConfig(arch="llama", vocab_size=32, dim=16, n_layers=1, n_heads=2, ffn_dim=32, max_seq_len=16)
    v = Verifier(Decoder(cfg).init_weights(0))
    assert score(v, [[1, 2, 3]]) == [pytest.approx(0.5)]


def test_training_through_the_trainer_learns_to_separate(verifier, tmp_path):
    from slm.train import TrainConfig, Trainer

    # correct programs end with token 10, wrong ones with token 20: a last-token verifier can learn it
    examples = [verifier_example([1, 2, 3 + i % 5], [4 + i % 3, 10 if i % 2 else 20], bool(i % 2)) for i in range(40)]
    batches = SFTBatches(examples, seq_len=32, batch_size=4, pad_id=0, seed=0)
    config = TrainConfig(max_steps=60, lr=1e-2, min_lr=1e-3, warmup_steps=5, progress=False, device="cpu")
    Trainer(verifier, config, batches, out_dir=tmp_path / "run", loss_fn=verifier_loss).fit()
    good, bad = score(verifier, [[1, 2, 3, 4, 10], [1, 2, 3, 4, 20]])
    assert good > 0.8 and bad < 0.2


def test_save_and_load_round_trip(verifier, tmp_path):
    seqs = [[1, 2, 3], [4, 5, 6, 7]]
    before = score(verifier, seqs)
    verifier.save(tmp_path / "v")
    loaded = Verifier.load(tmp_path / "v")
    assert score(loaded, seqs) == pytest.approx(before, abs=1e-6)
    import slm

    decoder, _ = slm.load(tmp_path / "v")  # the decoder part is a plain HF directory
    assert decoder.config.dim == verifier.config.dim
    from slm.errors import CheckpointError

    with pytest.raises(CheckpointError):
        Verifier.load(tmp_path)


def test_selectors():
    samples = [Sample(5, False, 0.2), Sample(5.0, False, 0.1), Sample(7, True, 0.9), Sample(None, False, 0.99)]
    assert majority_vote(samples) == 5
    assert verifier_pick(samples).value == 7  # the top score among programs that ran
    assert majority_vote([Sample(None, False)]) is None and verifier_pick([Sample(None, False)]) is None
    assert majority_vote([Sample(3, False), Sample(4, True)]) == 3  # ties: first seen
    # weighted vote: 5 has 0.2 + 0.1, 7 has 0.9 (the unrun sample's score counts for nothing)
    assert weighted_vote(samples) == 7
    assert weighted_vote([Sample(5, False, 0.4), Sample(5.0, False, 0.4), Sample(7, True, 0.7)]) == 5


def test_selection_metrics_and_their_invariants():
    questions = [
        [Sample(5, False, 0.2), Sample(5, False, 0.1), Sample(7, True, 0.9)],  # verifier right, majority wrong
        [Sample(3, True, 0.1), Sample(3, True, 0.2), Sample(4, False, 0.8)],   # majority right, verifier wrong
        [Sample(1, False, 0.5), Sample(None, False, 0.9)],                      # nobody right
    ]
    m = selection_metrics(questions, [7, 3, 2], [True, False, False])
    assert m == {"greedy": pytest.approx(1 / 3), "pass@1": pytest.approx((1 / 3 + 2 / 3) / 3),
                 "majority@N": pytest.approx(1 / 3), "verifier@N": pytest.approx(1 / 3),
                 "weighted@N": pytest.approx(1 / 3), "pass@N": pytest.approx(2 / 3)}
    assert m["pass@N"] >= max(m["majority@N"], m["verifier@N"], m["pass@1"])
    with pytest.raises(ValueError):
        selection_metrics(questions, [7], [True])
