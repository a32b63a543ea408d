"""report: a sweep folder -> tables, verdict and plot, as a pipeline of small steps:
collect (jobs -> summary frame) -> frames (grouped) -> stats + verdict -> tables, plot, terminal (formatting only);
write runs it end to end. It reads files, never the loop; it may import config, core and train's pure fit_guard."""

from alrun.report.collect import SUMMARY, SUMMARY_GZ, collect, failed_jobs, failure_reason, read_summary, summary_file
from alrun.report.frames import METRICS, choose_sizes, rows_at_size, target_accuracies_of, target_record
from alrun.report.tables import wide_table
from alrun.report.write import Report, write_report

__all__ = ["METRICS", "SUMMARY", "SUMMARY_GZ", "Report", "choose_sizes", "collect", "failed_jobs", "failure_reason",
           "read_summary", "rows_at_size", "summary_file", "target_accuracies_of", "target_record", "wide_table",
           "write_report"]


_STEPS = ("collect", "frames", "tables", "plot", "write")


def __getattr__(name: str):
    # alrun 0.1 kept the whole report in alrun/report.py: its other names stay reachable from the package
    if name.startswith("__") or name in _STEPS + ("stats", "verdict", "terminal", "__main__"):
        raise AttributeError(name)
    import importlib

    for step in _STEPS:
        module = importlib.import_module(f"alrun.report.{step}")
        if hasattr(module, name):
            return getattr(module, name)
    raise AttributeError(f"module 'alrun.report' has no attribute '{name}'")
