"""Hydra callbacks: aggregate the sweep into tables and plots once every job has finished."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from alrun.progress import print_report
from alrun.report import write_report


class ReportCallback(Callback):
    """Writes summary.csv, table.md, table.csv and curves.png at the top of the sweep (or run) folder.

    Under submitit the launcher blocks until all jobs finish, so this runs on the submit host
    after them; a job that failed is listed, and the run exits non-zero after the report.
    """

    def _report(self, folder: Path, config: DictConfig) -> None:
        sizes = config.get("report", {}).get("sizes")
        report = write_report(folder, list(sizes) if sizes else None)
        if report is None:
            return
        print_report(report, folder)
        if report.failed_jobs:
            raise SystemExit(1)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._report(Path(config.hydra.sweep.dir), config)

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._report(Path(config.hydra.run.dir), config)
