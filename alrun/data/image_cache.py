"""A cache of decoded image arrays, so that a folder of thousands of image files is decoded once.

One cache file (an uncompressed .npz) holds the uint8 arrays decoded from one selection of files at one
image size, and a key: the SHA-256 of every file's path (relative to the data folder), byte size and
modification time, in order, plus the settings that shape the arrays (image size, class names). A file
added, removed, replaced or touched, or another image size, gives another key, and the images are decoded
again. Files are written under a temporary name and renamed, so parallel jobs and kills leave no half file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from alrun.core.filelock import exclusive

CACHE_FOLDER = ".alrun_cache"
FORMAT_VERSION = 1


def files_key(root: Path, groups: Sequence[Sequence[str]], settings: str) -> str:
    """SHA-256 hex of `settings` and, per group (e.g. train files, then test files), every file's
    relative path, size and mtime in the order given."""
    digest = hashlib.sha256(f"alrun-image-cache/{FORMAT_VERSION}/{settings}".encode())
    prefix = os.path.join(str(root), "")
    for group in groups:
        digest.update(b"\0group\n")
        for path in group:
            stat = os.stat(path)
            # a prefix cut, not os.path.relpath, which costs seconds on 60,000 paths
            rel = path[len(prefix):] if path.startswith(prefix) else os.path.relpath(path, root)
            digest.update(f"{rel}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def cache_dirs(root: Path, fallback: str | Path | None) -> list[Path]:
    """Where a cache may live, in order: beside the data (`root/.alrun_cache`), then a folder for this
    data set under `fallback` (used when the data folder is not writable)."""
    dirs = [root / CACHE_FOLDER]
    if fallback is not None:
        tag = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:8]
        dirs.append(Path(fallback).expanduser() / f"{root.resolve().name}-{tag}")
    return dirs


def read_cache(dirs: Sequence[Path], filename: str, key: str) -> tuple[dict[str, np.ndarray], Path] | None:
    """The arrays of the first cache file named `filename` whose key matches, and its path; else None.

    A file that cannot be read (for example cut short) counts as a miss and is rebuilt.
    """
    for folder in dirs:
        path = folder / filename
        if not path.is_file():
            continue
        try:
            with np.load(path, allow_pickle=False) as f:
                if str(f["key"]) != key:
                    continue
                return {name: f[name] for name in f.files if name != "key"}, path
        except Exception:  # a damaged cache is only a miss
            continue
    return None


def write_cache(dirs: Sequence[Path], filename: str, key: str, arrays: dict[str, np.ndarray]) -> Path | None:
    """Write `arrays` and `key` to the first writable folder of `dirs`; the path written, or None."""
    for folder in dirs:
        tmp = None
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{filename}.", suffix=".tmp", delete=False) as f:
                tmp = Path(f.name)
                np.savez(f, key=np.array(key), **arrays)
            os.replace(tmp, folder / filename)
            return folder / filename
        except OSError:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
    return None


def cache_lock(dirs: Sequence[Path], filename: str) -> contextlib.AbstractContextManager[bool]:
    """An exclusive lock for building `filename`, held in the first folder of `dirs` that is writable: the
    jobs of a sweep that start together decode the images once and the others read the cache."""
    for folder in dirs:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(folder, os.W_OK):
            return exclusive(folder / f".{filename}.lock", "decoded images")
    return contextlib.nullcontext(False)
