"""Experiment tracking: every sweep as an MLflow run tree (`tracker=mlflow`); nothing at all for `tracker=none`.

One MLflow experiment per study, one parent run per sweep folder and one child run per job. The core
(loop, training, report) never imports mlflow: the CLI hands each step's row to :class:`JobRun` and the
report callback hands the written report to :meth:`Tracker.log_report`.

Files that tie the folders to MLflow, so that concurrent and resumed jobs find their runs:

- ``<sweep>/mlflow_sweep.json``: the store's URI, the experiment and the parent run (written once, under a
  file lock, by whichever process comes first: the launching process at the start of a sweep);
- ``<job>/mlflow_run.json``: the job's run. A resumed job logs to that run, and only the steps MLflow does
  not hold yet (it asks MLflow for the run's metric history), so a SIGKILL never leaves a step twice.

MLflow itself (its import alone takes a second or two of CPU, and every sqlite commit waits on the disk)
runs in a logger process of its own, which each process that tracks starts once (`python -m alrun.tracking`)
and feeds with one JSON line per call: the training process only writes to a pipe. A job process of a
joblib or submitit sweep waits for its logger at the end of each job; the launching process (which runs the
jobs of the basic launcher) once, after the report. If the process is killed, the logger still logs what it
was sent and exits; the re-run waits for it (a lock in the job folder).

A tracker that cannot be opened at the start (mlflow missing, store unreachable) is a ConfigError (exit 2,
before any training). One that fails later warns once per logger process and is left alone from then on:
the job's files never depend on it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import math
import os
import re
import subprocess
import sys
import time
import traceback
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alrun.checkpoint import atomic_write_text
from alrun.errors import AlrunError, ConfigError
from alrun.filelock import exclusive

if TYPE_CHECKING:
    import pandas as pd

    from alrun.report import Report

log = logging.getLogger("alrun")

TRACKERS = ("none", "mlflow")
SWEEP_FILE = "mlflow_sweep.json"
JOB_FILE = "mlflow_run.json"
INSTALL = "pip install 'alrun[tracking]' (or pip install mlflow)"
REPORT_FILES = ("table.md", "table.csv", "curves.png", "summary.csv")
# the marker of a logged step: every step is logged in one batch, so one key's history names them all
STEP_MARKER = "test_nll"
_LOCKED_RETRIES = 5  # extra tries of a write that met "database is locked" (many jobs on one sqlite file)
# the logger process (tests swap it for one with faults armed)
WORKER_COMMAND = [sys.executable, "-m", "alrun.tracking"]


@dataclass(frozen=True)
class TrackerSettings:
    """The `tracker` config group: which tracker, and where its store lives."""

    name: str = "none"
    uri: str | None = None


def settings_from(cfg: dict[str, Any] | None) -> TrackerSettings:
    """Validate the composed `tracker` mapping (absent: tracker=none)."""
    cfg = dict(cfg or {})
    name = str(cfg.pop("name", "none"))
    if name not in TRACKERS:
        raise ConfigError(f"`tracker={name}` is not a tracker: use one of {', '.join(TRACKERS)}.")
    uri = cfg.pop("uri", None)
    if cfg:
        key = sorted(cfg)[0]
        raise ConfigError(f"`tracker.{key}` is not a known setting: use one of name, uri.")
    if name == "mlflow" and not uri:
        raise ConfigError("`tracker.uri` is empty: give the MLflow store, e.g. tracker.uri=sqlite:///results/mlflow.db "
                          "or tracker.uri=http://host:5000.")
    return TrackerSettings(name, str(uri) if uri else None)


def resolve_uri(uri: str, cwd: Path | None = None) -> str:
    """A relative sqlite path made absolute (jobs may run in another folder); other URIs unchanged."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/") and ":memory:" not in uri:
        path = Path(uri[len(prefix):])
        return prefix + str(((cwd or Path.cwd()) / path).resolve())
    return uri


def metric_key(name: str) -> str:
    """A name made valid as an MLflow metric key (alphanumerics, _ - . space / only)."""
    return re.sub(r"[^0-9A-Za-z_\-. /]+", "_", name).strip() or "metric"


def row_metrics(row: dict[str, Any]) -> dict[str, float]:
    """The numbers of one steps.csv row that MLflow gets (all but the step counter)."""
    return {k: float(v) for k, v in row.items()
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}


def last_line(exc: BaseException) -> str:
    """The line a traceback ends with (`RuntimeError: ...`), as in a failed job's error.txt."""
    return traceback.format_exception_only(type(exc), exc)[-1].strip()


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _git_commit() -> str | None:
    """alrun's own commit when it runs from a git checkout (not an installed wheel)."""
    root = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-toplevel", "HEAD"], capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.split()
    if out.returncode != 0 or len(lines) != 2 or Path(lines[0]).resolve() != root:
        return None  # no git, or alrun installed inside some other repository's tree
    return lines[1]


class JobRun:
    """One job's MLflow run: logs each step's row once, then ends the run. This base class does nothing
    (tracker=none, or a tracker that is gone)."""

    def on_step(self, row: dict[str, Any], total: int) -> None:
        """The loop's per-step callback (also called for the rows a resumed job replays)."""

    def finish(self, rows: pd.DataFrame | None = None, error: str | None = None) -> None:
        """End the run: FINISHED, or FAILED with `error` (the error's last line)."""

    def close(self) -> None:
        """Let go of the job (its process went away) without ending the run."""


class Tracker:
    """tracker=none: every call does nothing."""

    enabled = False
    uri: str | None = None

    def start_sweep(self, folder: Path, study: str | None) -> None:
        """Create (or reopen) the sweep's parent run before the jobs start."""

    def job_run(self, job_dir: Path, sweep_dir: Path, study: str | None, settings: dict[str, Any],
                title: str, overrides: dict[str, str] | None = None) -> JobRun:
        """The job's run (new, or the one a killed attempt left)."""
        return JobRun()

    def log_report(self, folder: Path, report: Report | None, failed: list[str]) -> None:
        """Log the sweep's tables, plot and headline numbers to its parent run, and end it."""


def chain(*callbacks):
    """One step callback that calls each of `callbacks` in turn."""

    def on_step(row: dict[str, Any], total: int) -> None:
        for callback in callbacks:
            callback(row, total)

    return on_step


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
    return _OPEN[uri]


def check_store(uri: str) -> None:
    """One sentence (ConfigError) unless mlflow is installed and `uri` can be reached; cheap for the two
    usual stores (no mlflow import here): a server answers HTTP, a sqlite file's folder is writable."""
    try:
        found = importlib.util.find_spec("mlflow") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise ConfigError(f"tracker=mlflow needs the mlflow package, which is not installed: {INSTALL}.")
    advice = ("choose another tracker.uri (the embedded default: tracker.uri=sqlite:///results/mlflow.db), "
              "or tracker=none")
    if uri.startswith(("http://", "https://")):
        try:
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=10).close()
        except urllib.error.HTTPError:
            pass  # the server answered (an error page is an answer): reachable
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ConfigError(f"tracker.uri={uri} cannot be reached ({reason}); start that MLflow server or "
                              f"{advice}.") from None
    elif uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"tracker.uri={uri} cannot be created ({exc.strerror}); {advice}.") from None
        if not os.access(db.parent, os.W_OK) or (db.exists() and not os.access(db, os.W_OK)):
            raise ConfigError(f"tracker.uri={uri} is not writable; {advice}.")
    else:  # another database or a hosted service: only MLflow knows how to reach it
        MlflowTracker(uri)


def _jsonable(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else str(value)


class WorkerTracker(Tracker):
    """The training process's side: every call is a JSON line to the logger process (started on first use)."""

    enabled = True

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.proc: subprocess.Popen | None = None
        self.lost = False
        self.keys = 0
        # the launching process (it started the sweep's run) waits for its logger once, at the report; a
        # job process (joblib, submitit) waits at the end of each job, since it may exit right after
        self.launcher = False

    def _send(self, message: dict[str, Any]) -> bool:
        if self.lost:
            return False
        try:
            if self.proc is None:
                # the logger imports this same alrun, wherever it was imported from
                here = str(Path(__file__).resolve().parents[1])
                env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))}
                self.proc = subprocess.Popen(WORKER_COMMAND, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                             bufsize=1, env=env)
                command = " ".join(["alrun", *sys.argv[1:]])  # the logger's own argv is not the user's
                self.proc.stdin.write(json.dumps({"op": "open", "uri": self.uri, "command": command}) + "\n")
            self.proc.stdin.write(json.dumps(message, default=_jsonable) + "\n")
            self.proc.stdin.flush()
            return True
        except (OSError, ValueError) as exc:
            self._lose(exc)
            return False

    def _lose(self, exc: BaseException | None) -> None:
        if not self.lost:
            code = self.proc.poll() if self.proc is not None else None
            log.warning("alrun: warning: the MLflow logger process stopped (%s); the jobs go on and their files "
                        "are complete.", f"exit code {code}" if code is not None else exc)
        self.lost = True

    def wait(self) -> None:
        """Until the logger has handled every call sent so far."""
        if self._send({"op": "sync"}):
            if self.proc.stdout.readline() != "ok\n":
                self._lose(None)

    def close(self) -> None:
        """Let the logger finish and exit."""
        if self.proc is not None and not self.lost:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
            self.proc.wait()
        _OPEN.pop(self.uri, None)

    def start_sweep(self, folder: Path, study: str | None) -> None:
        self.launcher = True
        self._send({"op": "start_sweep", "folder": str(folder), "study": study})

    def job_run(self, job_dir: Path, sweep_dir: Path, study: str | None, settings: dict[str, Any],
                title: str, overrides: dict[str, str] | None = None) -> JobRun:
        self.keys += 1
        key = self.keys
        self._send({"op": "job_run", "key": key, "job_dir": str(job_dir), "sweep_dir": str(sweep_dir),
                    "study": study, "settings": settings, "title": title, "overrides": overrides or {}})
        return WorkerJobRun(self, key)

    def log_report(self, folder: Path, report: Report | None, failed: list[str]) -> None:
        try:
            metrics = headline_metrics(report) if report is not None else []
        except Exception as exc:  # noqa: BLE001 - the report's files are written; the numbers are a bonus
            log.warning("alrun: warning: the report's headline numbers were not logged to MLflow (%s).",
                        last_line(exc))
            metrics = []
        self._send({"op": "report", "folder": str(folder), "metrics": metrics, "failed": failed})
        self.close()


class WorkerJobRun(JobRun):
    """A job's run, as seen from the training process."""

    def __init__(self, tracker: WorkerTracker, key: int) -> None:
        self.tracker, self.key = tracker, key

    def on_step(self, row: dict[str, Any], total: int) -> None:
        self.tracker._send({"op": "step", "key": self.key, "row": row})

    def finish(self, rows: pd.DataFrame | None = None, error: str | None = None) -> None:
        records = rows.to_dict("records") if rows is not None else None
        self.tracker._send({"op": "finish", "key": self.key, "rows": records, "error": error})
        if not self.tracker.launcher:
            self.tracker.wait()  # the job's run is complete in MLflow before its process may exit


def serve() -> None:
    """The logger process: apply each JSON line of stdin to MLflow; answer `sync` on stdout."""
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
                                 message["study"])
            elif op == "job_run":
                key = message.pop("key")
                runs[key] = tracker.job_run(Path(message.pop("job_dir")), Path(message.pop("sweep_dir")),
                                            **message)
            elif op == "step":
                runs[message["key"]].on_step(message["row"], 0)
            elif op == "finish":
                runs.pop(message["key"]).finish(message["rows"], message["error"])
            elif op == "report":
                tracker.log_report(Path(message["folder"]), message["metrics"], message["failed"])
            elif op == "sync":
                reply.write("ok\n")
        except Exception as exc:  # noqa: BLE001 - a logger bug must not take the jobs down
            if isinstance(tracker, MlflowTracker):
                tracker.call(f"handling {op}", _raise, exc)
            else:
                log.warning("alrun: warning: MLflow logging failed (%s).", last_line(exc))
    for run in runs.values():  # the training process went away (killed): its runs stay RUNNING, resumable
        run.close()


def _raise(exc: BaseException) -> None:
    raise exc


class MlflowTracker(Tracker):
    """Logs to an MLflow tracking store: a sqlite file (the embedded default) or a tracking server."""

    enabled = True

    def __init__(self, uri: str, command: str | None = None) -> None:
        self.command = command or " ".join(["alrun", *sys.argv[1:]])
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise ConfigError(f"tracker=mlflow needs the mlflow package, which is not installed: {INSTALL}.") from None
        for name in ("mlflow", "alembic"):  # schema set-up and store notes would fill every job's log
            logging.getLogger(name).setLevel(logging.WARNING)
        logging.getLogger("urllib3").setLevel(logging.ERROR)  # each retry to a server that is gone: we warn once
        self.uri = uri
        self.broken = False
        self.is_http = uri.startswith(("http://", "https://"))
        if self.is_http:
            # MLflow retries a failed request 7 times with growing waits (minutes): a server that is gone
            # would stall every job that long before it warns. The user's own settings win.
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
        try:
            with self._store_lock():  # two jobs creating a fresh sqlite store's tables at once would collide
                self.client = MlflowClient(tracking_uri=uri)
                self._probe()
        except Exception as exc:  # noqa: BLE001 - whatever MLflow raises, the user gets one sentence
            raise ConfigError(
                f"tracker.uri={uri} cannot be reached ({last_line(exc)[:300]}); start that MLflow server or "
                "choose another tracker.uri (the embedded default: tracker.uri=sqlite:///results/mlflow.db), "
                "or tracker=none."
            ) from None

    # ------------------------------------------------------------------------------------------ plumbing

    def _sqlite_path(self) -> Path | None:
        return Path(self.uri[len("sqlite:///"):]) if self.uri.startswith("sqlite:///") else None

    def _store_lock(self):
        path = self._sqlite_path()
        if path is None:
            import contextlib

            return contextlib.nullcontext()
        return exclusive(path.with_name(path.name + ".lock"), "the MLflow store's tables")

    def _probe(self) -> None:
        """Touch the store once; against a server, fail fast rather than after MLflow's retries."""
        if not self.is_http:
            self.client.search_experiments(max_results=1)
            return
        saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
        os.environ.update({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"})
        try:
            self.client.search_experiments(max_results=1)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def call(self, what: str, fn, *args, **kwargs) -> Any:
        """`fn(*args)` against the store; None, and one warning per process, once the store fails."""
        if self.broken:
            return None
        for attempt in range(_LOCKED_RETRIES + 1):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - tracking must never stop a job
                if "database is locked" in str(exc) and attempt < _LOCKED_RETRIES:
                    time.sleep(0.5 * (attempt + 1))  # sqlite already waited 20 s (busy_timeout): try again
                    continue
                self.broken = True
                log.warning("alrun: warning: MLflow tracking at %s stopped while %s (%s); the jobs go on "
                            "and their files are complete.", self.uri, what, last_line(exc)[:300])
                return None
        return None

    def _experiment_id(self, study: str | None) -> str:
        """The experiment named after the study, created on first use (beside the store for sqlite)."""
        from mlflow.exceptions import MlflowException

        name = study or "alrun"
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                self.client.restore_experiment(found.experiment_id)
            return found.experiment_id
        db = self._sqlite_path()
        location = (db.parent / "mlartifacts").resolve().as_uri() if db is not None else None
        try:
            return self.client.create_experiment(name, artifact_location=location)
        except MlflowException:  # another process created it meanwhile
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def _run_exists(self, run_id: str | None) -> bool:
        from mlflow.exceptions import MlflowException

        if not run_id:
            return False
        try:
            return self.client.get_run(run_id).info.lifecycle_stage == "active"
        except MlflowException:
            return False

    # ------------------------------------------------------------------------------------------ the sweep

    def _sweep(self, folder: Path, study: str | None) -> dict[str, Any]:
        """The sweep's {uri, experiment_id, run_id}: read from the sweep folder, or created there."""
        folder = Path(folder)
        path = folder / SWEEP_FILE
        with exclusive(folder / f".{SWEEP_FILE}.lock", "the sweep's MLflow run"):
            known = _read_json(path)
            if known and known.get("uri") == self.uri and self._run_exists(known.get("run_id")):
                return known
            import alrun

            experiment_id = self._experiment_id(study)
            tags = {"sweep_dir": str(folder.resolve()), "command": self.command,
                    "alrun_version": alrun.__version__, "study": str(study)}
            commit = _git_commit()
            if commit:
                tags["alrun_git_commit"] = tags["mlflow.source.git.commit"] = commit
            run = self.client.create_run(experiment_id, run_name=folder.name, tags=tags)
            known = {"uri": self.uri, "experiment_id": experiment_id, "run_id": run.info.run_id}
            atomic_write_text(path, json.dumps(known, indent=2))
            return known

    def start_sweep(self, folder: Path, study: str | None) -> None:
        try:
            known = self._sweep(folder, study)
            self.client.update_run(known["run_id"], status="RUNNING")  # a re-run sweep is running again
        except AlrunError:
            raise
        except Exception as exc:  # noqa: BLE001 - one sentence before any job
            raise ConfigError(f"tracker.uri={self.uri} did not take the sweep's run ({last_line(exc)[:300]}); "
                              "check that store, or run with tracker=none.") from None

    def job_run(self, job_dir: Path, sweep_dir: Path, study: str | None, settings: dict[str, Any],
                title: str, overrides: dict[str, str] | None = None) -> JobRun:
        def open_run() -> JobRun:
            sweep = _read_json(Path(sweep_dir) / SWEEP_FILE)
            if not sweep or sweep.get("uri") != self.uri:  # a single run, or callbacks left out
                sweep = self._sweep(Path(sweep_dir), study)
            return MlflowJobRun.open(self, Path(job_dir), sweep, settings, title, overrides or {})

        return self.call("opening the job's run", open_run) or JobRun()

    def log_report(self, folder: Path, metrics: list, failed: list[str]) -> None:  # type: ignore[override]
        """In the logger: the report's files and `metrics` ((key, value, step) of headline_metrics) to the parent."""
        known = _read_json(Path(folder) / SWEEP_FILE)
        if not known or known.get("uri") != self.uri:
            return
        run_id = known["run_id"]
        for name in REPORT_FILES:
            if (Path(folder) / name).exists():
                self.call(f"logging {name}", self.client.log_artifact, run_id, str(Path(folder) / name))
        if metrics:
            self.call("logging the headline numbers", self._log_batch, run_id, metrics)
        self.call("ending the sweep's run", self.client.set_tag, run_id, "failed_jobs", str(len(failed)))
        self.call("ending the sweep's run", self.client.set_terminated, run_id, "FAILED" if failed else "FINISHED")

    def _log_batch(self, run_id: str, metrics: list[tuple[str, float, int]]) -> bool:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        entities = [Metric(metric_key(k), v, now, int(step)) for k, v, step in metrics]
        for start in range(0, len(entities), 1000):  # MLflow takes at most 1000 metrics per batch
            self.client.log_batch(run_id, metrics=entities[start:start + 1000])
        return True


class MlflowJobRun(JobRun):
    """A job's child run under the sweep's parent run."""

    def __init__(self, tracker: MlflowTracker, run_id: str, job_dir: Path, logged: set[int],
                 lock: contextlib.ExitStack) -> None:
        self.tracker, self.run_id, self.job_dir, self.logged, self.lock = tracker, run_id, job_dir, logged, lock

    @classmethod
    def open(cls, tracker: MlflowTracker, job_dir: Path, sweep: dict[str, Any], settings: dict[str, Any],
             title: str, overrides: dict[str, str]) -> MlflowJobRun:
        """The run of `job_dir`: the one its mlflow_run.json names, else one tagged with its folder (a kill
        between creating the run and writing that file), else a new one with the job's settings as params."""
        from mlflow.entities import Param

        client, job_dir = tracker.client, job_dir.resolve()
        # held until the run is ended or this logger exits: the logger of a killed attempt may still be
        # logging what it was sent, and a re-run must see all of it before it asks what is logged
        lock = contextlib.ExitStack()
        lock.enter_context(exclusive(job_dir / f".{JOB_FILE}.lock",
                                     "its MLflow run (an earlier attempt's logger is still writing)"))
        known = _read_json(job_dir / JOB_FILE)
        run_id = known.get("run_id") if known and known.get("uri") == tracker.uri else None
        if not tracker._run_exists(run_id):
            quoted = str(job_dir).replace("'", "\\'")
            found = client.search_runs([sweep["experiment_id"]],
                                       filter_string=f"tags.job_dir = '{quoted}' and "
                                                     f"tags.mlflow.parentRunId = '{sweep['run_id']}'",
                                       max_results=1)
            run_id = found[0].info.run_id if found else None
        if run_id is None:
            tags = {"mlflow.parentRunId": sweep["run_id"], "job_dir": str(job_dir),
                    "overrides": " ".join(f"{k}={v}" for k, v in overrides.items())}
            run_id = client.create_run(sweep["experiment_id"], run_name=title, tags=tags).info.run_id
            client.log_batch(run_id, params=[Param(k, str(v)) for k, v in settings.items()])
        else:
            client.update_run(run_id, status="RUNNING")
            if "error" in client.get_run(run_id).data.tags:  # an earlier attempt failed; this one may not
                client.delete_tag(run_id, "error")
        atomic_write_text(job_dir / JOB_FILE, json.dumps({"uri": tracker.uri, "run_id": run_id}, indent=2))
        # what an earlier attempt logged: log_batch writes a step's metrics in one transaction
        logged = {int(m.step) for m in client.get_metric_history(run_id, STEP_MARKER)}
        return cls(tracker, run_id, job_dir, logged, lock)

    def _log_row(self, row: dict[str, Any]) -> None:
        step = int(row["labelled"])
        if step in self.logged:
            return
        metrics = [(k, v, step) for k, v in row_metrics(row).items()]
        if self.tracker.call(f"logging step {row.get('step')}", self.tracker._log_batch, self.run_id, metrics):
            self.logged.add(step)

    def on_step(self, row: dict[str, Any], total: int) -> None:
        self._log_row(row)

    def finish(self, rows: list[dict[str, Any]] | None = None, error: str | None = None) -> None:  # type: ignore[override]
        if rows is not None:  # a job found done at start replays nothing: log what MLflow lacks
            for row in rows:
                self._log_row(row)
        call, client = self.tracker.call, self.tracker.client
        steps = self.job_dir / "steps.csv"
        if steps.exists():
            call("logging steps.csv", client.log_artifact, self.run_id, str(steps))
        if error is not None:
            call("ending the job's run", client.set_tag, self.run_id, "error", error[:5000])
        call("ending the job's run", client.set_terminated, self.run_id, "FAILED" if error is not None else "FINISHED")
        self.close()

    def close(self) -> None:
        self.lock.close()


def headline_metrics(report: Report) -> list[tuple[str, float, int]]:
    """(key, value, step = labelled size) of the report's cells: the mean of each metric per group, and the
    active gain (NLL of random - NLL of bald, paired by seed) where the sweep has both."""
    from alrun.report import paired_gain

    def label(frame_row: Any, columns: list[str]) -> str:
        return " ".join(f"{c} {frame_row[c]}" for c in columns) if columns else "all"

    out: list[tuple[str, float, int]] = []
    groups = report.group_columns
    for _, cell in report.table.iterrows():
        if not math.isnan(float(cell["mean"])):
            out.append((f"{cell['metric']}/{label(cell, groups)}", float(cell["mean"]), int(cell["labelled"])))
    gain = paired_gain(report.summary, groups, report.sizes)
    others = [g for g in groups if g != "heuristic"]
    for _, cell in gain.iterrows():
        if not math.isnan(float(cell["mean"])):
            out.append((f"active_gain_nll/{label(cell, others)}", float(cell["mean"]), int(cell["labelled"])))
    return out


if __name__ == "__main__":
    serve()
    # every write above was committed when its call returned; skip the interpreter's teardown of MLflow's
    # modules (most of a second, which the launching process would wait for)
    sys.stderr.flush()
    os._exit(0)
