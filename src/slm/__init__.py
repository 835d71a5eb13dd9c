"""slm: small language models, from pretraining to serving, on one set of shared parts.

    import slm
    model, tokenizer = slm.load("path/to/hf-dir")
    logits = model(input_ids)                    # [batch, seq, vocab]
    slm.save(model, tokenizer, "path/to/out")    # an HF directory transformers loads
"""
from slm.errors import CheckpointError, ConfigError, SlmError
from slm.models import Decoder, Encoder, EncoderConfig, KVCache, ModelConfig, load, preset, save
from slm.tokenizer import load_tokenizer, train_tokenizer

__version__ = "0.1.0"
__all__ = ["CheckpointError", "ConfigError", "Decoder", "Encoder", "EncoderConfig", "KVCache", "ModelConfig", "SlmError", "load",
           "load_tokenizer", "preset", "save", "train_tokenizer"]
