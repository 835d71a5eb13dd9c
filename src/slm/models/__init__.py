from slm.models.decoder import Decoder, ModelConfig, flops_per_token, param_count
from slm.models.encoder import Encoder, EncoderConfig
from slm.models.hf import load, load_model, save
from slm.models.layers import KVCache, make_attention_mask
from slm.models.presets import ENCODER_PRESETS, PRESETS, preset
from slm.models.registry import Family, build_model, families, family_for_model_type, family_of

__all__ = ["Decoder", "ModelConfig", "Encoder", "EncoderConfig", "Family", "KVCache", "PRESETS", "ENCODER_PRESETS",
           "build_model", "families", "family_for_model_type", "family_of", "make_attention_mask", "flops_per_token",
           "load", "load_model", "param_count", "preset", "save"]
