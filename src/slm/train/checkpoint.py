"""Training checkpoints: atomic, verified by a manifest, the newest K kept, resumed exactly.

Layout of RUN_DIR/checkpoints/step-000100/:
    config.json, generation_config.json, model.safetensors, tokenizer files   an HF model directory
    trainer_state.pt     optimizer state and torch RNG states: tensors and plain types only (weights_only load)
    trainer_state.json   step, tokens seen, schedule, python/numpy RNG, data-loader positions (one per rank)
    manifest.json        size and sha256 of every file above; written last
A checkpoint is written into a temporary directory and renamed into place (slm.io.atomic_directory), so a
process killed while saving leaves only a `.step-*.tmp` directory that the next run removes. A checkpoint
whose files no longer match their manifest (truncated, corrupted on disk) is reported and skipped.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Callable

from slm.errors import CheckpointError
from slm.io import atomic_directory

MANIFEST = "manifest.json"
_STEP_DIR = re.compile(r"^step-(\d+)$")


def checkpoints_root(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def step_dir(run_dir: str | Path, step: int) -> Path:
    return checkpoints_root(run_dir) / f"step-{step:06d}"


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of every finished checkpoint directory, oldest first (partial writes are hidden dot-dirs)."""
    root = checkpoints_root(run_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))]
    return sorted(found)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(directory: Path, step: int) -> None:
    files = {p.relative_to(directory).as_posix(): {"size": p.stat().st_size, "sha256": _sha256(p)}
             for p in sorted(directory.rglob("*")) if p.is_file() and p.name != MANIFEST}
    (directory / MANIFEST).write_text(json.dumps({"step": step, "files": files}, indent=1) + "\n")


def verify(directory: str | Path) -> int:
    """The checkpoint's step if every file matches the manifest; CheckpointError naming the first problem otherwise."""
    directory = Path(directory)
    manifest_file = directory / MANIFEST
    if not manifest_file.is_file():
        raise CheckpointError(f"{directory}: no {MANIFEST} (not a training checkpoint, or an interrupted write)")
    try:
        manifest = json.loads(manifest_file.read_text())
        files, step = manifest["files"], int(manifest["step"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{manifest_file}: unreadable manifest ({e})") from None
    for name, meta in files.items():
        path = directory / name
        if not path.is_file():
            raise CheckpointError(f"{directory}: {name} is missing")
        size = path.stat().st_size
        if size != meta["size"]:
            raise CheckpointError(f"{directory}: {name} is truncated or altered ({size} bytes, expected {meta['size']})")
        if _sha256(path) != meta["sha256"]:
            raise CheckpointError(f"{directory}: {name} is corrupt (sha256 does not match the manifest)")
    return step


def latest_valid(run_dir: str | Path, report: Callable[[str], None] = print) -> Path | None:
    """The newest checkpoint that verifies; every newer one that fails is reported with its reason."""
    for _, path in reversed(list_checkpoints(run_dir)):
        try:
            verify(path)
            return path
        except CheckpointError as e:
            report(f"warning: skipping checkpoint {path.name}: {e}; falling back to an earlier one")
    return None


def resolve(run_dir: str | Path, resume: str | None, report: Callable[[str], None] = print) -> Path | None:
    """`--resume auto` (newest good checkpoint, or None for a fresh start) or an explicit checkpoint path."""
    if resume is None:
        return None
    if resume == "auto":
        return latest_valid(run_dir, report)
    path = Path(resume)
    if not path.is_dir():
        raise CheckpointError(f"--resume {resume}: no such checkpoint directory")
    verify(path)
    return path


def save(run_dir: str | Path, step: int, write_files: Callable[[Path], None], keep_last: int = 0) -> Path:
    """Write a checkpoint atomically: `write_files(tmp_dir)` fills it, the manifest seals it; then prune old ones."""
    target = step_dir(run_dir, step)
    with atomic_directory(target) as tmp:
        write_files(tmp)
        write_manifest(tmp, step)
    if keep_last > 0:
        for _, old in list_checkpoints(run_dir)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    return target


def remove_partial(run_dir: str | Path) -> None:
    """Delete temporary directories left by a process killed while it was writing a checkpoint."""
    root = checkpoints_root(run_dir)
    if root.is_dir():
        for p in root.glob(".step-*"):
            shutil.rmtree(p, ignore_errors=True)
