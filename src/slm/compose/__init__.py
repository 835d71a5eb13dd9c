"""Composing models at decode time: EFT (emulated fine-tuning / up-scaling) and its speculative decoder.

    from slm.compose import EFTModel, load_composition, speculative_eft
    model = EFTModel(large_base, [(small_ft, 1.0)], small_base)     # a model-like object: Engine drives it
    model, tokenizer = load_composition("upscaled.yaml")             # the same from a YAML file
"""
from slm.compose.config import CompositionSpec, ExpertSpec, is_composition, load_composition, read_composition
from slm.compose.eft import EFTCache, EFTModel, shared_vocabulary
from slm.compose.speculative import speculative_eft

__all__ = ["CompositionSpec", "EFTCache", "EFTModel", "ExpertSpec", "is_composition", "load_composition",
           "read_composition", "shared_vocabulary", "speculative_eft"]
