"""Inference: the engine (batched prefill/decode, sampling, streaming), speculative decoding, int8 weights, server."""
from slm.infer.engine import Completion, Engine, Sequence, StreamEvent
from slm.infer.sampling import SamplingParams

__all__ = ["Completion", "Engine", "SamplingParams", "Sequence", "StreamEvent"]
