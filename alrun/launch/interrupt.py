"""Ctrl-C during a sweep: the report of what finished, one line, exit 130; a second Ctrl-C ends at once.

Every finished step is already on disk (steps.csv and the checkpoint are written after each step), so what an
interruption loses is only the step in progress; the same command (same `hydra.sweep.dir`) resumes after it.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from alrun.launch.sweep import LAUNCHED

EXIT_INTERRUPTED = 130  # the shell's own code for a process ended by SIGINT (128 + 2)


def _exit_at_once(signum: int, frame: object) -> None:
    os.write(2, b"alrun: interrupted again: exiting now\n")  # no print: this may run inside one
    os._exit(EXIT_INTERRUPTED)


def _first_interrupt(signum: int, frame: object) -> None:
    signal.signal(signal.SIGINT, _exit_at_once)  # before anything else runs: a quick second Ctrl-C is caught too
    raise KeyboardInterrupt


def catch_interrupts() -> None:
    """From now on the first Ctrl-C raises KeyboardInterrupt (for :func:`on_interrupt`), any later one ends the
    process at once."""
    signal.signal(signal.SIGINT, _first_interrupt)


def finished_steps(folder: Path | None) -> int:
    """The steps every job under `folder` has finished (rows of its steps.csv)."""
    if folder is None or not folder.is_dir():
        return 0
    total = 0
    for path in folder.rglob("steps.csv"):
        try:
            total += max(0, sum(1 for line in path.read_text().splitlines() if line.strip()) - 1)
        except OSError:
            continue  # unreadable: it is the report's to name
    return total


def resume_hint(argv: list[str], folder: Path | None) -> str:
    """How to resume: the same command when it names its folder, else that command with the folder added (a
    new timestamped folder would start over)."""
    if folder is None or any(a.lstrip("+").startswith(("hydra.sweep.dir=", "hydra.run.dir=")) for a in argv):
        return "the same command resumes"
    return f"the same command with hydra.sweep.dir={folder} resumes"


def write_partial_report(folder: Path | None) -> str:
    """Write the report of the finished steps; the words that say where it is ('' when none was written)."""
    if folder is None or not folder.is_dir():
        return ""
    from alrun.core.errors import AlrunError
    from alrun.report import write_report

    sizes = LAUNCHED.get("sizes")
    try:
        report = write_report(folder, list(sizes) if sizes else None, LAUNCHED.get("target"))
    except (AlrunError, ValueError, KeyError, OSError):
        return ""  # too little finished for a table (or a full disk): the steps themselves are kept
    return f" (the report of those: {folder / 'table.md'})" if report is not None else ""


def end_tracked_run(folder: Path, line: str) -> None:
    """With tracker=mlflow, end the sweep's parent run FAILED with the interruption's line (a re-run reopens it)."""
    from alrun.track.tracker import last_line, open_tracker

    try:
        open_tracker(LAUNCHED["tracker"], strict=False, sweep_dir=folder).stop_sweep(folder, line)
    except Exception as exc:  # noqa: BLE001 - the line and the exit code come first
        print(f"alrun: warning: the sweep's MLflow run was not ended ({last_line(exc)}).", file=sys.stderr)


def on_interrupt(argv: list[str]) -> None:
    """After a KeyboardInterrupt reached the entry point: from here a second Ctrl-C exits at once; the report of
    the finished steps is written, one line says how many and how to resume, and the process exits 130."""
    signal.signal(signal.SIGINT, _exit_at_once)  # already, unless catch_interrupts was not called
    folder = LAUNCHED.get("folder")
    where = write_partial_report(folder)
    n = finished_steps(folder)
    line = f"interrupted after {n} finished step{'s' if n != 1 else ''}; {resume_hint(argv, folder)}"
    if folder is not None and LAUNCHED.get("tracker"):
        end_tracked_run(folder, line)
    sys.stdout.flush()
    print(f"alrun: {line}{where}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_INTERRUPTED)
