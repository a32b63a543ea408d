"""The pipe to the logger process: how much of it the logger has not read yet, and how long a wait for it
waits next (the training process never blocks on a logger that stopped reading)."""

from __future__ import annotations

import struct


def pipe_unread(fd: int) -> int | None:
    """The bytes written into pipe `fd` (either end) that its reader has not read yet; None where the system
    cannot tell (no FIONREAD)."""
    try:
        import fcntl
        import termios

        return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
    except (ImportError, OSError, ValueError, AttributeError):
        return None


def wait_step(elapsed: float, stalled: float, timeout: float, stall: float, poll: float) -> float:
    """How long a wait for the logger waits next, given the seconds it has waited (`elapsed`) and those the
    logger has taken nothing of its input that waited for it (`stalled`): at most `poll`, never past
    `timeout` nor past `stall` seconds of stall; 0 means stop waiting now."""
    if elapsed >= timeout or stalled >= stall:
        return 0.0
    return min(poll, timeout - elapsed, stall - stalled)
