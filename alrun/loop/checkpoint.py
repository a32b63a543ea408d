"""The job's checkpoint (its only state between steps), written with alrun.core.files.atomic_write_text.

The checkpoint also carries a checksum, and the one before it
is kept as ``checkpoint.prev.json``: a torn or corrupt newest checkpoint (a crashed node, a
disk that lost the last write) costs one step of recomputation, not the job.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from alrun.core.errors import AlrunError
from alrun.core.files import _fsync_dir, atomic_write_text  # noqa: F401 - where callers found them before

log = logging.getLogger("alrun")

CHECKPOINT_FORMAT = 1
PREVIOUS_SUFFIX = ".prev.json"  # checkpoint.json -> checkpoint.prev.json
CORRUPT_SUFFIX = ".corrupt.json"  # a corrupt checkpoint is moved aside under this name, for inspection


class CorruptCheckpoint(AlrunError):
    """A checkpoint file exists but cannot be trusted (torn, not JSON, wrong checksum or shape)."""


def remove_stale_temporaries(folder: Path) -> None:
    """Delete temporary files a killed writer left in `folder` (they are never read)."""
    for tmp in Path(folder).glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def previous_path(path: Path) -> Path:
    """Where the checkpoint before `path` is kept: checkpoint.json -> checkpoint.prev.json."""
    path = Path(path)
    return path.with_name(path.stem + PREVIOUS_SUFFIX)


def _digest(state: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Save the job state (labelled order, rows so far, config fingerprint) as checksummed JSON,
    atomically, keeping the previous checkpoint beside it."""
    # key order kept as given: the rows become steps.csv again on resume, columns in the same order
    text = json.dumps({"format": CHECKPOINT_FORMAT, "sha256": _digest(state), "state": state})
    atomic_write_text(path, text, keep_previous=previous_path(path))


def read_checkpoint(path: Path) -> dict[str, Any] | None:
    """The state saved in `path`, or None when there is no such file; raises CorruptCheckpoint
    when the file is torn, not JSON, fails its checksum or lacks the state's keys."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CorruptCheckpoint(f"cannot be read ({exc.strerror or exc})") from None
    try:
        outer = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise CorruptCheckpoint(f"is not valid JSON ({len(raw)} bytes, probably torn)") from None
    if not isinstance(outer, dict) or outer.get("format") != CHECKPOINT_FORMAT or "state" not in outer:
        raise CorruptCheckpoint("is not an alrun checkpoint of this version")
    state = outer["state"]
    if not isinstance(state, dict) or outer.get("sha256") != _digest(state):
        raise CorruptCheckpoint("fails its checksum")
    rows, labelled = state.get("rows"), state.get("labelled")
    if not isinstance(rows, list) or not isinstance(labelled, list) or not isinstance(state.get("fingerprint"), str):
        raise CorruptCheckpoint("lacks the labelled set, the rows or the config fingerprint")
    if [r.get("step") if isinstance(r, dict) else None for r in rows] != list(range(len(rows))):
        raise CorruptCheckpoint("holds rows that are not steps 0, 1, 2, ...")
    return state


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """The newest good state: `path`, else the previous checkpoint kept beside it, else None.

    A corrupt `path` is named in one sentence in the log and moved aside (``*.corrupt.json``),
    so the next save does not keep it as the previous checkpoint.
    """
    path = Path(path)
    prev = previous_path(path)
    try:
        state = read_checkpoint(path)
    except CorruptCheckpoint as exc:
        state = None
        try:
            fallback = read_checkpoint(prev)
        except CorruptCheckpoint:
            fallback = None
        where = (f"resuming from the previous checkpoint after step {len(fallback['rows']) - 1}"
                 if fallback is not None and fallback["rows"] else "restarting the job from step 0")
        log.warning("The checkpoint %s %s, so alrun is %s.", path, exc, where)
        try:
            os.replace(path, path.with_name(path.stem + CORRUPT_SUFFIX))
        except OSError:
            pass  # an unwritable folder stops the job at its next write, with its own sentence
        return fallback
    if state is not None:
        return state
    # killed between keeping the previous checkpoint and installing the new one
    try:
        return read_checkpoint(prev)
    except CorruptCheckpoint as exc:
        log.warning("The checkpoint %s %s, so alrun is restarting the job from step 0.", prev, exc)
        return None
