"""MLflow's side of `tracker=mlflow`: the logger process that alrun.track.tracker starts and feeds.

`python -m alrun.track.mlflow_logger` reads one JSON line per call on stdin (see alrun.track.tracker.WorkerTracker)
and applies it to an MLflow store through MlflowClient (alrun.track.mlflow_store, retried by
alrun.track.mlflow_retry); it answers `sync` on stdout. Only this process imports mlflow.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from pathlib import Path

from alrun.core.errors import AlrunError
from alrun.track.base import (
    GAVE_UP,
    JobRun,
    Tracker,
    last_line,
)
from alrun.track.mlflow_retry import BACKOFF_MAX_S, BACKOFF_S, CALL_RETRIES, transient  # noqa: F401 - its API
from alrun.track.mlflow_store import MAX_FAILED_CALLS, STEP_MARKER, MlflowJobRun, MlflowTracker  # noqa: F401

log = logging.getLogger("alrun")


def serve() -> int:
    """The logger process: apply each JSON line of stdin to MLflow; answer `sync` on stdout. Returns the exit
    code: 0, or GAVE_UP when the store failed MAX_FAILED_CALLS calls in a row."""
    # a terminal's Ctrl-C reaches this process too: the training process decides (it ends the runs and exits),
    # and this one logs what it was sent until its input closes, without a traceback of its own
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    reply = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever MLflow prints goes to stderr, never into the replies
    sys.stdout = sys.stderr
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    tracker: Tracker = Tracker()
    runs: dict[int, JobRun] = {}
    for line in sys.stdin:
        message = json.loads(line)
        op = message.pop("op")
        try:
            if op == "open":
                try:
                    tracker = MlflowTracker(message["uri"], message.get("command"))
                except AlrunError as exc:
                    log.warning("alrun: warning: %s The jobs go on without tracking; their files are complete.",
                                exc)
            elif op == "start_sweep":
                if tracker.enabled:
                    tracker.call("opening the sweep's run", tracker.start_sweep, Path(message["folder"]),
                                 message["study"], message.get("experiment"))
            elif op == "job_run":
                key = message.pop("key")
                runs[key] = tracker.job_run(Path(message.pop("job_dir")), Path(message.pop("sweep_dir")),
                                            **message)
            elif op == "step":
                runs[message["key"]].on_step(message["row"], 0)
            elif op == "finish":
                runs.pop(message["key"]).finish(message["rows"], message["error"], message.get("dropped", 0))
            elif op == "report":
                tracker.log_report(Path(message["folder"]), message["metrics"], message["failed"],
                                   message.get("tags") or {})
            elif op == "stop_sweep":
                tracker.stop_sweep(Path(message["folder"]), message["reason"])
            elif op == "sync":
                reply.write("ok\n")
        except Exception as exc:  # noqa: BLE001 - a logger bug must not take the jobs down
            if isinstance(tracker, MlflowTracker):
                tracker.call(f"handling {op}", _raise, exc)
            else:
                log.warning("alrun: warning: MLflow logging failed (%s).", last_line(exc))
        if getattr(tracker, "broken", False):
            break  # it gave up, warned and ended its runs FAILED: the training process sees this process exit
    for run in runs.values():  # the training process went away (killed): its runs stay RUNNING, resumable
        run.close()
    return GAVE_UP if getattr(tracker, "broken", False) else 0


def _raise(exc: BaseException) -> None:
    raise exc


if __name__ == "__main__":
    code = serve()
    # every write above was committed when its call returned; skip the interpreter's teardown of MLflow's
    # modules (most of a second, which the launching process would wait for)
    sys.stderr.flush()
    os._exit(code)
