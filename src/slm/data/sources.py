"""Where text comes from. The default corpus is the Python standard library source of the running
interpreter: real text and code, present on every machine, no download."""
from __future__ import annotations

import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from slm.errors import SlmError


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(limit: int | None = None) -> list[Path]:
    """The interpreter's own .py files, sorted for determinism; tests and site-packages left out."""
    root = stdlib_dir()
    skip = {"site-packages", "dist-packages", "test", "tests", "idlelib", "__pycache__", "lib2to3"}
    files = sorted(p for p in root.rglob("*.py") if not skip.intersection(p.relative_to(root).parts))
    return files[:limit] if limit else files


def iter_stdlib_texts(limit: int | None = None) -> Iterator[str]:
    for path in stdlib_files(limit):
        try:
            yield path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # a handful of stdlib files are Latin-1 test fixtures or unreadable: not corpus


# ---------------------------------------------------------------------------------------------------------------
# Document sources for `slm data prepare`. Each yields Documents: the text plus a provenance string that says
# where it came from (a path, a file:line, a row), which the shard index keeps per document.

@dataclass(frozen=True)
class Document:
    text: str
    source: str  # provenance: "stdlib:json/decoder.py", "docs/a.md", "data.jsonl:17", "data.parquet#3", ...


# Extensions that are never text; anything else is read and kept if it decodes as UTF-8 without NUL bytes.
BINARY_SUFFIXES = {
    ".png", ".jpg", ".jpeg", ".gif", ".bmp", ".ico", ".webp", ".pdf", ".zip", ".gz", ".bz2", ".xz", ".zst", ".tar",
    ".7z", ".whl", ".so", ".dll", ".dylib", ".exe", ".o", ".a", ".pyc", ".pyo", ".class", ".jar", ".bin", ".npy",
    ".npz", ".pt", ".pth", ".safetensors", ".gguf", ".parquet", ".arrow", ".sqlite", ".db", ".woff", ".woff2",
    ".ttf", ".otf", ".mp3", ".mp4", ".wav", ".ogg", ".flac", ".avi", ".mov",
}
SKIP_DIRS = {".git", ".hg", ".svn", "__pycache__", ".venv", "venv", "node_modules", ".mypy_cache", ".pytest_cache"}


def stdlib_documents(limit: int | None = None) -> Iterator[Document]:
    root = stdlib_dir()
    for path in stdlib_files(limit):
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # same rule as iter_stdlib_texts
        yield Document(text, f"stdlib:{path.relative_to(root).as_posix()}")


def read_text_file(path: Path) -> str | None:
    """The file's text, or None for a binary file (known suffix, a NUL byte, or not UTF-8)."""
    if path.suffix.lower() in BINARY_SUFFIXES:
        return None
    data = path.read_bytes()
    if b"\x00" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def folder_files(root: str | Path, patterns: Iterable[str] = ("**/*",)) -> list[Path]:
    """Files under `root` matching any glob pattern, VCS/cache folders left out, sorted for determinism."""
    root = Path(root)
    if not root.is_dir():
        raise SlmError(f"source folder not found: {root}")
    found: set[Path] = set()
    for pattern in patterns:
        for path in root.glob(pattern):
            if path.is_file() and not SKIP_DIRS.intersection(path.relative_to(root).parts[:-1]):
                found.add(path)
    return sorted(found)


def folder_documents(root: str | Path, patterns: Iterable[str] = ("**/*",),
                     skipped: Callable[[Path], None] | None = None) -> Iterator[Document]:
    """Text and code files under `root`; binaries are skipped (and passed to `skipped`, if given)."""
    for path in folder_files(root, patterns):
        text = read_text_file(path)
        if text is None:
            if skipped:
                skipped(path)
            continue
        yield Document(text, path.as_posix())


def _bad_record(where: str, why: str, skip_bad: bool) -> None:
    if not skip_bad:
        raise SlmError(f"{where}: {why} (pass skip_bad / --skip-bad-lines to skip such records)")
    print(f"warning: {where}: {why}; skipped", file=sys.stderr)


def jsonl_documents(path: str | Path, field: str = "text", skip_bad: bool = False) -> Iterator[Document]:
    """One document per line of a JSON Lines file, taken from `field`. A malformed line (not JSON, not an
    object, the field missing or not a string) is an error naming file:line, or a warning with skip_bad."""
    from slm.io import iter_jsonl

    for where, record in iter_jsonl(path, lambda where, why: _bad_record(where, why, skip_bad), what="JSONL file"):
        if field not in record:
            _bad_record(where, f"no field {field!r} in this record", skip_bad)
        elif not isinstance(record[field], str):
            _bad_record(where, f"field {field!r} holds {type(record[field]).__name__}, not a string", skip_bad)
        else:
            yield Document(record[field], where)


def parquet_documents(path: str | Path, column: str = "text", batch_rows: int = 1024) -> Iterator[Document]:
    """One document per row of a parquet file (or every *.parquet in a folder), from a string column."""
    import pyarrow.parquet as pq

    path = Path(path)
    files = sorted(path.glob("**/*.parquet")) if path.is_dir() else [path]
    if not path.exists() or not files:
        raise SlmError(f"parquet source not found: {path}")
    for file in files:
        try:
            pf = pq.ParquetFile(file)
        except Exception as e:  # pyarrow raises ArrowInvalid and others for a corrupt file
            raise SlmError(f"{file}: not a readable parquet file ({e})") from None
        if column not in pf.schema_arrow.names:
            raise SlmError(f"{file}: no column {column!r}; columns are {pf.schema_arrow.names}")
        row = 0
        for batch in pf.iter_batches(batch_size=batch_rows, columns=[column]):
            for value in batch.column(0).to_pylist():
                if isinstance(value, str):
                    yield Document(value, f"{file.as_posix()}#{row}")
                row += 1


# load_dataset builder for a local data file, by suffix.
_HF_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv", ".txt": "text",
                ".arrow": "arrow"}


def hf_documents(name_or_path: str, split: str = "train", field: str = "text",
                 config: str | None = None) -> Iterator[Document]:
    """Rows of a Hugging Face dataset: a hub name (needs network), a local dataset folder, or a local data file
    (json/jsonl/parquet/csv/txt). Read in streaming mode so that nothing is cached or held in memory."""
    try:
        import datasets
    except ImportError:
        raise SlmError("the HF datasets source needs the `datasets` package (pip install 'slm[train]')") from None
    path = Path(name_or_path)
    try:
        if path.is_file():
            builder = _HF_BUILDERS.get(path.suffix.lower())
            if builder is None:
                raise SlmError(f"{path}: unknown data file type; use one of {sorted(_HF_BUILDERS)}")
            ds = datasets.load_dataset(builder, data_files={split: str(path)}, split=split, streaming=True)
        else:
            ds = datasets.load_dataset(str(name_or_path), config, split=split, streaming=True)
    except SlmError:
        raise
    except Exception as e:  # datasets raises many types: missing dataset, no network, bad split
        raise SlmError(f"cannot load the dataset {name_or_path!r} (split {split!r}): {type(e).__name__}: {e}") \
            from None
    for i, record in enumerate(ds):
        if field not in record:
            raise SlmError(f"dataset {name_or_path!r}: no field {field!r}; fields are {sorted(record)}")
        if isinstance(record[field], str):
            yield Document(record[field], f"hf:{name_or_path}:{split}#{i}")


def file_documents(path: str | Path) -> Iterator[Document]:
    """A single text file as one document (nothing for a binary file)."""
    path = Path(path)
    if not path.is_file():
        raise SlmError(f"source file not found: {path}")
    text = read_text_file(path)
    if text is not None:
        yield Document(text, path.as_posix())


SOURCE_KINDS = ("stdlib", "folder", "file", "jsonl", "parquet", "hf")


def open_source(kind: str, target: str = "", **options) -> Iterator[Document]:
    """One source by kind: stdlib (options: limit), folder (patterns), file, jsonl (field, skip_bad),
    parquet (column), hf (split, field, config). `target` is the path or dataset name."""
    readers = {
        "stdlib": lambda: stdlib_documents(options.get("limit")),
        "folder": lambda: folder_documents(target, options.get("patterns") or ("**/*",)),
        "file": lambda: file_documents(target),
        "jsonl": lambda: jsonl_documents(target, options.get("field", "text"), options.get("skip_bad", False)),
        "parquet": lambda: parquet_documents(target, options.get("column", "text")),
        "hf": lambda: hf_documents(target, options.get("split", "train"), options.get("field", "text"),
                                   options.get("config")),
    }
    if kind not in readers:
        raise SlmError(f"unknown source kind {kind!r}; choose one of {', '.join(SOURCE_KINDS)}")
    return readers[kind]()
