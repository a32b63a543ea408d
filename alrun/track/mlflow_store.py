"""The MLflow runs of a sweep: the sweep's parent run, each job's child run, found again on resume.

How the runs are found again: the sweep's parent run is named in ``<sweep>/mlflow_sweep.json`` (created
once, under a file lock); a job's run in ``<job>/mlflow_run.json``, else found by its `job_dir` tag (a kill
between creating the run and recording it). A resumed job asks MLflow which steps the run holds (every step
is logged in one batch, so one key's history names them all) and logs only the others. Imported only by the
logger process (alrun.track.mlflow_logger), the one process of alrun that imports mlflow.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from alrun.core.errors import AlrunError, ConfigError
from alrun.core.filelock import exclusive
from alrun.core.files import atomic_write_text
from alrun.track.base import (
    INSTALL,
    JOB_FILE,
    REPORT_FILES,
    SWEEP_FILE,
    JobRun,
    Tracker,
    _read_json,
    last_line,
    row_metrics,
)
from alrun.track.mlflow_retry import Retrying
from alrun.track.values import job_params, metric_key

log = logging.getLogger("alrun")

STEP_MARKER = "test_nll"
# the logger gives up after this many failed calls in a row (each after its retries): it warns once, ends the
# runs it holds open FAILED with the reason (where the store still answers) and exits
MAX_FAILED_CALLS = 3


def _git_commit() -> str | None:
    """alrun's own commit when it runs from a git checkout (not an installed wheel)."""
    root = Path(__file__).resolve().parents[2]  # the checkout that holds the alrun package
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-toplevel", "HEAD"], capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.split()
    if out.returncode != 0 or len(lines) != 2 or Path(lines[0]).resolve() != root:
        return None  # no git, or alrun installed inside some other repository's tree
    return lines[1]


class MlflowTracker(Tracker):
    """Logs to an MLflow tracking store: a sqlite file (the embedded default) or a tracking server."""

    enabled = True

    def __init__(self, uri: str, command: str | None = None) -> None:
        self.command = command or os.environ.get("ALRUN_COMMAND") or " ".join(["alrun", *sys.argv[1:]])
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
                self.client = self.raw = MlflowClient(tracking_uri=uri)
                self._probe()
        except Exception as exc:  # noqa: BLE001 - whatever MLflow raises, the user gets one sentence
            raise ConfigError(
                f"tracker.uri={uri} cannot be reached ({last_line(exc)[:300]}); start that MLflow server or "
                "choose another tracker.uri (the embedded default: tracker.uri=sqlite:///results/mlflow.db), "
                "or tracker=none."
            ) from None
        self.client = Retrying(self.raw)
        self.failures: list[tuple[str, str]] = []  # the failed calls in a row: (what, the error's last line)
        self.open_runs: dict[str, str] = {}  # run id -> what it is, while this logger holds it open

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
        """`fn(*args)` against the store (its client calls retried, see CALL_RETRIES); None when it fails. After
        MAX_FAILED_CALLS failures in a row the logger gives up (one warning; see `give_up`); a shorter run of
        failures is one warning when the store answers again."""
        if self.broken:
            return None
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - tracking must never stop a job
            self.failures.append((what, last_line(exc)[:300]))
            if len(self.failures) >= MAX_FAILED_CALLS:
                self.give_up()
            return None
        if self.failures:
            first, reason = self.failures[0]
            log.warning("alrun: warning: MLflow logging at %s failed %d time(s), the first while %s (%s); it "
                        "answers again: what those calls carried is missing there.", self.uri, len(self.failures),
                        first, reason)
            self.failures = []
        return result

    def give_up(self) -> None:
        """Warn once, end every run this logger holds open FAILED with the reason (its `tracking_error` tag),
        each tried once (the store may be gone), and stop: `serve` exits with GAVE_UP."""
        self.broken = True
        what, reason = self.failures[0]
        log.warning("alrun: warning: MLflow tracking at %s stopped while %s (%s), after %d failed calls in a row; "
                    "the jobs go on and their files are complete.", self.uri, what, reason, len(self.failures))
        why = f"the MLflow logger gave up while {what}: {reason}"[:5000]
        for run_id in list(self.open_runs):
            with contextlib.suppress(Exception):
                self.raw.set_tag(run_id, "tracking_error", why)
                self.raw.set_terminated(run_id, "FAILED")
        self.open_runs.clear()

    def _experiment_id(self, study: str | None, experiment: str | None = None) -> str:
        """The experiment `tracker.experiment` names, else the one named after the study, created on first use
        (beside the store for sqlite)."""
        from mlflow.exceptions import MlflowException

        name = experiment or study or "alrun"
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

    def _sweep(self, folder: Path, study: str | None, experiment: str | None = None) -> dict[str, Any]:
        """The sweep's {uri, experiment_id, run_id}: read from the sweep folder, or created there."""
        folder = Path(folder)
        path = folder / SWEEP_FILE
        with exclusive(folder / f".{SWEEP_FILE}.lock", "the sweep's MLflow run"):
            known = _read_json(path)
            if known and known.get("uri") == self.uri and self._run_exists(known.get("run_id")):
                return known
            from alrun.core.version import __version__

            experiment_id = self._experiment_id(study, experiment)
            tags = {"sweep_dir": str(folder.resolve()), "command": self.command,
                    "alrun_version": __version__, "study": str(study)}
            commit = _git_commit()
            if commit:
                tags["alrun_git_commit"] = tags["mlflow.source.git.commit"] = commit
            run = self.client.create_run(experiment_id, run_name=folder.name, tags=tags)
            known = {"uri": self.uri, "experiment_id": experiment_id, "run_id": run.info.run_id}
            atomic_write_text(path, json.dumps(known, indent=2))
            return known

    def start_sweep(self, folder: Path, study: str | None, experiment: str | None = None) -> None:
        try:
            known = self._sweep(folder, study, experiment)
            self.client.update_run(known["run_id"], status="RUNNING")  # a re-run sweep is running again
            self.open_runs[known["run_id"]] = "the sweep"
        except AlrunError:
            raise
        except Exception as exc:  # noqa: BLE001 - one sentence before any job
            raise ConfigError(f"tracker.uri={self.uri} did not take the sweep's run ({last_line(exc)[:300]}); "
                              "check that store, or run with tracker=none.") from None

    def job_run(self, job_dir: Path, sweep_dir: Path, study: str | None, settings: dict[str, Any],
                title: str, overrides: dict[str, str] | None = None, experiment: str | None = None) -> JobRun:
        def open_run() -> JobRun:
            sweep = _read_json(Path(sweep_dir) / SWEEP_FILE)
            if not sweep or sweep.get("uri") != self.uri:  # a single run, or callbacks left out
                sweep = self._sweep(Path(sweep_dir), study, experiment)
            return MlflowJobRun.open(self, Path(job_dir), sweep, settings, title, overrides or {})

        return self.call("opening the job's run", open_run) or JobRun()

    def log_report(self, folder: Path, metrics: list, failed: list[str],  # type: ignore[override]
                   tags: dict[str, str] | None = None) -> None:
        """In the logger: the report's files, `metrics` ((key, value, step): the table's cells and the
        verdict's numbers) and `tags` (the verdict's decisions and sentences) to the parent run.

        A report written again (a re-run sweep, a re-aggregated folder) logs only the numbers the run does
        not hold yet at that step with that value: an unchanged report adds no history entry, a changed
        number a newer one (which MLflow then shows). Tags and artifacts are replaced.
        """
        known = _read_json(Path(folder) / SWEEP_FILE)
        if not known or known.get("uri") != self.uri:
            return
        run_id = known["run_id"]
        for name in REPORT_FILES:
            if (Path(folder) / name).exists():
                self.call(f"logging {name}", self.client.log_artifact, run_id, str(Path(folder) / name))
        if metrics:
            new = self.call("reading the sweep's numbers", self._not_held, run_id, metrics)
            if new:
                self.call("logging the headline numbers", self._log_batch, run_id, new)
        if tags:
            self.call("logging the verdict", self._set_tags, run_id, tags)
        # the sweep itself finished (its report is written) also when some of its jobs failed: their runs are
        # FAILED, and the parent names them
        self.call("ending the sweep's run", self.client.set_tag, run_id, "failed_jobs", str(len(failed)))
        self.call("ending the sweep's run", self.client.set_tag, run_id, "failed_job_names", "; ".join(failed)[:5000])
        self.call("ending the sweep's run", self.client.set_terminated, run_id, "FINISHED")
        self.open_runs.pop(run_id, None)

    def stop_sweep(self, folder: Path, reason: str) -> None:
        """In the logger: a sweep stopped by one sentence (exit 2, no report) ends its parent run FAILED with
        that sentence as its `stopped` tag (a re-run sets it RUNNING again)."""
        known = _read_json(Path(folder) / SWEEP_FILE)
        if not known or known.get("uri") != self.uri:
            return
        self.call("ending the sweep's run", self.client.set_tag, known["run_id"], "stopped", reason[:5000])
        self.call("ending the sweep's run", self.client.set_terminated, known["run_id"], "FAILED")
        self.open_runs.pop(known["run_id"], None)

    def _not_held(self, run_id: str, metrics: list) -> list[tuple[str, float, int]]:
        """Those of `metrics` ((key, value, step), the last of a repeated key and step) whose key the run
        does not hold at that step with that value (its latest entry there)."""
        wanted = {(metric_key(k), int(step)): float(v) for k, v, step in metrics}
        held = set(self.client.get_run(run_id).data.metrics)
        latest: dict[str, dict[int, tuple[int, float]]] = {}
        for key in {k for k, _ in wanted if k in held}:
            by_step: dict[int, tuple[int, float]] = {}
            for m in self.client.get_metric_history(run_id, key):
                if int(m.step) not in by_step or m.timestamp >= by_step[int(m.step)][0]:
                    by_step[int(m.step)] = (m.timestamp, m.value)
            latest[key] = by_step
        out = []
        for (key, step), value in wanted.items():
            logged = latest.get(key, {}).get(step)
            if logged is None or not math.isclose(logged[1], value, rel_tol=1e-12, abs_tol=0.0):
                out.append((key, value, step))
        return out

    def _set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        entities = [RunTag(metric_key(k), str(v)) for k, v in tags.items()]
        for start in range(0, len(entities), 100):  # MLflow takes at most 100 tags per batch
            self.client.log_batch(run_id, tags=entities[start:start + 100])

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
        between creating the run and writing that file), else a new one. Its params: every key of the job's
        flat config (job.json, written before the run is opened) and the readable names of `settings`."""
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
        params = job_params((_read_json(job_dir / "job.json") or {}).get("config"), settings)
        if run_id is None:
            tags = {"mlflow.parentRunId": sweep["run_id"], "job_dir": str(job_dir),
                    "overrides": " ".join(f"{k}={v}" for k, v in overrides.items())}
            run_id = client.create_run(sweep["experiment_id"], run_name=title, tags=tags).info.run_id
        else:
            client.update_run(run_id, status="RUNNING")
            data = client.get_run(run_id).data
            for stale in ("error", "incomplete", "tracking_error"):  # an earlier attempt's marks
                if stale in data.tags:
                    client.delete_tag(run_id, stale)
            # MLflow refuses a changed param: a resumed run keeps what it holds (a run-side setting such as
            # `device` or `data_dir` may differ between attempts) and gets only what it lacks (a kill before
            # the params were logged, a run of an older alrun)
            params = {k: v for k, v in params.items() if k not in data.params}
        entities = [Param(k, v) for k, v in params.items()]
        for start in range(0, len(entities), 100):  # MLflow takes at most 100 params per batch
            client.log_batch(run_id, params=entities[start:start + 100])
        atomic_write_text(job_dir / JOB_FILE, json.dumps({"uri": tracker.uri, "run_id": run_id}, indent=2))
        # what an earlier attempt logged: log_batch writes a step's metrics in one transaction
        logged = {int(m.step) for m in client.get_metric_history(run_id, STEP_MARKER)}
        tracker.open_runs[run_id] = str(job_dir)
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

    def finish(self, rows: list[dict[str, Any]] | None = None, error: str | None = None,  # type: ignore[override]
               dropped: int = 0) -> None:
        """End the run. `rows` (a job that ended normally: all its rows) fills in what MLflow lacks: a job found
        done at start replays nothing, and the training process drops step rows while this logger is behind.
        `dropped` such rows of a job that did not send them again (a failed job) mark the run `incomplete`."""
        if rows is not None:
            for row in rows:
                self._log_row(row)
        call, client = self.tracker.call, self.tracker.client
        if dropped and rows is None:
            call("ending the job's run", client.set_tag, self.run_id, "incomplete",
                 f"{dropped} step rows were dropped while the MLflow logger was behind; steps.csv holds every row")
        steps = self.job_dir / "steps.csv"
        if steps.exists():
            call("logging steps.csv", client.log_artifact, self.run_id, str(steps))
        if error is not None:
            call("ending the job's run", client.set_tag, self.run_id, "error", error[:5000])
        call("ending the job's run", client.set_terminated, self.run_id, "FAILED" if error is not None else "FINISHED")
        self.tracker.open_runs.pop(self.run_id, None)
        self.close()

    def close(self) -> None:
        self.lock.close()
