"""One sweep folder -> summary.csv, table.csv, table.md, curves.png: the pipeline collect -> frames -> verdict
-> tables -> renderers, run end to end."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from alrun.core.files import atomic_write_text
from alrun.report.collect import collect, failure_reason, unfinished_jobs, write_summary
from alrun.report.frames import (
    METRIC_TITLES,
    METRICS,
    _targets_of,
    check_one_job_per_seed,
    choose_sizes,
    group_columns_of,
    label_heuristics,
    long_table,
    margin_of,
    missing_reference,
    primary_of,
    setting_keys_of,
    target_record,
)
from alrun.report.plot import plot_curves
from alrun.report.resume import until_command
from alrun.report.tables import (
    _integers,
    compact_table,
    evaluation_sections,
    fit_note,
    held_fixed,
    plain_numbers,
    study_sections,
    to_markdown,
    validation_note,
    wide_table,
)
from alrun.report.verdict import Options as VerdictOptions
from alrun.report.verdict import Verdict
from alrun.report.verdict import verdict as make_verdict


@dataclass
class Report:
    """What :func:`write_report` produced."""

    summary: pd.DataFrame  # every step of every job
    table: pd.DataFrame  # long: groups..., labelled, metric, mean, std, n
    group_columns: list[str]
    sizes: list[int]
    markdown: str
    failed_jobs: list[str]
    extra: list[tuple[str, pd.DataFrame]]  # AUBC, paired against Random, penalty matrices, the study's own tables
    target_accuracy: tuple[float, ...] = ()  # the test accuracies the labels needed are reported for
    compact: pd.DataFrame = field(default_factory=pd.DataFrame)  # the terminal's one table: see compact_table
    verdict: pd.DataFrame = field(default_factory=pd.DataFrame)  # alrun.report.verdict.Verdict.rows
    verdict_lines: list[str] = field(default_factory=list)  # the verdict's sentences, one per heuristic
    notes: list[str] = field(default_factory=list)  # sentences on what the tables leave out, and why
    unfinished: list[str] = field(default_factory=list)  # job folders with neither `done` nor `failed`


def _recorded(summary: pd.DataFrame, column: str) -> object:
    """The value the jobs recorded in `column` (the first), None when none did."""
    if column not in summary.columns:
        return None
    values = summary[column].dropna()
    return values.iloc[0] if len(values) else None


def verdict_options(summary: pd.DataFrame, targets: tuple[float, ...], primary: object = None,
                    equivalence_margin: object = None) -> VerdictOptions:
    """The verdict's declared settings: those given, else those the jobs recorded (report.primary,
    report.equivalence_margin), and the first target accuracy."""
    primary = primary_of(primary if primary is not None else _recorded(summary, "report_primary"))
    margin = margin_of(equivalence_margin if equivalence_margin is not None
                       else _recorded(summary, "report_equivalence_margin"))
    return VerdictOptions(primary=primary, target=targets[0] if targets else None, margin=margin)


UNTIL_FILE = "until.json"  # written by until=decided (alrun/launch/until.py) before each round


def rounds_line(sweep_dir: Path) -> str | None:
    """Under until=decided, the round this verdict was read after (the folder's until.json); None otherwise."""
    try:
        plan = json.loads((Path(sweep_dir) / UNTIL_FILE).read_text())
        return (f"until=decided: read after round {int(plan['round'])} ({int(plan['seeds'])} seeds of at most "
                f"{int(plan['max_seeds'])}); the confidence sequences are anytime-valid, so reading after every "
                "round keeps the error rates.")
    except (OSError, ValueError, KeyError, TypeError):
        return None


def seeds_line(sweep_dir: Path, found: Verdict) -> str | None:
    """The verdict's last line: the one command that would decide the undecided comparisons within reach."""
    if found.hint_seeds is None or not found.undecided:
        return None
    # a long list would bury the command: past four, the count
    names = ", ".join(found.undecided) if len(found.undecided) <= 4 else \
        f"the {len(found.undecided)} undecided comparisons within reach"
    should = f"To decide {names}: {found.hint_seeds} seeds in all should do it (in 80% of sweeps)"
    # until=decided adds them in rounds and stops once decided (the intervals are anytime-valid): never more
    # seeds than 'seed=range(0,N)', often fewer
    command = until_command(sweep_dir, found.hint_seeds)
    if command is None:  # a summary without its sweep (a reference folder): nothing to run into
        return (f"{should}; the sweep's command with 'until=decided max_seeds={found.hint_seeds}' and its "
                "hydra.sweep.dir adds them.")
    return f"{should}; run `{command}` (seeds in rounds, stopping once decided)"


def write_report(sweep_dir: Path, sizes: list[int] | None = None,
                 target_accuracy: float | list[float] | None = None, compress: bool | None = None,
                 primary: str | None = None, equivalence_margin: float | None = None) -> Report | None:
    """Aggregate every job under `sweep_dir` and write the summary, tables and plot there.

    A folder holding only a summary.csv or summary.csv.gz (no job folders) is rebuilt from it. `target_accuracy`,
    one test accuracy or a list (else the jobs' `report.target_accuracy`), adds the labels each job needed to
    reach it. `compress`: write the summary gzip-compressed (True), as text (False), or as the folder holds it
    (None, see :func:`write_summary`). `primary`, `equivalence_margin`: the verdict's report.primary and
    report.equivalence_margin (else what the jobs recorded, else the defaults). Returns None when no job has
    finished a step yet.
    """
    sweep_dir = Path(sweep_dir)
    summary, failed = collect(sweep_dir)
    if summary.empty:
        return None
    if sizes is None and "report_sizes" in summary.columns:
        sizes = json.loads(summary["report_sizes"].iloc[0]) or None
    targets = _targets_of(summary, target_accuracy)
    groups = group_columns_of(summary) or ["job"]  # jobs that recorded no settings: one row each
    summary = plain_numbers(label_heuristics(summary, setting_keys_of(summary)), groups)
    check_one_job_per_seed(summary, groups)
    chosen, sizes_note = choose_sizes(summary, sizes)
    table = long_table(summary, groups, chosen)
    # the sizes and the target travel in summary.csv, so a folder holding only it rebuilds the same tables
    summary["report_sizes"] = json.dumps(chosen)
    summary["report_target_accuracy"] = target_record(targets)
    evaluation, evaluation_long, paired = evaluation_sections(summary, groups, chosen, targets)
    options = verdict_options(summary, targets, primary, equivalence_margin)
    found = make_verdict(summary, groups, options)
    last = seeds_line(sweep_dir, found)
    verdict_lines = [*found.lines, *([line] if (line := rounds_line(sweep_dir)) else []), *([last] if last else [])]
    notes = [n for n in (sizes_note, validation_note(summary), fit_note(summary)) if n]
    notes += [f"No random run at {where}: its heuristics have no paired comparison." for where in
              missing_reference(summary, groups)]
    write_summary(sweep_dir, summary, compress)
    verdict_long = found.rows.assign(metric="verdict_" + found.rows["metric"]) if not found.rows.empty else found.rows
    full_table = pd.concat([f for f in (table, evaluation_long, verdict_long) if not f.empty], ignore_index=True)
    atomic_write_text(sweep_dir / "table.csv", _integers(full_table).to_csv(index=False))
    n_jobs = summary["job"].nunique()
    seeds = sorted(summary["seed"].unique()) if "seed" in summary.columns else []
    sections = [f"# Results of {sweep_dir.name}\n", "## Verdict\n",
                f"Each heuristic against random, paired by seed, decided on {options.endpoint.label} "
                "(report.primary) with an anytime-valid confidence sequence, Holm over the sweep's primary "
                "comparisons: still valid when seeds are added and the verdict is read again (docs/reference/"
                "statistics.md). Gains: positive = better than random (NLL: random's minus the heuristic's). "
                "Descriptive numbers use the same level and decide nothing.\n",
                *(f"- {line}" for line in verdict_lines), "",
                f"{n_jobs} jobs, seeds {', '.join(str(x) for x in seeds) or '-'}. Cells: mean +- std over seeds "
                "(number of seeds). Read at the labelled sizes shown; a cell marked @N was read at N labelled "
                "items, the group's last step below that size.\n"]
    sections.append(held_fixed(summary, groups, setting_keys_of(summary)))
    sections.extend(f"{note}\n" for note in notes)
    for metric in METRICS:
        wide = wide_table(table, groups, metric)
        if wide.empty:
            continue
        sections.append(f"## {METRIC_TITLES[metric]}\n")
        sections.append(to_markdown(wide))
    extra = evaluation + study_sections(summary, groups, chosen)
    for title, frame in extra:
        sections.append(f"## {title}\n")
        sections.append(to_markdown(frame))
    if failed:
        sections.append("\nFailed jobs (their `error.txt` has the details):\n")
        sections.extend(f"- {job}: {failure_reason(sweep_dir / job)}" for job in failed)
    unfinished = unfinished_jobs(sweep_dir)
    if unfinished:
        sections.append("\nUnfinished jobs (no `done` marker: interrupted, cancelled or still running; re-running "
                        "the sweep's command with the same hydra.sweep.dir resumes them):\n")
        sections.extend(f"- {job}" for job in unfinished)
    markdown = "\n".join(sections)
    atomic_write_text(sweep_dir / "table.md", markdown)
    plot_curves(summary, groups, sweep_dir / "curves.png")
    compact = compact_table(full_table, groups, chosen[-1])
    return Report(summary, full_table, groups, chosen, markdown, failed, extra, targets, compact, found.rows,
                  verdict_lines, notes, unfinished)
