"""Rich progress for one job and the summary table at the end of a sweep."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

if TYPE_CHECKING:
    from alrun.report.write import Report

# the width of a console that is not a terminal and has no COLUMNS: any table fits at its natural width
LOG_WIDTH = 10_000


def make_console(stderr: bool = False) -> Console:
    """The console alrun prints to (stdout, or stderr for progress).

    In a terminal, rich's own, as wide as the terminal. Otherwise (a SLURM log, CI, `| tee`) one that
    never breaks a line: as wide as `COLUMNS` when that is set, else wide enough for every table to take the
    width of its content, and plain lines are never wrapped (rich would wrap both at 80 columns)."""
    terminal = Console(stderr=stderr)
    if terminal.is_terminal:
        return terminal
    columns = os.environ.get("COLUMNS", "").strip()
    width = int(columns) if columns.isdigit() and int(columns) > 0 else LOG_WIDTH
    return Console(stderr=stderr, width=width, soft_wrap=True)


@contextlib.contextmanager
def job_progress(title: str) -> Iterator[Any]:
    """A progress bar over steps; yields the callback the loop calls after each step.

    Not in a terminal, no bar: one plain line per step instead."""
    console = make_console(stderr=True)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("labelled {task.fields[labelled]}  NLL {task.fields[nll]}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False, disable=not console.is_terminal) as progress:
        task = progress.add_task(title, total=None, labelled="-", nll="-")

        def on_step(row: dict[str, Any], total: int) -> None:
            progress.update(task, total=total, advance=1, labelled=row["labelled"], nll=f"{row['test_nll']:.3f}")
            if not console.is_terminal:
                console.print(f"{title}: step {row['step'] + 1}/{total}, labelled {row['labelled']}, "
                              f"test NLL {row['test_nll']:.3f}, accuracy {row['test_acc']:.3f}",
                              markup=False, highlight=False)  # a title's "[...]" is an override, not markup

        yield on_step


def _print_frame(out: Console, frame: Any, title: str | None, group_columns: list[str]) -> None:
    """A formatted frame as a rich table."""
    from alrun.report.tables import plain_value

    table = Table(title=title)
    for column in frame.columns:
        table.add_column(str(column), justify="left" if column in group_columns else "right")
    for row in frame.itertuples(index=False):
        table.add_row(*(plain_value(v) for v in row))  # lambda 0 beside 0.05, as table.md writes it
    out.print(table)


def print_report(report: Report, folder: Path, full: bool = False) -> None:
    """The verdict and one compact table (with `full`: every table of table.md first), then the notes,
    the failed jobs and the output folder."""
    from alrun.report.tables import wide_table

    out = make_console()
    if full:
        for metric, title in (("test_nll", "test NLL (lower is better)"), ("test_acc", "test accuracy"),
                              ("test_balanced_acc", "test balanced accuracy")):
            wide = wide_table(report.table, report.group_columns, metric)
            if not wide.empty:
                _print_frame(out, wide, f"{title}: mean +- std over seeds (n)", report.group_columns)
        for title, frame in report.extra:
            if frame.empty:
                continue
            out.print(f"[bold]{title}[/bold]")  # long titles wrap to the terminal, not to the table
            _print_frame(out, frame, None, report.group_columns)
    elif not report.compact.empty:
        _print_frame(out, report.compact, "mean +- std over seeds (n); gain against random paired by seed "
                     "[95% CI] p", report.group_columns)
    for note in report.notes:
        out.print(note, markup=False, highlight=False, soft_wrap=True)
    if report.verdict_lines:
        out.print("[bold]Verdict[/bold] (each heuristic against random, paired by seed, anytime-valid; "
                  "descriptive numbers decide nothing):")
        for line in report.verdict_lines:
            out.print(f"- {line}", markup=False, highlight=False, soft_wrap=True)  # one line each in a log
    print_failures(report.failed_jobs, folder, out)
    if report.unfinished:
        out.print(f"[yellow]{len(report.unfinished)} job(s) unfinished[/yellow] (no `done` marker: interrupted, "
                  "cancelled or still running; the same command with the same hydra.sweep.dir resumes them):")
        for job in report.unfinished:
            out.print(f"  {job}", markup=False, highlight=False)
    more = "" if full else " (every table: table.md, or python -m alrun.report FOLDER --full)"
    summary = "summary.csv.gz" if (Path(folder) / "summary.csv.gz").is_file() else "summary.csv"
    out.print(f"Results in [bold]{folder}[/bold]: {summary}, table.md, table.csv, curves.png{more}")


def print_failures(failed: list[str], folder: Path, out: Console | None = None) -> None:
    """Name each failed job with the last line of its error.txt (the rest of the sweep is reported)."""
    from alrun.report.collect import failure_reason

    if not failed:
        return
    out = out or make_console()
    out.print(f"[red]{len(failed)} job(s) failed:[/red]")
    for job in failed:
        out.print(f"  {job}: {failure_reason(Path(folder) / job)}", markup=False, highlight=False)
