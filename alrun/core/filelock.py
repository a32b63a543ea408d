"""An exclusive advisory lock around computing a cached result, so that parallel jobs compute it once.

The jobs of a sweep start together on a cold cache: without a lock each would extract the same features
(minutes on a CPU) and write the same file. With it the first computes while the others wait, then they
read its cache. The lock is `flock` on a small file beside the cache: the kernel releases it when the
holder exits or is killed, so a crash never leaves a stale lock.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("alrun")


def _open_lock_file(lock_path: Path) -> int | None:
    """A descriptor on `lock_path` to `flock`, or None where locks are not available here (no `fcntl`,
    as on Windows, or a lock file that cannot be created, as in a read-only folder)."""
    try:
        import fcntl  # noqa: F401
    except ImportError:
        return None
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except PermissionError:  # another user's lock file (a machine's shared GPU locks): flock needs no write access
        try:
            return os.open(lock_path, os.O_RDONLY)
        except OSError:
            return None
    except OSError:
        return None


@contextlib.contextmanager
def exclusive(lock_path: Path, what: str) -> Iterator[bool]:
    """Hold an exclusive lock on `lock_path` for the block; yields whether it is held.

    Where the lock file cannot be created (a read-only folder) or the platform has no `fcntl`, the block
    runs unlocked: the caches are written atomically, so the cost is only a repeated computation.
    """
    fd = _open_lock_file(lock_path)
    if fd is None:
        yield False
        return
    import fcntl

    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another job computing %s (lock %s)", what, lock_path)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield True
    finally:
        os.close(fd)  # closing the descriptor releases the lock


@contextlib.contextmanager
def exclusive_nowait(lock_path: Path) -> Iterator[bool | None]:
    """One attempt, without waiting, at an exclusive lock on `lock_path`, held for the block.

    Yields True when this process now holds it, False when another holder has it (the block should
    leave at once), None when locks are not available here (no `fcntl`, or the lock file cannot be
    created): the caller decides how to go on unlocked.
    """
    fd = _open_lock_file(lock_path)
    if fd is None:
        yield None
        return
    import fcntl

    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing the descriptor releases the lock
