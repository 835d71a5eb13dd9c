import pytest
import torch

import slm
from slm.errors import SlmError
from slm.finetune.lora import LoraSettings, apply_lora, merged_copy, save_merged, trainable_parameters
from slm.models import Decoder, ModelConfig


def trained_lora(cfg, targets=None):
    """A LoRA model whose adapters are non-zero (peft starts B at zero, which would make merging trivial)."""
    model = apply_lora(Decoder(cfg).init_weights(seed=0), LoraSettings(r=4, alpha=8, target_modules=targets))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.05)
    return model.eval()


def test_only_adapters_train(tiny_config):
    model = apply_lora(Decoder(tiny_config).init_weights(seed=0), LoraSettings(r=4))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n for n in trainable)
    assert {n.split(".lora_")[0].rsplit(".", 1)[1] for n in trainable} == {
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    n_train, n_all = trainable_parameters(model)
    assert 0 < n_train < n_all / 5


def test_unknown_target_module_is_an_error(tiny_config):
    with pytest.raises(SlmError, match="dense.*linear layers are"):
        apply_lora(Decoder(tiny_config).init_weights(seed=0), LoraSettings(target_modules=["dense"]))


def test_lora_gradient_step_changes_only_adapters(tiny_config):
    model = apply_lora(Decoder(tiny_config).init_weights(seed=0), LoraSettings(r=4, target_modules=["q_proj", "v_proj"]))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    ids = torch.randint(0, tiny_config.vocab_size, (2, 12))
    logits = model(ids)
    torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten()).backward()
    opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("lora_B" in n for n in changed)  # first step: only B moves (A's grad is 0 while B = 0)


@pytest.mark.parametrize("arch", ["llama", "phi"])
def test_merged_checkpoint_has_the_same_logits_and_transformers_loads_it(tmp_path, tokenizer, arch):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    cfg = ModelConfig(arch=arch, vocab_size=len(tokenizer), dim=64, n_layers=2, n_heads=4,
                      n_kv_heads=2 if arch == "llama" else 4, ffn_dim=128, max_seq_len=64,
                      rotary_fraction=1.0 if arch == "llama" else 0.5)
    model = trained_lora(cfg)
    ids = torch.randint(0, cfg.vocab_size, (2, 16))
    with torch.no_grad():
        unmerged = model(ids)
        merged = merged_copy(model)
        assert type(merged) is Decoder
        torch.testing.assert_close(merged(ids), unmerged, atol=1e-5, rtol=1e-5)
        assert not torch.equal(merged(ids), model.get_base_model().__class__(cfg).init_weights(seed=0)(ids))
        torch.testing.assert_close(model(ids), unmerged)  # merging a copy leaves the training model as it was

    out = save_merged(model, tokenizer, tmp_path / "merged")
    assert (out / "config.json").is_file() and (out / "adapter" / "adapter_config.json").is_file()
    reloaded, tok = slm.load(out)
    hf = AutoModelForCausalLM.from_pretrained(out, local_files_only=True).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids), unmerged, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(hf(ids).logits, unmerged, atol=1e-4, rtol=1e-4)
    assert tok is not None and len(tok) == len(tokenizer)

    # the adapter alone, applied by peft to the transformers base model, gives the same logits too
    base_dir = slm.save(model.get_base_model().__class__(cfg).init_weights(seed=0), tokenizer, tmp_path / "base")
    hf_base = AutoModelForCausalLM.from_pretrained(base_dir, local_files_only=True)
    hf_lora = PeftModel.from_pretrained(hf_base, out / "adapter").eval()
    with torch.no_grad():
        torch.testing.assert_close(hf_lora(ids).logits, unmerged, atol=1e-4, rtol=1e-4)
