"""The tracker interface (what the CLI and the report callback call) and what the logger process shares with
it: settings, file names, the step row's metrics. Trackers do nothing here (tracker=none); alrun.track.tracker
has the MLflow worker. No mlflow import."""

from __future__ import annotations

import json
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alrun.core.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from alrun.report import Report

TRACKERS = ("none", "mlflow")
SWEEP_FILE = "mlflow_sweep.json"
JOB_FILE = "mlflow_run.json"
INSTALL = "pip install 'alrun[tracking]' (or pip install mlflow)"
REPORT_FILES = ("table.md", "table.csv", "curves.png", "summary.csv", "summary.csv.gz")
GAVE_UP = 3  # the logger's exit code when it gave up on its store (it warned, and ended its runs FAILED)


@dataclass(frozen=True)
class TrackerSettings:
    """The `tracker` config group: which tracker, and where its store lives."""

    name: str = "none"
    uri: str | None = None
    experiment: str | None = None  # the MLflow experiment the sweep's runs go in (None: named after the study)


def settings_from(cfg: dict[str, Any] | None) -> TrackerSettings:
    """Validate the composed `tracker` mapping (absent: tracker=none)."""
    cfg = dict(cfg or {})
    name = str(cfg.pop("name", "none"))
    if name not in TRACKERS:
        raise ConfigError(f"`tracker={name}` is not a tracker: use one of {', '.join(TRACKERS)}.")
    uri = cfg.pop("uri", None)
    experiment = cfg.pop("experiment", None)
    if cfg:
        key = sorted(cfg)[0]
        raise ConfigError(f"`tracker.{key}` is not a known setting: use one of name, uri, experiment.")
    if experiment is not None and not str(experiment).strip():
        raise ConfigError("`tracker.experiment` is empty: name the MLflow experiment, or leave it null (the study's "
                          "name).")
    if name == "mlflow" and not uri:
        raise ConfigError("`tracker.uri` is empty: give the MLflow store, e.g. tracker.uri=sqlite:///results/mlflow.db "
                          "or tracker.uri=http://host:5000.")
    return TrackerSettings(name, str(uri) if uri else None, str(experiment) if experiment is not None else None)


def resolve_uri(uri: str, cwd: Path | None = None) -> str:
    """A relative sqlite path made absolute (jobs may run in another folder); other URIs unchanged."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/") and ":memory:" not in uri:
        path = Path(uri[len(prefix):])
        return prefix + str(((cwd or Path.cwd()) / path).resolve())
    return uri


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

    def stop_sweep(self, folder: Path, reason: str) -> None:
        """End the sweep's parent run FAILED with `reason` (the sentence that stopped the whole sweep, exit 2)."""


def chain(*callbacks):
    """One step callback that calls each of `callbacks` in turn."""

    def on_step(row: dict[str, Any], total: int) -> None:
        for callback in callbacks:
            callback(row, total)

    return on_step
