"""Hydra callbacks: aggregate the sweep into tables and plots once every job has finished."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from alrun.errors import AlrunError
from alrun.progress import print_failures, print_report
from alrun.report import failed_jobs, write_report


class ReportCallback(Callback):
    """Writes summary.csv, table.md, table.csv and curves.png at the top of the sweep (or run) folder.

    Under submitit the launcher blocks until all jobs finish, so this runs on the submit host
    after them; a job that failed is listed with the last line of its error.txt, and the run
    exits 1 after the report. A report that cannot be written (full disk) stops with one
    sentence and exit 2.
    """

    def _report(self, folder: Path, config: DictConfig) -> None:
        sizes = config.get("report", {}).get("sizes")
        target = config.get("report", {}).get("target_accuracy")
        try:
            report = write_report(folder, list(sizes) if sizes else None, target)
        except AlrunError as exc:
            print(f"alrun: error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        if report is not None:
            print_report(report, folder)
        failed = report.failed_jobs if report is not None else failed_jobs(folder)
        if failed:
            if report is None:
                print_failures(failed, folder)
            raise SystemExit(1)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._report(Path(config.hydra.sweep.dir), config)

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._report(Path(config.hydra.run.dir), config)
