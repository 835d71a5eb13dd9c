from slm.models.decoder import Decoder, ModelConfig, flops_per_token, param_count
from slm.models.hf import load, load_model, save
from slm.models.layers import KVCache, make_attention_mask
from slm.models.presets import PRESETS, preset

__all__ = ["Decoder", "ModelConfig", "KVCache", "PRESETS", "make_attention_mask", "flops_per_token", "load",
           "load_model", "param_count", "preset", "save"]
