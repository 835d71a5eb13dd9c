"""Export to other runtimes: GGUF for llama.cpp (`export_gguf`), with a greedy-decoding parity check
against llama.cpp itself (`slm.export.parity`, needs the optional llama-cpp-python)."""
from slm.export.gguf import DTYPES, export_gguf

__all__ = ["DTYPES", "export_gguf"]
