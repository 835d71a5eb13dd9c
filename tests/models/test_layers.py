"""Shared layers: growing a model's vocabulary keeps every old logit, ties and the config in step."""
import pytest
import torch

from slm.models import build_model, preset
from slm.models.layers import resize_vocabulary


@pytest.mark.parametrize("name, overrides", [
    ("nano", dict(dim=32, n_layers=1, n_heads=2, n_kv_heads=2, ffn_dim=64, vocab_size=50)),
    ("nano", dict(dim=32, n_layers=1, n_heads=2, n_kv_heads=2, ffn_dim=64, vocab_size=50, tie_embeddings=True)),
    ("nano-phi", dict(dim=32, n_layers=1, n_heads=2, ffn_dim=64, vocab_size=50)),
    ("t5-tiny", dict(dim=32, n_layers=1, n_heads=2, head_dim=16, ffn_dim=64, vocab_size=50, dropout=0.0)),
])
def test_growing_the_vocabulary_keeps_old_logits_and_starts_new_rows_at_the_mean(name, overrides):
    model = build_model(preset(name, **overrides)).init_weights(0).eval()
    ids = torch.randint(0, 50, (2, 7), generator=torch.Generator().manual_seed(0))
    seq2seq = hasattr(model.config, "decoder_start_token_id")
    extra = {"decoder_input_ids": ids[:, :4]} if seq2seq else {}
    with torch.no_grad():
        before = model(ids, **extra)
    resize_vocabulary(model, 56)
    assert model.config.vocab_size == 56
    with torch.no_grad():
        after = model(ids, **extra)
    assert after.shape[-1] == 56
    assert torch.allclose(after[..., :50], before, atol=1e-5)
    for module in model.modules():
        if isinstance(module, torch.nn.Embedding) and module.num_embeddings == 56:
            assert torch.allclose(module.weight[50:], module.weight[:50].mean(0).expand(6, -1))
    if overrides.get("tie_embeddings"):
        assert model.lm_head.weight is model.embed.weight
    # New ids can be fed in and trained.
    loss = model(torch.tensor([[51, 55]]), **({"decoder_input_ids": torch.tensor([[0]])} if seq2seq else {})).sum()
    loss.backward()
    with pytest.raises(ValueError, match="only grows"):
        resize_vocabulary(model, 10)


@pytest.mark.parametrize("chunk_logits", [10**9, 7 * 50, 50])  # one chunk; chunks of 7 tokens; one token each
def test_chunked_lm_loss_equals_the_full_cross_entropy_in_loss_and_gradients(chunk_logits):
    from slm.models.layers import chunked_lm_loss

    torch.manual_seed(0)
    head = torch.nn.Linear(16, 50, bias=True)
    hidden = torch.randn(3, 11, 16, requires_grad=True)
    labels = torch.randint(0, 50, (3, 11))
    labels[0, :4] = -100  # a prompt without targets
    full = torch.nn.functional.cross_entropy(head(hidden).reshape(-1, 50), labels.reshape(-1), ignore_index=-100,
                                             reduction="sum")
    full_grads = torch.autograd.grad(full, [hidden, head.weight, head.bias])
    loss, count = chunked_lm_loss(hidden, head, labels, chunk_logits=chunk_logits)
    grads = torch.autograd.grad(loss, [hidden, head.weight, head.bias])
    assert int(count) == 29
    assert torch.allclose(loss, full, atol=1e-5, rtol=1e-6)
    for a, b in zip(grads, full_grads):
        assert torch.allclose(a, b, atol=1e-5)


def test_decoders_compute_their_loss_without_full_logits_and_the_trainer_uses_it(monkeypatch):
    import torch.nn.functional as F

    from slm.finetune.lora import LoraSettings, apply_lora
    from slm.models import layers
    from slm.train.trainer import causal_lm_loss

    model = build_model(preset("nano", vocab_size=64, dim=32, n_layers=1, n_heads=2, n_kv_heads=2, ffn_dim=64))
    model.init_weights(0)
    ids = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(1))
    labels = ids.roll(-1, 1)
    labels[:, -1] = -100
    reference = F.cross_entropy(model(ids).reshape(-1, 64), labels.reshape(-1), ignore_index=-100, reduction="sum")
    monkeypatch.setattr(layers, "LOSS_CHUNK_LOGITS", 64 * 5)  # 5 tokens a chunk: a test-sized vocabulary
    seen = []
    original = layers._head_cross_entropy
    monkeypatch.setattr(layers, "_head_cross_entropy", lambda h, *a: seen.append(h.shape[0]) or original(h, *a))
    loss, count = causal_lm_loss(model, {"input_ids": ids, "labels": labels})
    assert torch.allclose(loss, reference, atol=1e-4) and int(count) == 22
    assert seen == [5, 5, 5, 5, 2]  # only the 22 targeted positions, five at a time: never all 24 x 64 logits
    lora = apply_lora(model, LoraSettings(r=2), seed=0)
    lora_loss, _ = causal_lm_loss(lora, {"input_ids": ids, "labels": labels})
    assert torch.allclose(lora_loss, reference, atol=1e-4)  # LoRA's B starts at zero: the same function
