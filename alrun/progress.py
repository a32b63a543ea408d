"""Rich progress for one job and the summary table at the end of a sweep."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

if TYPE_CHECKING:
    from alrun.report import Report

console = Console(stderr=True)


@contextlib.contextmanager
def job_progress(title: str) -> Iterator[Any]:
    """A progress bar over steps; yields the callback the loop calls after each step."""
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("labelled {task.fields[labelled]}  NLL {task.fields[nll]}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False, disable=not console.is_terminal) as progress:
        task = progress.add_task(title, total=None, labelled="-", nll="-")

        def on_step(row: dict[str, Any], total: int) -> None:
            progress.update(task, total=total, advance=1, labelled=row["labelled"], nll=f"{row['test_nll']:.3f}")
            if not console.is_terminal:
                console.print(f"{title}: step {row['step'] + 1}/{total}, labelled {row['labelled']}, "
                              f"test NLL {row['test_nll']:.3f}, accuracy {row['test_acc']:.3f}")

        yield on_step


def print_report(report: Report, folder: Path) -> None:
    """Print the NLL and accuracy tables and name the output folder."""
    from alrun.report import validation_note, wide_table

    out = Console()
    for metric, title in (("test_nll", "test NLL (lower is better)"), ("test_acc", "test accuracy"),
                          ("test_balanced_acc", "test balanced accuracy")):
        wide = wide_table(report.table, report.group_columns, metric)
        if wide.empty:
            continue
        table = Table(title=f"{title}: mean +- std over seeds (n)")
        for column in wide.columns:
            table.add_column(str(column), justify="left" if column in report.group_columns else "right")
        for row in wide.itertuples(index=False):
            table.add_row(*(str(v) for v in row))
        out.print(table)
    for title, frame in report.extra:
        if frame.empty:
            continue
        out.print(f"[bold]{title}[/bold]")  # long titles wrap to the terminal, not to the table
        table = Table()
        for column in frame.columns:
            table.add_column(str(column))
        for row in frame.itertuples(index=False):
            table.add_row(*(str(v) for v in row))
        out.print(table)
    note = validation_note(report.summary)
    if note:
        out.print(note)
    print_failures(report.failed_jobs, folder, out)
    out.print(f"Results in [bold]{folder}[/bold]: summary.csv, table.md, table.csv, curves.png")


def print_failures(failed: list[str], folder: Path, out: Console | None = None) -> None:
    """Name each failed job with the last line of its error.txt (the rest of the sweep is reported)."""
    from alrun.report import failure_reason

    if not failed:
        return
    out = out or Console()
    out.print(f"[red]{len(failed)} job(s) failed:[/red]")
    for job in failed:
        out.print(f"  {job}: {failure_reason(Path(folder) / job)}", markup=False, highlight=False)
