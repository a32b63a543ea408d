"""Experiment tracking: every sweep as an MLflow run tree (`tracker=mlflow`); nothing at all for `tracker=none`.

One MLflow experiment per study, one parent run per sweep folder and one child run per job. The core
(loop, training, report) never imports mlflow: the CLI hands each step's row to :class:`JobRun` and the
report callback hands the written report to :meth:`Tracker.log_report`.

Files that tie the folders to MLflow, so that concurrent and resumed jobs find their runs:

- ``<sweep>/mlflow_sweep.json``: the store's URI, the experiment and the parent run (written once, under a
  file lock, by whichever process comes first: the launching process at the start of a sweep);
- ``<job>/mlflow_run.json``: the job's run. A resumed job logs to that run, and only the steps MLflow does
  not hold yet (it asks MLflow for the run's metric history), so a SIGKILL never leaves a step twice.

A tracker that cannot be opened at the start (mlflow missing, store unreachable) is a ConfigError (exit 2,
before any training). One that fails later warns once per process and is left alone from then on: the
job's files never depend on it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import subprocess
import sys
import time
import traceback
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
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


class JobRun:
    """One job's MLflow run: logs each step's row once, then ends the run. This base class does nothing
    (tracker=none, or a tracker that is gone)."""

    def on_step(self, row: dict[str, Any], total: int) -> None:
        """The loop's per-step callback (also called for the rows a resumed job replays)."""

    def finish(self, rows: pd.DataFrame | None = None, error: str | None = None) -> None:
        """End the run: FINISHED, or FAILED with `error` (the error's last line)."""


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


def open_tracker(cfg: dict[str, Any] | None, strict: bool = True) -> Tracker:
    """The tracker of the `tracker` config mapping, opened once per process.

    `strict` (the launching process): a tracker that cannot be opened raises ConfigError. Otherwise (a
    job) it warns once and returns the tracker that does nothing, so the job still runs.
    """
    settings = settings_from(cfg)
    if settings.name == "none":
        return Tracker()
    uri = resolve_uri(settings.uri or "")
    if uri not in _OPEN:
        try:
            _OPEN[uri] = MlflowTracker(uri)
        except AlrunError as exc:
            if strict:
                raise
            log.warning("alrun: warning: %s The job goes on without tracking; its files are complete.", exc)
            _OPEN[uri] = Tracker()
    return _OPEN[uri]


class MlflowTracker(Tracker):
    """Logs to an MLflow tracking store: a sqlite file (the embedded default) or a tracking server."""

    enabled = True

    def __init__(self, uri: str) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise ConfigError(f"tracker=mlflow needs the mlflow package, which is not installed: {INSTALL}.") from None
        for name in ("mlflow", "alembic"):  # schema set-up and store notes would fill every job's log
            logging.getLogger(name).setLevel(logging.WARNING)
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
            tags = {"sweep_dir": str(folder.resolve()), "command": " ".join(["alrun", *sys.argv[1:]]),
                    "alrun_version": alrun.__version__, "study": str(study)}
            commit = _git_commit()
            if commit:
                tags["mlflow.source.git.commit"] = commit
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

    def log_report(self, folder: Path, report: Report | None, failed: list[str]) -> None:
        known = _read_json(Path(folder) / SWEEP_FILE)
        if not known or known.get("uri") != self.uri:
            return
        run_id = known["run_id"]
        for name in REPORT_FILES:
            if (Path(folder) / name).exists():
                self.call(f"logging {name}", self.client.log_artifact, run_id, str(Path(folder) / name))
        if report is not None:
            self.call("logging the headline numbers", self._log_batch, run_id, headline_metrics(report))
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

    def __init__(self, tracker: MlflowTracker, run_id: str, job_dir: Path, logged: set[int]) -> None:
        self.tracker, self.run_id, self.job_dir, self.logged = tracker, run_id, job_dir, logged

    @classmethod
    def open(cls, tracker: MlflowTracker, job_dir: Path, sweep: dict[str, Any], settings: dict[str, Any],
             title: str, overrides: dict[str, str]) -> MlflowJobRun:
        """The run of `job_dir`: the one its mlflow_run.json names, else one tagged with its folder (a kill
        between creating the run and writing that file), else a new one with the job's settings as params."""
        from mlflow.entities import Param

        client, job_dir = tracker.client, job_dir.resolve()
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
        atomic_write_text(job_dir / JOB_FILE, json.dumps({"uri": tracker.uri, "run_id": run_id}, indent=2))
        # what an earlier attempt logged: log_batch writes a step's metrics in one transaction
        logged = {int(m.step) for m in client.get_metric_history(run_id, STEP_MARKER)}
        return cls(tracker, run_id, job_dir, logged)

    def _log_row(self, row: dict[str, Any]) -> None:
        step = int(row["labelled"])
        if step in self.logged:
            return
        metrics = [(k, v, step) for k, v in row_metrics(row).items()]
        if self.tracker.call(f"logging step {row.get('step')}", self.tracker._log_batch, self.run_id, metrics):
            self.logged.add(step)

    def on_step(self, row: dict[str, Any], total: int) -> None:
        self._log_row(row)

    def finish(self, rows: pd.DataFrame | None = None, error: str | None = None) -> None:
        if rows is not None:  # a job found done at start replays nothing: log what MLflow lacks
            for row in rows.to_dict("records"):
                self._log_row(row)
        call, client = self.tracker.call, self.tracker.client
        steps = self.job_dir / "steps.csv"
        if steps.exists():
            call("logging steps.csv", client.log_artifact, self.run_id, str(steps))
        if error is not None:
            call("ending the job's run", client.set_tag, self.run_id, "error", error[:5000])
        call("ending the job's run", client.set_terminated, self.run_id, "FAILED" if error is not None else "FINISHED")


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
