"""Atomic files: every file goes to a temporary name first and is renamed over the target, so a kill (even
SIGKILL) never leaves half a file. A leaf: the loop's checkpoint, the report, trackers and launchers write with it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from alrun.core.errors import AlrunError


def _fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str | bytes, keep_previous: Path | None = None) -> None:
    """Write `text` (or bytes, as they are) to `path` through a temporary file and a rename: a kill never
    leaves half a file.

    With `keep_previous`, an existing `path` is first renamed to that name. A write that fails
    (full disk, read-only folder) raises AlrunError with one sentence and leaves every
    existing file as it was.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb" if isinstance(text, bytes) else "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            if keep_previous is not None and path.exists():
                os.replace(path, keep_previous)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)
    except OSError as exc:
        raise AlrunError(
            f"Cannot write {path} ({exc.strerror or exc}); earlier results in that folder are intact."
        ) from None
