"""Atomic files and the job's checkpoint (its only state between steps)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from alrun.errors import AlrunError


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file and a rename: a kill never leaves half a file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise AlrunError(
            f"Cannot write {path} ({exc.strerror or exc}); earlier results in that folder are intact."
        ) from None


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Save the job state (labelled order, rows so far, config fingerprint) as JSON, atomically."""
    atomic_write_text(path, json.dumps(state, sort_keys=True))


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """The saved state, or None when there is none; a torn or corrupt file raises AlrunError."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text())
        if not isinstance(state, dict) or "labelled" not in state or "rows" not in state:
            raise ValueError("missing keys")
        return state
    except (ValueError, OSError) as exc:
        raise AlrunError(f"The checkpoint {path} is corrupt ({exc}); delete it to restart that job.") from None
