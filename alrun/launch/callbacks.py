"""Hydra callbacks: aggregate the sweep into tables and plots once every job has finished."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from alrun.core.errors import AlrunError
from alrun.launch.job_state import clear_refusals, refusals
from alrun.launch.sweep import note_launch
from alrun.report import failed_jobs, write_report
from alrun.report.terminal import print_failures, print_report
from alrun.track.tracker import Tracker, open_tracker


class ReportCallback(Callback):
    """Writes summary.csv, table.md, table.csv and curves.png at the top of the sweep (or run) folder.

    With tracker=mlflow it also opens the sweep's parent run before the first job (in the launching
    process, so that every job of a joblib or submitit sweep finds it) and logs the report to it.

    Under submitit the launcher blocks until all jobs finish, so this runs on the submit host
    after them; a job that failed is listed with the last line of its error.txt, and the run
    exits 1 after the report. A report that cannot be written (full disk) stops with one
    sentence and exit 2.
    """

    def _tracker(self, config: DictConfig, strict: bool = True) -> Tracker:
        """The sweep's tracker (tracker=...); `strict` (before the jobs): one sentence and exit 2 when it
        cannot be opened."""
        tracker_cfg = config.get("tracker")
        try:
            return open_tracker(OmegaConf.to_container(tracker_cfg, resolve=True) if tracker_cfg else None, strict)
        except AlrunError as exc:
            print(f"alrun: error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None

    def _start(self, folder: Path, config: DictConfig) -> None:
        """Before any job: open the tracker and the sweep's parent run, and name the store once."""
        note_launch(folder, config)
        tracker = self._tracker(config)
        if not tracker.enabled:
            return
        try:
            tracker.start_sweep(folder, config.get("study"))
        except AlrunError as exc:
            print(f"alrun: error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        browse = (f"open {tracker.uri}" if tracker.uri.startswith(("http://", "https://"))
                  else f"mlflow ui --backend-store-uri {tracker.uri}")
        print(f"alrun: tracking to MLflow at {tracker.uri} (browse: {browse})", flush=True)

    def _report(self, folder: Path, config: DictConfig) -> None:
        sizes = config.get("report", {}).get("sizes")
        target = config.get("report", {}).get("target_accuracy")
        primary = config.get("report", {}).get("primary")
        margin = config.get("report", {}).get("equivalence_margin")
        try:
            report = write_report(folder, list(sizes) if sizes else None, target, primary=primary,
                                  equivalence_margin=margin)
        except AlrunError as exc:
            print(f"alrun: error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        if report is not None:
            print_report(report, folder, full=bool(config.get("report", {}).get("full_tables", False)))
        failed = report.failed_jobs if report is not None else failed_jobs(folder)
        # a store gone since the start only warns: the report's files are written already
        self._tracker(config, strict=False).log_report(folder, report, failed)
        refused = refusals(folder)  # jobs in processes of their own that found another config's job in their folder
        if refused:
            for sentence in refused:
                print(sentence, file=sys.stderr)
            raise SystemExit(2)
        if failed:
            if report is None:
                print_failures(failed, folder)
            raise SystemExit(1)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        clear_refusals(Path(config.hydra.sweep.dir))  # an earlier launch's: this launch's jobs decide again
        self._start(Path(config.hydra.sweep.dir), config)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._start(Path(config.hydra.run.dir), config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._report(Path(config.hydra.sweep.dir), config)

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._report(Path(config.hydra.run.dir), config)
