"""Data: sources of documents, token shards (`prepare`), and the packed, resumable, rank-aware loader."""
from slm.data.loader import PackedLoader
from slm.data.shards import check_tokenizer, load_data_tokenizer, prepare, read_index

__all__ = ["PackedLoader", "check_tokenizer", "load_data_tokenizer", "prepare", "read_index"]
