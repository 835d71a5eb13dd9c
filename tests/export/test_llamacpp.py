"""llama.cpp runs the exported file: same prompt tokens, same greedy tokens (`make check-gguf`).

Skipped unless llama-cpp-python is installed (it builds llama.cpp from source, about 10 minutes on two
cores, so `make test` does not install it). The models are tiny but briefly trained, so that greedy
decoding has clear winners instead of near-ties that any rounding difference would flip.
"""
from __future__ import annotations

import pytest
import torch

import slm
from slm.cli import main
from slm.export import export_gguf
from slm.export.parity import compare_with_llamacpp, load_llamacpp
from slm.models import Decoder, ModelConfig

llama_cpp = pytest.importorskip("llama_cpp")
pytestmark = pytest.mark.slow

PROMPTS = ["def main(", "import os\nclass ", "        return self.", "for i in range(10):\n    print(ä"]
N_TOKENS = 24
KINDS = {  # tokenizer kind -> model shape details that differ, so both metadata paths are exercised
    "byte-bpe": dict(tie_embeddings=False, rope_theta=10000.0, norm_eps=1e-5),
    "llama-bpe": dict(tie_embeddings=True, rope_theta=500000.0, norm_eps=1e-6, n_kv_heads=4),
}


def train_briefly(model: Decoder, ids: torch.Tensor, steps: int = 80, seq: int = 64, batch: int = 8) -> Decoder:
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        starts = torch.randint(0, len(ids) - seq - 1, (batch,), generator=g)
        x = torch.stack([ids[s:s + seq + 1] for s in starts.tolist()])
        loss = torch.nn.functional.cross_entropy(model(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module", params=list(KINDS))
def trained(request, corpus_texts):
    kind = request.param
    texts = corpus_texts[:20]
    tok = slm.train_tokenizer(texts, vocab_size=600, kind=kind)
    vocab = (len(tok) + 63) // 64 * 64  # more rows than tokens: the padding tokens are exercised too
    shape = dict(arch="llama", vocab_size=vocab, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=128,
                 max_seq_len=256)
    cfg = ModelConfig(**{**shape, **KINDS[kind]})
    torch.manual_seed(0)
    ids = torch.tensor([t for text in texts for t in tok.encode(text)])
    return kind, train_briefly(Decoder(cfg).init_weights(0), ids), tok


@pytest.mark.parametrize("dtype", ["f32", "f16", "q8_0"])
def test_llamacpp_reproduces_slm(tmp_path, trained, dtype):
    kind, model, tok = trained
    path = export_gguf(model, tok, tmp_path / f"{kind}-{dtype}.gguf", dtype=dtype)
    llm = load_llamacpp(path, n_ctx=256)
    assert llm.n_vocab() == model.config.vocab_size
    report = compare_with_llamacpp(model, tok, path, PROMPTS, n_tokens=N_TOKENS, llm=llm)
    print(f"\n[{kind} {dtype}] {report.summary()}")
    for p in report.prompts:
        assert p.tokenization_match, (p.prompt, p.slm_prompt_ids, p.llamacpp_prompt_ids)
        body = p.slm_prompt_ids[1:] if tok.bos_token_id is not None and kind == "llama-bpe" else p.slm_prompt_ids
        assert llm.detokenize(body).decode("utf-8") == p.prompt
    if dtype == "f32":
        assert report.all_match, [(p.slm_tokens, p.llamacpp_tokens) for p in report.prompts]
        assert max(p.max_logit_diff for p in report.prompts) < 5e-3  # summation order differs (SIMD, threads)
    else:
        # Rounded weights move the logits a little; the trained model's choices are clear enough that
        # nearly every teacher-forced argmax survives (a wrong layout or permutation gives ~chance).
        assert min(p.forced_agreement for p in report.prompts) >= 0.9
        assert max(p.max_logit_diff for p in report.prompts) < 0.5


def test_cli_check(tmp_path, trained):
    kind, model, tok = trained
    slm.save(model, tok, tmp_path / "ckpt")
    out = tmp_path / "m.gguf"
    assert main(["export", "gguf", str(tmp_path / "ckpt"), str(out), "--check", "--check-tokens", "8"]) == 0


def test_real_model_in_llamacpp_from_its_original_file(real_model_dir, capsys):
    """llama.cpp runs the original Q4_1 file; slm runs the directory dequantized from it.

    llama.cpp multiplies Q4_1 blocks by int8-quantized activations while slm multiplies the dequantized
    float32 weights, so greedy paths may part after a near-tie: the prompt tokens must be identical, the
    teacher-forced argmax must agree almost everywhere, and where the greedy paths part is reported.
    """
    from slm.models.sources import real_model_file

    model, tok = slm.load(real_model_dir)
    prompts = [tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True, tokenize=False)
               for q in ("What is the capital of France?", "Write a haiku about the sea.",
                         "Explain what a Python list is.", "Give me three tips for sleeping well.")]
    report = compare_with_llamacpp(model, tok, real_model_file("smollm2-135m-instruct"), prompts, n_tokens=32)
    with capsys.disabled():
        print(f"\nreal model, llama.cpp Q4_1 file vs slm's import: {report.summary()}")
        for p in report.prompts:
            print(f"  greedy tokens equal for the first {p.common_prefix}/32; teacher-forced agreement "
                  f"{p.forced_agreement:.0%}")
    assert all(p.tokenization_match for p in report.prompts)
    assert min(p.forced_agreement for p in report.prompts) >= 0.8
