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
