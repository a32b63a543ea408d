"""Experiment tracking: every sweep as an MLflow run tree (`tracker=mlflow`); nothing at all for `tracker=none`.

One MLflow experiment per study, one parent run per sweep folder and one child run per job. The core
(loop, training, report) never imports mlflow: the CLI hands each step's row to :class:`JobRun` and the
report callback hands the written report to :meth:`Tracker.log_report`. What MLflow gets (a job's params, the
report's metrics and tags, their keys) is built in alrun.track.values.

Files that tie the folders to MLflow, so that concurrent and resumed jobs find their runs:

- ``<sweep>/mlflow_sweep.json``: the store's URI, the experiment and the parent run (written once, under a
  file lock, by whichever process comes first: the launching process at the start of a sweep);
- ``<job>/mlflow_run.json``: the job's run. A resumed job logs to that run, and only the steps MLflow does
  not hold yet (it asks MLflow for the run's metric history), so a SIGKILL never leaves a step twice.

MLflow itself (its import alone takes a second or two of CPU, and every sqlite commit waits on the disk)
runs in a logger process of its own (alrun.track.mlflow_logger, the only module that imports mlflow), which each
process that tracks starts once and feeds with one JSON line per call: the training process only queues the
line, and a writer thread writes it to a pipe (see WorkerTracker: a full queue drops step rows, never waits).
A job process of a joblib or submitit sweep waits for its logger at the end of each job; the launching
process (which runs the jobs of the basic launcher) once, after the report; each at most WAIT_TIMEOUT, and no longer
once the logger is stuck (it has read nothing at all for START_TIMEOUT, or, once step rows were dropped, nothing
of what waits for it for STALL_TIMEOUT). If the
process is killed, the logger still logs what it was sent and exits; the re-run waits for it (a lock in the
job folder).

A tracker that cannot be opened at the start (mlflow missing, store unreachable) is a ConfigError (exit 2,
before any training). A store call that fails later is retried; a store that keeps failing makes the logger
warn once, end its runs FAILED and exit (alrun.track.mlflow_logger); the job's files never depend on it.
"""

from __future__ import annotations

import collections
import contextlib
import importlib.util
import json
import logging
import math
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alrun.track.base import (  # noqa: F401 - the interface, re-exported where callers found it
    GAVE_UP,
    INSTALL,
    JOB_FILE,
    REPORT_FILES,
    SWEEP_FILE,
    TRACKERS,
    JobRun,
    Tracker,
    TrackerSettings,
    _read_json,
    chain,
    last_line,
    resolve_uri,
    row_metrics,
    settings_from,
)
from alrun.track.pipe import pipe_unread, wait_step  # noqa: F401 - also here
from alrun.track.store_check import NETWORK_FILESYSTEMS, check_store, network_mount  # noqa: F401 - also here
from alrun.track.values import headline_metrics, verdict_metrics, verdict_tags
from alrun.track.values import metric_key as metric_key  # where the logger process and older callers find it

if TYPE_CHECKING:
    import pandas as pd

    from alrun.report import Report

log = logging.getLogger("alrun")

# the logger process (tests swap it for one with faults armed)
WORKER_COMMAND = [sys.executable, "-m", "alrun.track.mlflow_logger"]
# step rows waiting for the writer thread: beyond this many (the logger is slow or stuck) a step's row is
# dropped, never waited for (the job's other messages, a few per job, are always queued)
QUEUE_SIZE = 1000
# how long a process waits for its logger to catch up (the end of a job, the end of a sweep) before it warns
# and goes on without it
WAIT_TIMEOUT = 30.0
# a logger is stuck (a store that hangs, a sqlite file held locked) when it has read nothing at all since it
# started for START_TIMEOUT (it reads its first lines a fraction of a second after it starts: its long pauses,
# importing mlflow and opening the store, come after), or when step rows were dropped (it is far behind) and it
# has read nothing of what waits in its pipe for STALL_TIMEOUT; a wait then stops at once instead of running to
# WAIT_TIMEOUT. Any other logger, however slow (it reads its input some KB at a time, and one message may take
# seconds on a busy machine), gets the whole WAIT_TIMEOUT to catch up.
START_TIMEOUT = 5.0
STALL_TIMEOUT = 10.0
WAIT_POLL = 0.5  # how often a wait looks whether the logger still reads


def log_to_recorded_store(folder: Path, report: Report) -> None:
    """A report written again outside a sweep (`python -m alrun.report FOLDER`) to the parent run that the
    folder's mlflow_sweep.json names, each number once (see MlflowTracker.log_report); nothing for a folder
    that was not tracked, one warning when mlflow is not installed here."""
    recorded = _read_json(Path(folder) / SWEEP_FILE)
    if not recorded or not recorded.get("uri"):
        return
    if importlib.util.find_spec("mlflow") is None:
        log.warning("alrun: warning: %s was tracked in MLflow, but mlflow is not installed here: the report was "
                    "not logged to it (%s).", folder, INSTALL)
        return
    WorkerTracker(str(recorded["uri"])).log_report(Path(folder), report, report.failed_jobs)


_OPEN: dict[str, Tracker] = {}


def open_tracker(cfg: dict[str, Any] | None, strict: bool = True, sweep_dir: Path | None = None) -> Tracker:
    """The tracker of the `tracker` config mapping, opened once per process.

    `strict` (the launching process, before any job): mlflow must be installed and the store reachable,
    else ConfigError. A job passes its `sweep_dir`: the store the launching process recorded there wins
    over the job's own reading of tracker.uri (a relative path, or an environment variable, may read
    differently on another host). A store that fails in a job only makes its logger warn.
    """
    settings = settings_from(cfg)
    if settings.name == "none":
        return Tracker()
    uri = resolve_uri(settings.uri or "")
    recorded = _read_json(Path(sweep_dir) / SWEEP_FILE) if sweep_dir is not None else None
    if recorded and recorded.get("uri"):
        uri = str(recorded["uri"])
    if strict:
        check_store(uri)
    if uri not in _OPEN:
        _OPEN[uri] = WorkerTracker(uri)
    _OPEN[uri].experiment = settings.experiment  # this config's: one process runs one sweep
    return _OPEN[uri]


def _jsonable(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else str(value)


class WorkerTracker(Tracker):
    """The training process's side: every call is a JSON line to the logger process (started on first use).

    A call never waits for the logger: its line goes to a queue that a writer thread (a daemon) drains into
    the logger's pipe. When QUEUE_SIZE step rows are waiting (a logger stuck on a locked sqlite file, a slow
    server), further step rows are dropped: one warning per job, and the job's `finish` tells the logger how
    many (a job that ends normally sends all its rows again with it; see MlflowJobRun.finish). `wait` and
    `close` give up after WAIT_TIMEOUT seconds, or as soon as the logger is stuck (:meth:`stall_limit`), with
    one warning, and the process goes on without it.
    `clock` (seconds, monotonic) is time.monotonic but in tests.
    """

    enabled = True

    def __init__(self, uri: str, clock=time.monotonic) -> None:
        self.uri = uri
        self.experiment: str | None = None  # tracker.experiment (None: the study's name)
        self.clock = clock
        self.proc: subprocess.Popen | None = None
        self.lost = False
        self.keys = 0
        # the launching process (it started the sweep's run) waits for its logger once, at the report; a
        # job process (joblib, submitit) waits at the end of each job, since it may exit right after
        self.launcher = False
        self._queue: collections.deque[tuple[str | None, bool]] = collections.deque()
        self._ready = threading.Condition()
        self._steps_queued = 0
        self._writer: threading.Thread | None = None
        self.dropped: dict[int | None, int] = {}  # step rows dropped, per job key
        self._warned: set[int | None] = set()  # the jobs told that the logger is behind
        # what the logger has read of its pipe: bytes written by the writer thread, bytes read at the last look,
        # and when it was last seen reading (or with nothing to read)
        self._looking = threading.Lock()
        self._written = 0
        self._taken = 0
        self._read_at = clock()

    def _start(self) -> None:
        # the logger imports this same alrun, wherever it was imported from
        here = str(Path(__file__).resolve().parents[2])  # the folder that holds the alrun package
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))}
        self.proc = subprocess.Popen(WORKER_COMMAND, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     bufsize=1, env=env)
        self._writer = threading.Thread(target=self._write, name="alrun-mlflow-writer", daemon=True)
        self._writer.start()
        # the logger's own argv is not the user's; alrun adds --multirun to its own argv: the command as typed
        command = os.environ.get("ALRUN_COMMAND") or " ".join(["alrun", *sys.argv[1:]])
        self._enqueue(json.dumps({"op": "open", "uri": self.uri, "command": command}) + "\n", False)

    def _enqueue(self, line: str | None, step: bool) -> bool:
        """Queue one line (None: close the pipe once the queue is written); False when a step row is dropped."""
        with self._ready:
            if step and self._steps_queued >= QUEUE_SIZE:
                return False
            self._queue.append((line, step))
            self._steps_queued += step
            self._ready.notify()
        return True

    def _write(self) -> None:
        """The writer thread: the queue into the logger's pipe (a full pipe blocks this thread, not training)."""
        while True:
            with self._ready:
                while not self._queue:
                    self._ready.wait()
                line, step = self._queue.popleft()
                self._steps_queued -= step
            try:
                if line is None:
                    with self._looking:  # not while stalled_for looks at it
                        self.proc.stdin.close()
                    return
                # unbuffered writes: a buffered file's lock, held by this thread in a blocked write, would
                # stop the interpreter's shutdown when the process exits with the logger stuck; a page at a
                # time (a write of at most PIPE_BUF is all or nothing) so that the bytes written are known
                # while a write blocks, and so what the logger has read (stalled_for)
                data = memoryview(line.encode())
                fd = self.proc.stdin.fileno()
                while data:
                    self.stalled_for()  # an empty pipe restarts the stall clock before this page goes in
                    written = os.write(fd, data[: select.PIPE_BUF])
                    with self._looking:
                        self._written += written
                    data = data[written:]
            except (OSError, ValueError) as exc:
                self._lose(exc)
                return

    def _send(self, message: dict[str, Any]) -> bool:
        if self.lost:
            return False
        try:
            if self.proc is None:
                self._start()
        except (OSError, ValueError) as exc:
            self._lose(exc)
            return False
        step = message.get("op") == "step"
        if self._enqueue(json.dumps(message, default=_jsonable) + "\n", step):
            return True
        key = message.get("key")
        self.dropped[key] = self.dropped.get(key, 0) + 1
        self._behind(key, f"more than {QUEUE_SIZE} step rows are waiting for it")
        return False

    def _behind(self, key: int | None, why: str) -> None:
        """One warning per job that the logger fell behind."""
        if key in self._warned:
            return
        self._warned.add(key)
        log.warning("alrun: warning: the MLflow logger is behind, on a slow or locked store (%s): training goes "
                    "on without waiting for it, the job's files are complete, and its run in MLflow may be "
                    "incomplete.", why)

    def _lose(self, exc: BaseException | None) -> None:
        if not self.lost:
            self.lost = True
            code = None
            if self.proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    code = self.proc.wait(timeout=5)  # reaped: no zombie
            if code != GAVE_UP:  # a logger that gave up has said why
                log.warning("alrun: warning: the MLflow logger process stopped (%s); the jobs go on and their "
                            "files are complete.", f"exit code {code}" if code is not None else exc)
        self.lost = True

    def stalled_for(self) -> float:
        """Seconds since the logger last read from its pipe while bytes waited there for it: 0 while it reads,
        or has nothing to read, or where the system cannot tell (then a wait runs to WAIT_TIMEOUT)."""
        with self._looking:
            now = self.clock()
            try:
                unread = pipe_unread(self.proc.stdin.fileno())
            except (AttributeError, ValueError, OSError):  # not started, or its input closed
                unread = None
            if unread is None:
                return 0.0
            taken = self._written - unread
            if unread == 0 or taken > self._taken:
                self._taken, self._read_at = taken, now
            return now - self._read_at

    def stall_limit(self) -> float:
        """The stall (:meth:`stalled_for`) after which the logger counts as stuck: START_TIMEOUT while it has read
        nothing at all (as of the last look), STALL_TIMEOUT once step rows were dropped, else never (inf)."""
        if not self._taken:
            return START_TIMEOUT
        return STALL_TIMEOUT if any(self.dropped.values()) else math.inf

    def _await(self, done) -> str | None:
        """Call `done(seconds)` (True once what is awaited happened, else after waiting at most `seconds`) until
        it is True: None; or the reason to give up, after WAIT_TIMEOUT seconds or once the logger is stuck
        (:meth:`stalled_for` reaches :meth:`stall_limit`; at once when it already has)."""
        start = self.clock()
        while True:
            elapsed, stalled = self.clock() - start, self.stalled_for()
            limit = self.stall_limit()
            step = wait_step(elapsed, stalled, WAIT_TIMEOUT, limit, WAIT_POLL)
            if step <= 0:
                if stalled >= limit:
                    return f"it has read nothing sent to it for {stalled:.0f} s"
                return f"it did not catch up within {WAIT_TIMEOUT:g} s"
            if done(step):
                return None

    def wait(self, key: int | None = None) -> None:
        """Until the logger has handled every call sent so far, at most WAIT_TIMEOUT seconds and not at all once
        it is stuck (see :meth:`_await`; then one warning, and this process stops sending to its logger)."""
        if not self._send({"op": "sync"}):
            return
        why = self._await(lambda seconds: bool(select.select([self.proc.stdout], [], [], seconds)[0]))
        if why is not None:
            self.lost = True
            self._behind(key if key is not None else (self.keys or None),
                         f"{why}, and this process stops sending to it")
            return
        if self.proc.stdout.readline() != "ok\n":
            self._lose(None)

    def _exited(self, seconds: float) -> bool:
        try:
            self.proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return False
        return True

    def close(self) -> None:
        """Let the logger finish and exit (waiting as :meth:`wait` does: a logger still busy then goes on
        writing what it was sent, on its own, and exits at the end of its input)."""
        if self.proc is not None and not self.lost:
            self.wait()  # first its answer to all sent so far, while its pipe still shows whether it reads
        if self.proc is not None and not self.lost:
            self._enqueue(None, False)
            why = self._await(self._exited)
            if why is not None:
                self.lost = True
                self._behind(self.keys or None, f"{why}; alrun returns and the logger (pid {self.proc.pid}) goes "
                             "on with what it was sent")
        elif self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=0.1)  # reap a logger that has exited
        _OPEN.pop(self.uri, None)

    def start_sweep(self, folder: Path, study: str | None) -> None:
        self.launcher = True
        self._send({"op": "start_sweep", "folder": str(folder), "study": study, "experiment": self.experiment})

    def job_run(self, job_dir: Path, sweep_dir: Path, study: str | None, settings: dict[str, Any],
                title: str, overrides: dict[str, str] | None = None) -> JobRun:
        self.keys += 1
        key = self.keys
        self._send({"op": "job_run", "key": key, "job_dir": str(job_dir), "sweep_dir": str(sweep_dir),
                    "study": study, "settings": settings, "title": title, "overrides": overrides or {},
                    "experiment": self.experiment})
        return WorkerJobRun(self, key)

    def log_report(self, folder: Path, report: Report | None, failed: list[str]) -> None:
        metrics: list[tuple[str, float, int]] = []
        tags: dict[str, str] = {}
        try:
            if report is not None:
                metrics = headline_metrics(report) + verdict_metrics(report)
                tags = verdict_tags(report)
        except Exception as exc:  # noqa: BLE001 - the report's files are written; the numbers are a bonus
            log.warning("alrun: warning: the report's headline numbers were not logged to MLflow (%s).",
                        last_line(exc))
        self._send({"op": "report", "folder": str(folder), "metrics": metrics, "tags": tags, "failed": failed})
        self.close()


    def stop_sweep(self, folder: Path, reason: str) -> None:
        self._send({"op": "stop_sweep", "folder": str(folder), "reason": reason})
        self.close()  # the process exits next: the parent run is ended in MLflow first


class WorkerJobRun(JobRun):
    """A job's run, as seen from the training process."""

    def __init__(self, tracker: WorkerTracker, key: int) -> None:
        self.tracker, self.key = tracker, key

    def on_step(self, row: dict[str, Any], total: int) -> None:
        self.tracker._send({"op": "step", "key": self.key, "row": row})

    def finish(self, rows: pd.DataFrame | None = None, error: str | None = None) -> None:
        records = rows.to_dict("records") if rows is not None else None
        self.tracker._send({"op": "finish", "key": self.key, "rows": records, "error": error,
                            "dropped": self.tracker.dropped.get(self.key, 0)})
        if not self.tracker.launcher:
            self.tracker.wait(self.key)  # the job's run is complete in MLflow before its process may exit
