"""Data: sources of documents, token shards (`prepare`), and the packed, resumable, rank-aware loader."""
from slm.data.loader import PackedLoader
from slm.data.shards import prepare, read_index

__all__ = ["PackedLoader", "prepare", "read_index"]
