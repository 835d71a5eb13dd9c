"""Named model configs per family. The big ones are the published shapes; the small ones are CPU-sized for demos and tests."""
from __future__ import annotations

PRESETS: dict[str, dict] = {
    # TinyLlama 1.1B (lit_gpt "tiny_LLaMA_1b"): Llama-2 shape with 4 query groups.
    "tinyllama-1.1b": dict(arch="llama", vocab_size=32000, dim=2048, n_layers=22, n_heads=32, n_kv_heads=4,
                           ffn_dim=5632, max_seq_len=2048, norm_eps=1e-5, bos_token_id=1, eos_token_id=2),
    # LiteLlama-460M-1T (HF card): GPT-2 tokenizer, 2 KV heads, untied.
    "litellama-460m": dict(arch="llama", vocab_size=50304, dim=1024, n_layers=24, n_heads=16, n_kv_heads=2,
                           ffn_dim=4096, max_seq_len=1024, norm_eps=1e-6, bos_token_id=50256, eos_token_id=50256),
    # phi-1.5 (microsoft/phi-1_5): parallel block, rotary on half of each head, biases, untied.
    "phi-1.5": dict(arch="phi", vocab_size=51200, dim=2048, n_layers=24, n_heads=32, ffn_dim=8192,
                    max_seq_len=2048, rotary_fraction=0.5, norm_eps=1e-5, bos_token_id=50256, eos_token_id=50256),
    # CPU-sized Llama shapes (GQA kept so that small runs exercise the same code as big ones).
    "nano": dict(arch="llama", vocab_size=8192, dim=256, n_layers=4, n_heads=4, n_kv_heads=2, ffn_dim=704,
                 max_seq_len=512, tie_embeddings=True),
    "micro": dict(arch="llama", vocab_size=8192, dim=512, n_layers=8, n_heads=8, n_kv_heads=4, ffn_dim=1408,
                  max_seq_len=1024, tie_embeddings=True),
    "nano-phi": dict(arch="phi", vocab_size=8192, dim=256, n_layers=4, n_heads=4, ffn_dim=1024,
                     max_seq_len=512, rotary_fraction=0.5),
}


# The encoder family (slm.models.encoder.EncoderConfig).
_ROBERTA = dict(arch="roberta", type_vocab_size=1, norm_eps=1e-5, pad_token_id=1, bos_token_id=0, eos_token_id=2)
_BERT = dict(arch="bert", type_vocab_size=2, norm_eps=1e-12, pad_token_id=0, bos_token_id=None, eos_token_id=None)
ENCODER_PRESETS: dict[str, dict] = {
    # roberta-base / roberta-large (fairseq, HF FacebookAI/roberta-*): GPT-2's byte BPE, 512 tokens (514 rows).
    "roberta-base": dict(_ROBERTA, vocab_size=50265, dim=768, n_layers=12, n_heads=12, ffn_dim=3072, max_positions=514),
    "roberta-large": dict(_ROBERTA, vocab_size=50265, dim=1024, n_layers=24, n_heads=16, ffn_dim=4096,
                          max_positions=514),
    # bert-base-uncased: WordPiece 30522, two segments.
    "bert-base": dict(_BERT, vocab_size=30522, dim=768, n_layers=12, n_heads=12, ffn_dim=3072, max_positions=512),
    # CPU-sized: the RoBERTa paper's ablation shape scaled down (4 layers, d=128) and one size up.
    "roberta-tiny": dict(_ROBERTA, vocab_size=8192, dim=128, n_layers=4, n_heads=4, ffn_dim=512, max_positions=130),
    "roberta-mini": dict(_ROBERTA, vocab_size=8192, dim=256, n_layers=4, n_heads=4, ffn_dim=1024, max_positions=258),
    "bert-tiny": dict(_BERT, vocab_size=8192, dim=128, n_layers=2, n_heads=2, ffn_dim=512, max_positions=512),
}


# The encoder-decoder family (slm.models.seq2seq.Seq2SeqConfig).
_T5_V11 = dict(ffn="gated-gelu", tie_embeddings=False)
SEQ2SEQ_PRESETS: dict[str, dict] = {
    # t5-small / t5-base (v1.0, Raffel et al.): ReLU, the output tied to the embedding. t5-small is FLAME's 60M.
    "t5-small": dict(vocab_size=32128, dim=512, n_layers=6, n_heads=8, head_dim=64, ffn_dim=2048),
    "t5-base": dict(vocab_size=32128, dim=768, n_layers=12, n_heads=12, head_dim=64, ffn_dim=3072),
    # google/flan-t5-small (T5 v1.1 shape): gated GELU, untied, 8 layers, 6 heads of 64 over d=512.
    "flan-t5-small": dict(_T5_V11, vocab_size=32128, dim=512, n_layers=8, n_heads=6, head_dim=64, ffn_dim=1024),
    # CPU-sized v1.1 shapes, vocabularies as the byte-level tokenizers slm trains.
    "t5-tiny": dict(_T5_V11, vocab_size=8192, dim=128, n_layers=2, n_heads=4, head_dim=32, ffn_dim=256,
                    max_seq_len=256),
    "t5-mini": dict(_T5_V11, vocab_size=8192, dim=256, n_layers=4, n_heads=4, head_dim=64, ffn_dim=640,
                    max_seq_len=512),
}


def preset(name: str, **overrides):
    """The config of a named preset of any family (a ModelConfig for decoders, an EncoderConfig for encoders)."""
    from slm.models.registry import preset_config

    return preset_config(name, **overrides)
