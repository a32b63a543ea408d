"""Aggregate a sweep folder into tables and plots; reads only files.

The Hydra callback at the end of a sweep and ``python -m alrun.report FOLDER`` call the same
:func:`write_report`, so a sweep whose jobs ran on many machines can be aggregated at any time.

Files written at the top of the folder: ``summary.csv`` (every step of every job, the job's
settings as columns; ``summary.csv.gz`` when asked, see :func:`write_summary`), ``table.csv`` (long: group,
labelled size, metric, mean, std, n), ``table.md`` (the paper's layout: mean +- std over seeds, the seed count
shown) and ``curves.png``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from alrun import stats
from alrun.checkpoint import atomic_write_text
from alrun.errors import AlrunError, ConfigError
from alrun.fit_guard import flag_counts
from alrun.settings import experiment_settings, is_path_setting
from alrun.verdict import verdict as make_verdict

# settings recorded for every job; those that vary across a sweep (seed aside) become table rows
SETTING_COLUMNS = ("heuristic", "lambda", "delta", "query_size", "pool_fraction", "epochs", "dataset", "model",
                   "mc_samples")
METRICS = ("test_nll", "test_acc", "test_balanced_acc", "test_f1_macro")
METRIC_TITLES = {"test_nll": "test NLL", "test_acc": "test accuracy", "test_balanced_acc": "test balanced accuracy",
                 "test_f1_macro": "test macro F1"}
# metrics whose whole curve (AUBC) and paired comparison against Random the report gives
CURVE_METRICS = ("test_nll", "test_acc", "test_balanced_acc")
PAIRED_METRICS = ("test_nll", "test_acc")
REFERENCE = "random"
# the summary's file: plain text, or gzip-compressed when asked (a sweep's settings repeat on every step row,
# so it compresses about tenfold); a folder holds one of them
SUMMARY, SUMMARY_GZ = "summary.csv", "summary.csv.gz"


def target_accuracies_of(value: object) -> tuple[float, ...]:
    """`report.target_accuracy` checked: None (no target), one test accuracy in (0, 1], or a list of them
    (also as the JSON text summary.csv keeps a list in), in the order given, repeats dropped."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ()
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            value = json.loads(value)
        except ValueError:
            pass
    items = list(value) if isinstance(value, list | tuple) or type(value).__name__ == "ListConfig" else [value]
    targets: list[float] = []
    for item in items:
        try:
            target = float(item)
        except (TypeError, ValueError):
            target = float("nan")
        if isinstance(item, bool) or not 0 < target <= 1:
            raise ConfigError(f"report.target_accuracy={value} is not allowed: give a test accuracy in (0, 1], a "
                              "list of them such as [0.9,0.95], or null.")
        if target not in targets:
            targets.append(target)
    return tuple(targets)


def target_record(targets: tuple[float, ...]) -> float | str | None:
    """The targets as job.json and summary.csv keep them: None, the one number, or a JSON list."""
    if not targets:
        return None
    return targets[0] if len(targets) == 1 else json.dumps(list(targets))


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
    verdict: pd.DataFrame = field(default_factory=pd.DataFrame)  # alrun.verdict.Verdict.rows
    verdict_lines: list[str] = field(default_factory=list)  # the verdict's sentences, one per heuristic
    notes: list[str] = field(default_factory=list)  # sentences on what the tables leave out, and why
    unfinished: list[str] = field(default_factory=list)  # job folders with neither `done` nor `failed`


def _job_settings(meta: dict) -> tuple[dict, list[str]]:
    """(every column a job's record gives its rows, the keys among them that define the experiment).

    Jobs written with the whole resolved config ("config" in job.json) are keyed on every experiment setting
    of it (paths and run-side keys left out, see :mod:`alrun.settings`); the readable names of the heuristic,
    data set and model ("settings") stand for their `name` keys. Older jobs are keyed on the fixed list.
    """
    readable = meta.get("settings", {})
    overrides = {k: v for k, v in meta.get("overrides", {}).items() if not is_path_setting(k, v)}
    config = meta.get("config")
    if config is None:
        keys = [k for k in (*SETTING_COLUMNS, "seed") if k in readable]
        return {**overrides, **readable}, keys
    experiment = experiment_settings(config)
    for covered in ("heuristic.name", "dataset.name", "model.name"):
        experiment.pop(covered, None)
    if config.get("heuristic.name") == "custom":  # its readable name already shows its extra keys
        experiment = {k: v for k, v in experiment.items()
                      if not k.startswith("heuristic.") or k == "heuristic._target_"}
    keyed = {**experiment, **readable}
    return {**overrides, **keyed}, sorted(keyed)


def _read_job(job_dir: Path, sweep_dir: Path) -> pd.DataFrame | None:
    steps = pd.read_csv(job_dir / "steps.csv")
    if steps.empty:
        return None
    meta_path = job_dir / "job.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    columns, keys = _job_settings(meta)
    for key, value in columns.items():
        if is_path_setting(key, value) or key in steps.columns:
            continue
        steps[key] = value if not isinstance(value, (list, dict)) else json.dumps(value)
    steps["setting_keys"] = json.dumps(keys)
    steps["study"] = meta.get("study")
    reduced = meta.get("reduced_classes") or []
    f1_cols = [f"f1_{c}" for c in reduced if f"f1_{c}" in steps.columns]
    if f1_cols:
        steps["f1_reduced"] = steps[f1_cols].mean(axis=1)
    steps["time_acquisition"] = steps["time_infer"] + steps["time_acquire"]
    steps["job"] = str(job_dir.relative_to(sweep_dir))
    steps["finished"] = (job_dir / "done").exists()
    steps["report_sizes"] = json.dumps(meta.get("report_sizes") or [])
    steps["report_target_accuracy"] = meta.get("report_target_accuracy")
    return steps


def failed_jobs(sweep_dir: Path) -> list[str]:
    """Job folders under `sweep_dir` (relative names) that hold a `failed` marker."""
    sweep_dir = Path(sweep_dir)
    return sorted(str(p.parent.relative_to(sweep_dir)) for p in sweep_dir.rglob("failed"))


def unfinished_jobs(sweep_dir: Path) -> list[str]:
    """Job folders under `sweep_dir` (relative names) that started (a job.json) but hold neither a `done` nor a
    `failed` marker: interrupted, cancelled, killed, or still running."""
    sweep_dir = Path(sweep_dir)
    return sorted(str(p.parent.relative_to(sweep_dir)) for p in sweep_dir.rglob("job.json")
                  if not (p.parent / "done").exists() and not (p.parent / "failed").exists())


def failure_reason(job_dir: Path) -> str:
    """The last line of a failed job's error.txt: its one-sentence error or the exception it raised."""
    try:
        lines = [line for line in (Path(job_dir) / "error.txt").read_text().splitlines() if line.strip()]
    except OSError:
        return "no error.txt"
    return lines[-1].strip() if lines else "empty error.txt"


def summary_file(folder: Path) -> Path | None:
    """The summary `folder` holds: its summary.csv, else its summary.csv.gz; None when it holds neither."""
    for name in (SUMMARY, SUMMARY_GZ):
        if (Path(folder) / name).is_file():
            return Path(folder) / name
    return None


def write_summary(folder: Path, summary: pd.DataFrame, compress: bool | None = None) -> Path:
    """Write `summary` as folder/summary.csv, or gzip-compressed as folder/summary.csv.gz (`compress`; None:
    as the folder holds it now, plain text when it holds none), removing the other one; returns the path.

    The compressed file holds the same text (read back by pandas, or by `gzip -dc`), with no time stamp, so
    the same summary gives the same bytes."""
    folder = Path(folder)
    if compress is None:
        compress = summary_file(folder) == folder / SUMMARY_GZ
    text = summary.to_csv(index=False)
    path, other = (folder / SUMMARY_GZ, folder / SUMMARY) if compress else (folder / SUMMARY, folder / SUMMARY_GZ)
    atomic_write_text(path, gzip.compress(text.encode(), mtime=0) if compress else text)
    other.unlink(missing_ok=True)
    return path


def read_summary(path: Path) -> pd.DataFrame:
    """A summary.csv (or summary.csv.gz) written earlier (a reference folder without its job folders), path
    settings dropped."""
    summary = pd.read_csv(path)  # pandas decompresses a .gz by its name
    drop = [c for c in summary.columns if is_path_setting(c, None)]
    summary = summary.drop(columns=drop)
    if "report_sizes" not in summary.columns:
        summary["report_sizes"] = "[]"
    summary["report_sizes"] = summary["report_sizes"].fillna("[]")
    return summary


def collect(sweep_dir: Path) -> tuple[pd.DataFrame, list[str]]:
    """(every step of every job under `sweep_dir`, names of job folders that failed).

    Reads the jobs' steps.csv; a folder with none but a summary.csv or summary.csv.gz (a reference folder
    copied without its job folders) is read from that summary.
    """
    sweep_dir = Path(sweep_dir)
    frames = []
    for steps_path in sorted(sweep_dir.rglob("steps.csv")):
        frame = _read_job(steps_path.parent, sweep_dir)
        if frame is not None:
            frames.append(frame)
    failed = failed_jobs(sweep_dir)
    if not frames:
        if summary_file(sweep_dir) is not None:
            return read_summary(summary_file(sweep_dir)), failed
        return pd.DataFrame(), failed
    return pd.concat(frames, ignore_index=True, sort=False), failed


def setting_keys_of(summary: pd.DataFrame) -> list[str]:
    """Every experiment setting some job recorded (summary.csv's `setting_keys`; the fixed list for
    summaries written before it)."""
    if "setting_keys" not in summary.columns:
        return [c for c in (*SETTING_COLUMNS, "seed") if c in summary.columns]
    keys: set[str] = set()
    for recorded in summary["setting_keys"].dropna().unique():
        keys.update(json.loads(recorded))
    return sorted(k for k in keys if k in summary.columns)


def _shown(value: object) -> str:
    """A setting's value in a label: 4 for 4.0, the value's text otherwise."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def label_heuristics(summary: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The `heuristic` column with each heuristic's own settings that vary across its jobs in the label,
    e.g. `power_bald(beta=4)` beside `power_bald(beta=1)`; a heuristic run with one value of each keeps its
    name. Returns a copy."""
    own = [k for k in keys if k.startswith("heuristic.")]
    if "heuristic" not in summary.columns or not own:
        return summary
    out = summary.copy()
    out["heuristic"] = out["heuristic"].astype(str)
    for name, part in summary.groupby(out["heuristic"], sort=False):
        varying = [k for k in own if part[k].astype(str).nunique(dropna=False) > 1]
        if not varying:
            continue
        for index, row in part[varying].iterrows():
            shown = ", ".join(f"{k.removeprefix('heuristic.')}={_shown(row[k])}" for k in varying)
            out.loc[index, "heuristic"] = f"{name}({shown})"
    return out


def _determined(summary: pd.DataFrame, column: str, by: list[str]) -> bool:
    """True when `column` takes one value within each group of `by` (it splits no rows of its own)."""
    if not by:
        return summary[column].astype(str).nunique(dropna=False) <= 1
    keyed = summary[by].astype(str)
    return bool((summary[column].astype(str).groupby([keyed[c] for c in by]).nunique(dropna=False) <= 1).all())


def group_columns_of(summary: pd.DataFrame) -> list[str]:
    """The settings that vary across the jobs (seed and the heuristic's own settings aside, which are in
    its label); heuristic always comes last. A setting that only follows another (a model's width that
    changes with the model) is left out: it splits no rows."""
    keys = setting_keys_of(summary)
    candidates = [c for c in SETTING_COLUMNS if c in keys and c != "heuristic"] + sorted(
        k for k in keys if k not in SETTING_COLUMNS and k != "seed" and not k.startswith("heuristic."))
    kept: list[str] = []
    for column in candidates:
        if summary[column].astype(str).nunique(dropna=False) > 1 and not _determined(summary, column, kept):
            kept.append(column)
    return kept + (["heuristic"] if "heuristic" in summary.columns else [])


def check_one_job_per_seed(summary: pd.DataFrame, groups: list[str]) -> None:
    """Two jobs with the same settings and seed (two sweeps merged into one folder) would be averaged as
    seeds and paired arbitrarily: stop with one sentence naming both folders."""
    if "seed" not in summary.columns or groups == ["job"]:
        return
    jobs = summary.drop_duplicates("job")
    keys = [*groups, "seed"]
    clash = jobs[jobs.duplicated(keys, keep=False)]
    if clash.empty:
        return
    first = clash.sort_values("job").groupby([clash[k].astype(str) for k in keys], sort=True)["job"].apply(list).iloc[0]
    setting = ", ".join(f"{k}={clash[clash['job'] == first[0]][k].iloc[0]}" for k in keys)
    raise AlrunError(f"jobs {first[0]} and {first[1]} have the same settings ({setting}): two sweeps merged into "
                     "one folder? Move one of them to a folder of its own, then run the report again.")


def choose_sizes(summary: pd.DataFrame, requested: list[int] | None,
                 after_start: int = 3) -> tuple[list[int], str | None]:
    """(labelled sizes at which the table is read, a note on requested sizes left out, or None).

    The requested sizes that some job reached, and always the largest size reached (the budget); without a
    request, or when no requested size was reached: the start and `after_start` sizes evenly spaced after it,
    ending at the budget, among the sizes every job reached.
    """
    final = int(summary["labelled"].max())
    note = None
    if requested:
        wanted = sorted({int(s) for s in requested})
        kept = [s for s in wanted if s <= final]
        dropped = [s for s in wanted if s > final]
        if dropped:
            note = (f"Sizes {', '.join(str(s) for s in dropped)} of report.sizes were left out: no job reached them "
                    f"(the largest labelled size reached is {final}).")
        if kept:
            return sorted(set(kept) | {final}), note
    per_job = summary.groupby("job")["labelled"].apply(set)
    common = sorted(set.intersection(*per_job)) if len(per_job) else []
    if not common:
        common = sorted(summary["labelled"].unique())
    start = int(common[0])
    after = np.asarray([s for s in common if s > start] or [start])
    targets = [start + (final - start) * k / after_start for k in range(1, after_start + 1)]
    picks = {int(after[np.abs(after - t).argmin()]) for t in targets}
    return sorted({start, *picks, final}), note


def rows_at_size(summary: pd.DataFrame, size: int) -> pd.DataFrame:
    """Per job, the step with the largest labelled size <= `size` (jobs that reached `size` only)."""
    reached = summary.groupby("job")["labelled"].transform("max") >= size
    eligible = summary[reached & (summary["labelled"] <= size)]
    return eligible.sort_values("labelled").groupby("job").tail(1)


def long_table(summary: pd.DataFrame, groups: list[str], sizes: list[int], metrics=METRICS) -> pd.DataFrame:
    """mean, std (over seeds, ddof=1) and n per (group, size, metric); read_at: the labelled size the
    cell was read at (below `labelled` where a group's steps skip that size, e.g. a large query size)."""
    parts = []
    for size in sizes:
        at = rows_at_size(summary, size)
        for metric in metrics:
            if metric not in at.columns:
                continue
            grouped = at.groupby(groups, dropna=False)
            agg = grouped[metric].agg(["mean", "std", "count"]).reset_index()
            agg["read_at"] = grouped["labelled"].max().to_numpy()
            agg.insert(len(groups), "labelled", size)
            agg.insert(len(groups) + 1, "metric", metric)
            parts.append(agg.rename(columns={"count": "n"}))
    if not parts:
        return pd.DataFrame(columns=[*groups, "labelled", "metric", "mean", "std", "n"])
    return pd.concat(parts, ignore_index=True)


def format_cell(mean: float, std: float, n: int, read_at: float | None = None, size: int | None = None) -> str:
    """'1.234 +- 0.012 (3)': mean +- std over seeds, with the seed count; ' @500' when the cell was read
    at 500 labelled items rather than at the column's size (the group's steps skip that size)."""
    if n == 0 or pd.isna(mean):
        return "-"
    spread = "" if n < 2 or pd.isna(std) else f" +- {std:.3f}"
    where = "" if read_at is None or size is None or pd.isna(read_at) or int(read_at) == int(size) \
        else f" @{int(read_at)}"
    return f"{mean:.3f}{spread} ({n}){where}"


def wide_table(table: pd.DataFrame, groups: list[str], metric: str) -> pd.DataFrame:
    """Rows = groups, columns = labelled sizes, cells formatted with :func:`format_cell`."""
    part = table[table["metric"] == metric].copy()
    if part.empty:
        return pd.DataFrame()
    read_at = part["read_at"] if "read_at" in part.columns else [None] * len(part)
    part["cell"] = [format_cell(m, s, int(n), r, size) for m, s, n, r, size
                    in zip(part["mean"], part["std"], part["n"], read_at, part["labelled"], strict=True)]
    wide = part.pivot_table(index=groups, columns="labelled", values="cell", aggfunc="first")
    wide.columns = [f"{int(c)} labelled" for c in wide.columns]
    return wide.reset_index()


def to_markdown(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table (no extra dependency)."""
    if frame.empty:
        return "(no rows)\n"
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def plot_curves(summary: pd.DataFrame, groups: list[str], path: Path, metrics=("test_nll", "test_acc")) -> None:
    """Learning curves against labelled size: one line per group, a band of +- 1 std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics), 4.2), squeeze=False)
    keyed = summary.assign(_group=summary[groups].astype(str).agg(", ".join, axis=1) if groups else "all")
    # colour = heuristic, line style = the other swept settings, so a study's grid stays readable
    others = [g for g in groups if g != "heuristic"]
    heuristic_names = sorted(summary["heuristic"].astype(str).unique()) if "heuristic" in groups else []
    other_values = sorted(summary[others].astype(str).agg(", ".join, axis=1).unique()) if others else []
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = ["-", "--", ":", "-.", (0, (5, 1)), (0, (1, 3))]

    def style_of(part: pd.DataFrame) -> dict:
        first = part.iloc[0]
        out: dict = {}
        if heuristic_names:
            out["color"] = colours[heuristic_names.index(str(first["heuristic"])) % len(colours)]
        if other_values:
            key = ", ".join(str(first[g]) for g in others)
            out["linestyle"] = styles[other_values.index(key) % len(styles)]
        return out

    for ax, metric in zip(axes[0], metrics, strict=True):
        for label, part in keyed.groupby("_group", sort=True):
            stats = part.groupby("labelled")[metric].agg(["mean", "std", "count"]).reset_index()
            line = ax.plot(stats["labelled"], stats["mean"], label=label, linewidth=1.6, **style_of(part))[0]
            std = stats["std"].fillna(0.0)
            ax.fill_between(stats["labelled"], stats["mean"] - std, stats["mean"] + std,
                            color=line.get_color(), alpha=0.18, linewidth=0)
        ax.set_xlabel("labelled items")
        ax.set_ylabel(METRIC_TITLES.get(metric, metric))
        ax.grid(alpha=0.3)
    axes[0][0].legend(title=", ".join(groups) if groups else None, fontsize=8)
    n_seeds = summary.groupby(groups)["job"].nunique().min() if groups else summary["job"].nunique()
    fig.suptitle(f"Mean over seeds (at least {n_seeds} per line), band = +- 1 std")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


def job_curves(summary: pd.DataFrame, groups: list[str], targets: tuple[float, ...] = ()) -> pd.DataFrame:
    """One row per job with its AUBC per metric (and the labels it needed to reach each target accuracy), for
    the jobs that ran the whole budget of their setting (an interrupted job's shorter curve is not comparable)."""
    others = [g for g in groups if g != "heuristic"]
    keys = [*groups, "seed"] if "seed" in summary.columns else groups
    curves = stats.per_job_curves(summary, keys, CURVE_METRICS, targets)
    if curves.empty:
        return curves
    full = curves.groupby(others, dropna=False)["last_labelled"].transform("max") if others \
        else curves["last_labelled"].max()
    return curves[curves["last_labelled"] == full].reset_index(drop=True)


def curve_table(curves: pd.DataFrame, groups: list[str], targets: tuple[float, ...]) -> pd.DataFrame:
    """Long rows per group: metric aubc_<metric> (mean, std, n over seeds), and per target accuracy a row of
    metric labels_to_target (its `target`; mean and std over the seeds that reached it, n of them, n_jobs in
    all; median, min and max over all seeds, a seed that never reached it counting as more than its budget:
    NaN where that decides them)."""
    parts = []
    grouped = curves.groupby(groups, dropna=False)
    for metric in CURVE_METRICS:
        column = f"aubc_{metric}"
        if column not in curves.columns:
            continue
        agg = grouped[column].agg(["mean", "std", "count"]).reset_index().rename(columns={"count": "n"})
        agg["metric"] = column
        agg["read_from"] = grouped["first_labelled"].min().to_numpy()
        agg["read_at"] = grouped["last_labelled"].max().to_numpy()
        parts.append(agg)
    for target in targets:
        column = stats.target_column(target)
        if column not in curves.columns:
            continue
        agg = grouped[column].agg(["mean", "std", "count", "size"]).reset_index()
        agg = agg.rename(columns={"count": "n", "size": "n_jobs"})
        spread = grouped[column].agg(lambda v: stats.median_and_range(v.to_numpy()))
        for i, name in enumerate(("median", "min", "max")):
            agg[name] = [x[i] if math.isfinite(x[i]) else float("nan") for x in spread.to_numpy()]
        agg["metric"] = "labels_to_target"
        agg["target"] = target
        agg["read_at"] = grouped["last_labelled"].max().to_numpy()
        parts.append(agg)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def format_target(median: float, low: float, high: float, n: int, n_jobs: int, last: float) -> str:
    """Labels to a target over seeds as 'median [min, max] (seeds)': '150 [120, 190] (3)' when every seed
    reached it; '190 [150, > 300] (2 of 3 reached)' when some did not (NaN: more than the budget `last`);
    '> 300 (0 of 3 reached)' when none did. One seed: '150 (1)'."""
    if n == 0:
        return f"> {int(last)} (0 of {n_jobs} reached)"

    def labels(value: float) -> str:
        return f"> {int(last)}" if pd.isna(value) else f"{value:.0f}"

    seeds = f"({n})" if n == n_jobs else f"({n} of {n_jobs} reached)"
    if n_jobs == 1:
        return f"{labels(median)} {seeds}"
    return f"{labels(median)} [{labels(low)}, {labels(high)}] {seeds}"


def curve_wide(table: pd.DataFrame, groups: list[str]) -> pd.DataFrame:
    """Rows = groups; columns = AUBC of each metric (and labels to each target), formatted cells."""
    if table.empty:
        return pd.DataFrame()
    out = None
    target = table["target"] if "target" in table.columns else pd.Series(float("nan"), index=table.index)
    for (metric, _), part in table.groupby([table["metric"], target], sort=False, dropna=False):
        part = part.copy()
        if metric == "labels_to_target":
            title = f"labels to accuracy {part['target'].iloc[0]:g}"
            part[title] = [format_target(m, lo, hi, int(n), int(j), last) for m, lo, hi, n, j, last in
                           zip(part["median"], part["min"], part["max"], part["n"], part["n_jobs"], part["read_at"],
                               strict=True)]
        else:
            title = f"AUBC {METRIC_TITLES[metric[len('aubc_'):]].removeprefix('test ')}"
            part[title] = [format_cell(m, s, int(n)) for m, s, n in zip(part["mean"], part["std"], part["n"],
                                                                          strict=True)]
        piece = part[[*groups, title]]
        out = piece if out is None else out.merge(piece, on=groups, how="outer")
    return out


def paired_table(summary: pd.DataFrame, curves: pd.DataFrame, groups: list[str], sizes: list[int],
                 reference: str = REFERENCE) -> pd.DataFrame:
    """Every heuristic against `reference`, paired by seed within each setting, at each size and on the
    AUBC. Long rows: others..., heuristic, versus, labelled (NaN for the AUBC), metric paired_<metric>
    or paired_aubc_<metric>, n, mean (the gain: positive = the heuristic is better), std, ci_low, ci_high,
    p_value, read_at."""
    if "heuristic" not in groups or "seed" not in summary.columns:
        return pd.DataFrame()
    others = [g for g in groups if g != "heuristic"]
    parts = []
    for metric in PAIRED_METRICS:
        if metric not in summary.columns:
            continue
        better_high = not stats.lower_is_better(metric)
        for size in sizes:
            at = after_start(rows_at_size(summary, size), summary)
            rows = stats.paired_against(at, metric, others, reference, better_high)
            if rows.empty:
                continue
            read_at = at.groupby([*others, "heuristic"], dropna=False)["labelled"].max().rename("read_at")
            rows = rows.merge(read_at.reset_index(), on=[*others, "heuristic"], how="left")
            rows["labelled"], rows["metric"] = size, f"paired_{metric}"
            parts.append(rows)
        column = f"aubc_{metric}"
        if not curves.empty and column in curves.columns:
            rows = stats.paired_against(curves, column, others, reference, better_high)
            if not rows.empty:
                rows["labelled"], rows["metric"] = np.nan, f"paired_{column}"
                parts.append(rows)
    if not parts:
        return pd.DataFrame()
    paired = pd.concat(parts, ignore_index=True)
    # one family per paired table (a metric: its sizes and its AUBC, every heuristic and setting)
    family = paired["metric"].str.replace("paired_aubc_", "paired_", regex=False)
    paired["p_holm"] = np.nan
    for _, index in paired.groupby(family).groups.items():
        paired.loc[index, "p_holm"] = stats.holm(paired.loc[index, "p_value"].to_numpy())
    return paired


def after_start(rows: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """The rows (steps) read after their job's first step: at the start every heuristic of a seed shares one
    model, so a comparison there says nothing."""
    first = summary.groupby("job")["labelled"].min()
    return rows[rows["labelled"] > rows["job"].map(first)]


def missing_reference(summary: pd.DataFrame, groups: list[str], reference: str = REFERENCE) -> list[str]:
    """The settings (row keys other than heuristic) at which no job ran `reference`, as 'k=v, ...' text."""
    others = [g for g in groups if g != "heuristic"]
    if "heuristic" not in groups or reference not in set(summary["heuristic"]) or not others:
        return []
    has = summary.groupby(others, dropna=False)["heuristic"].agg(lambda h: reference in set(h))
    missing = has[~has]
    return [", ".join(f"{k}={v}" for k, v in zip(others, key if isinstance(key, tuple) else (key,), strict=True))
            for key in missing.index]


def format_paired(mean: float, low: float, high: float, p: float, n: int, read_at: float | None = None,
                  size: float | None = None) -> str:
    """'+0.045 [+0.030, +0.060] p=0.003 (5)': mean gain over the paired seeds, its 95% interval, the paired
    t-test's p-value and the number of paired seeds."""
    if n == 0 or pd.isna(mean):
        return "-"
    where = "" if read_at is None or size is None or pd.isna(read_at) or pd.isna(size) or int(read_at) == int(size) \
        else f" @{int(read_at)}"
    if pd.isna(p):
        return f"{mean:+.3f} ({n}){where}" if n < 2 else f"{mean:+.3f} not testable ({n}){where}"
    p_text = "p<0.001" if p < 0.001 else f"p={p:.3f}"
    return f"{mean:+.3f} [{low:+.3f}, {high:+.3f}] {p_text} ({n}){where}"


def paired_wide(paired: pd.DataFrame, groups: list[str], metric: str) -> pd.DataFrame:
    """Rows = settings x heuristic, columns = sizes and AUBC, cells from :func:`format_paired`."""
    part = paired[paired["metric"].isin([f"paired_{metric}", f"paired_aubc_{metric}"])].copy() \
        if not paired.empty else paired
    if part.empty:
        return pd.DataFrame()
    part["column"] = [f"{int(size)} labelled" if not pd.isna(size) else "AUBC" for size in part["labelled"]]
    read_at = part["read_at"] if "read_at" in part.columns else [None] * len(part)
    part["cell"] = [format_paired(m, lo, hi, p, int(n), r, size) for m, lo, hi, p, n, r, size in
                    zip(part["mean"], part["ci_low"], part["ci_high"], part["p_value"], part["n"], read_at,
                        part["labelled"], strict=True)]
    order = list(dict.fromkeys(part["column"]))
    wide = part.pivot_table(index=groups, columns="column", values="cell", aggfunc="first")
    wide = wide[[c for c in order if c in wide.columns]].fillna("-")
    return wide.reset_index().rename_axis(columns=None)


def penalty_points(summary: pd.DataFrame, groups: list[str], metric: str) -> pd.DataFrame:
    """Rows (point, heuristic, seed, value): each setting x each labelled size after the shared start that
    every job of the setting reached (its budget points)."""
    others = [g for g in groups if g != "heuristic"]
    steps = after_start(summary, summary)
    parts = []
    settings = steps.groupby(others, dropna=False, sort=True) if others else [((), steps)]
    for key, part in settings:
        key = key if isinstance(key, tuple) else (key,)
        label = ", ".join(f"{k}={v}" for k, v in zip(others, key, strict=True))
        shared = set.intersection(*part.groupby("job")["labelled"].apply(set))
        part = part[part["labelled"].isin(shared)]
        points = (label + " @ " if label else "") + part["labelled"].astype(int).astype(str)
        parts.append(pd.DataFrame({"point": points, "heuristic": part["heuristic"], "seed": part["seed"],
                                   "value": part[metric]}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def penalty_tables(summary: pd.DataFrame, groups: list[str]) -> list[tuple[str, str, pd.DataFrame, int]]:
    """(metric, title, matrix, number of points) per paired metric, when three or more heuristics ran.

    The count of Lüth et al. (2023), after Ash et al. (2020): over every setting x every budget point after
    the shared start, the points where the row's heuristic beats the column's by a two-sided paired t-test
    over seeds at p < 0.05.
    """
    if "heuristic" not in groups or "seed" not in summary.columns or summary["heuristic"].nunique() < 3:
        return []
    out = []
    for metric in PAIRED_METRICS:
        if metric not in summary.columns:
            continue
        points = penalty_points(summary, groups, metric)
        if points.empty:
            continue
        matrix, n_points = stats.penalty_matrix(points, higher_is_better=not stats.lower_is_better(metric))
        if n_points == 0:  # one seed: nothing to test
            continue
        title = (f"Penalty matrix, {METRIC_TITLES[metric]}: at how many of {n_points} budget points (every setting "
                 "x every labelled size after the shared start) the row's heuristic is significantly better than "
                 f"the column's (two-sided paired t-test by seed, p < {stats.ALPHA}; the count of Lüth et al. 2023)")
        out.append((metric, title, matrix, n_points))
    return out


def acquisition_time_table(summary: pd.DataFrame, groups: list[str]) -> pd.DataFrame:
    """Mean seconds per acquisition (MC inference + selection) by group, and the speed-up against the
    largest pool fraction of the same heuristic."""
    acquiring = summary[summary["time_acquisition"] > 0]
    per_job = acquiring.groupby([*groups, "job"], dropna=False)["time_acquisition"].agg(["mean", "sum"]).reset_index()
    by_group = per_job.groupby(groups, dropna=False)
    table = by_group["mean"].agg(["mean", "std", "count"]).reset_index()
    # a job's whole acquisition time: fewer, larger queries are compared by what the job spent in all
    table["seconds_per_job"] = by_group["sum"].mean().to_numpy()
    if "pool_fraction" in groups:
        full = table.sort_values("pool_fraction").groupby("heuristic")["mean"].transform("last")
        table["speedup"] = full / table["mean"]
    return table.rename(columns={"mean": "seconds_per_acquisition", "std": "std", "count": "n"})


def per_class_f1_table(summary: pd.DataFrame, groups: list[str], size: int) -> pd.DataFrame:
    """Per-class F1 (mean over seeds) at `size`, classes ordered from rarest to most common in the labels
    of the training pool; the class counts come from the final labelled set of each job."""
    at = rows_at_size(summary, size)
    f1_cols = [c for c in at.columns if c.startswith("f1_") and c not in ("f1_reduced",)]
    counts = {c[3:]: at[f"count_{c[3:]}"].mean() for c in f1_cols if f"count_{c[3:]}" in at.columns}
    ordered = sorted(f1_cols, key=lambda c: counts.get(c[3:], 0.0))
    table = at.groupby(groups, dropna=False)[ordered].mean().round(3).reset_index()
    return table.rename(columns={c: c[3:] for c in ordered})


def study_sections(summary: pd.DataFrame, groups: list[str], sizes: list[int]) -> list[tuple[str, pd.DataFrame]]:
    """Extra tables of the paper's studies (chosen by the `study` the jobs recorded)."""
    studies = set(summary["study"].dropna()) if "study" in summary.columns else set()
    sections: list[tuple[str, pd.DataFrame]] = []
    if "time_acquisition" in summary.columns and ({"pool_size", "query_size"} & studies or "pool_fraction" in groups):
        sections.append(("Seconds per acquisition (MC inference over the scored pool + selection)",
                         acquisition_time_table(summary, groups).round(3)))
    if "f1_reduced" in summary.columns:
        table = long_table(summary, groups, sizes, metrics=("f1_reduced",))
        sections.append(("F1 of the reduced classes (mean over the delta classes each seed reduced)",
                         wide_table(table, groups, "f1_reduced")))
    if "miotcd" in studies:
        sections.append((f"Per-class F1 at {sizes[-1]} labelled, rarest class first (car is the most common)",
                         per_class_f1_table(summary, groups, sizes[-1])))
    return sections


def _integers(frame: pd.DataFrame) -> pd.DataFrame:
    """Sizes and counts as integers in table.csv, empty where a row has none (an AUBC has no size)."""
    out = frame.copy()
    for column in ("labelled", "read_at", "read_from", "n", "n_jobs"):
        if column in out.columns:
            out[column] = pd.to_numeric(out[column]).round().astype("Int64")
    return out


def _targets_of(summary: pd.DataFrame, target_accuracy: object) -> tuple[float, ...]:
    if target_accuracy is not None:
        return target_accuracies_of(target_accuracy)
    if "report_target_accuracy" in summary.columns:
        recorded = summary["report_target_accuracy"].dropna()
        if len(recorded):
            return target_accuracies_of(recorded.iloc[0])
    return ()


def evaluation_sections(summary: pd.DataFrame, groups: list[str], sizes: list[int], targets: tuple[float, ...]
                        ) -> tuple[list[tuple[str, pd.DataFrame]], pd.DataFrame, pd.DataFrame]:
    """The whole-curve table, the paired comparisons against Random and the penalty matrices: (titled
    tables for table.md and the terminal, their long rows for table.csv, the paired rows alone)."""
    curves = job_curves(summary, groups, targets)
    sections: list[tuple[str, pd.DataFrame]] = []
    longs = []
    if not curves.empty:
        table = curve_table(curves, groups, targets)
        longs.append(table)
        span = f"{int(curves['first_labelled'].min())} to {int(curves['last_labelled'].max())}"
        target = "" if not targets else (
            f"; labels to accuracy {' and '.join(f'{t:g}' for t in targets)}: the first labelled size at which a "
            "job reached it, median [min, max] over seeds (seeds), '> N' where seeds never did within the budget N")
        sections.append((f"Whole learning curve: AUBC (area under the curve over labelled {span}, trapezoid, "
                         f"divided by the budget range: the curve's mean), mean +- std over seeds (n){target}",
                         curve_wide(table, groups)))
    paired = paired_table(summary, curves, groups, sizes)
    if not paired.empty:
        longs.append(paired)
        for metric in PAIRED_METRICS:
            short = METRIC_TITLES[metric].removeprefix("test ")
            gain = f"{short}(random) - {short}(heuristic)" if stats.lower_is_better(metric) else \
                f"{short}(heuristic) - {short}(random)"
            wide = paired_wide(paired, [g for g in groups if g != "heuristic"] + ["heuristic"], metric)
            if not wide.empty:
                sections.append((f"{METRIC_TITLES[metric]} against Random, paired by seed: {gain} (positive: the "
                                 "heuristic is better), mean [95% CI, t distribution] paired t-test p-value (seeds "
                                 "paired); sizes after the shared start; 'not testable': the same difference on "
                                 "every seed", wide))
    for metric, title, matrix, n_points in penalty_tables(summary, groups):
        sections.append((title, matrix.rename_axis(index="better than:", columns=None).reset_index()))
        rows = matrix.stack().rename("mean").reset_index().rename(columns={"better": "heuristic", "than": "versus"})
        rows["metric"], rows["n"] = f"penalty_{metric}", n_points
        longs.append(rows)
    long = pd.concat(longs, ignore_index=True) if longs else pd.DataFrame()
    return sections, long, paired


def compact_table(full_table: pd.DataFrame, groups: list[str], final: int) -> pd.DataFrame:
    """The terminal's one table: per row key, test NLL and accuracy at the budget, the AUBC of accuracy
    and its gain against Random (paired by seed), as formatted cells."""
    at_final = full_table[full_table["labelled"] == final]
    pieces = []
    for metric, title in (("test_nll", f"test NLL @{final}"), ("test_acc", f"test accuracy @{final}")):
        wide = wide_table(at_final, groups, metric)
        if not wide.empty:
            pieces.append(wide.rename(columns={f"{final} labelled": title}))
    curve = full_table[full_table["metric"] == "aubc_test_acc"]
    if not curve.empty:
        cells = [format_cell(m, s, int(n)) for m, s, n in zip(curve["mean"], curve["std"], curve["n"], strict=True)]
        pieces.append(curve[groups].assign(**{"AUBC accuracy": cells}))
    gain = full_table[full_table["metric"] == "paired_aubc_test_acc"]
    if not gain.empty:
        cells = [format_paired(m, lo, hi, p, int(n)) for m, lo, hi, p, n in
                 zip(gain["mean"], gain["ci_low"], gain["ci_high"], gain["p_value"], gain["n"], strict=True)]
        pieces.append(gain[groups].assign(**{"AUBC accuracy - random's": cells}))
    if not pieces:
        return pd.DataFrame()
    out = pieces[0]
    for piece in pieces[1:]:
        out = out.merge(piece, on=groups, how="left")
    return out.fillna("-")


def validation_note(summary: pd.DataFrame) -> str | None:
    """A sentence on the labels early stopping spent beside the labelled sizes (its validation set), or None
    when no job held one out."""
    if "validation_labels" not in summary.columns:
        return None
    spent = sorted({int(v) for v in summary["validation_labels"].dropna() if v > 0})
    if not spent:
        return None
    return (f"Labels spent on validation (early stopping), on top of the labelled sizes shown: "
            f"{', '.join(f'{v:,}' for v in spent)} per job.")


def fit_note(summary: pd.DataFrame) -> str | None:
    """A sentence counting the steps the under-fitting guard flagged (steps.csv's `fit_flag`, by reason), or
    None when none is (or the steps predate the guard)."""
    if "fit_flag" not in summary.columns:
        return None
    counts = flag_counts(summary["fit_flag"].tolist())
    if not counts:
        return None
    reasons = ", ".join(f"{n} {word}" for word, n in counts.items())
    return (f"Flagged steps (the model did not fit, see `fit_flag` in summary.csv): {sum(counts.values())} of "
            f"{len(summary)} ({reasons}); the tables still average them in.")


def write_report(sweep_dir: Path, sizes: list[int] | None = None,
                 target_accuracy: float | list[float] | None = None, compress: bool | None = None) -> Report | None:
    """Aggregate every job under `sweep_dir` and write the summary, tables and plot there.

    A folder holding only a summary.csv or summary.csv.gz (no job folders) is rebuilt from it. `target_accuracy`,
    one test accuracy or a list (else the jobs' `report.target_accuracy`), adds the labels each job needed to
    reach it. `compress`: write the summary gzip-compressed (True), as text (False), or as the folder holds it
    (None, see :func:`write_summary`). Returns None when no job has finished a step yet.
    """
    sweep_dir = Path(sweep_dir)
    summary, failed = collect(sweep_dir)
    if summary.empty:
        return None
    if sizes is None and "report_sizes" in summary.columns:
        sizes = json.loads(summary["report_sizes"].iloc[0]) or None
    targets = _targets_of(summary, target_accuracy)
    groups = group_columns_of(summary) or ["job"]  # jobs that recorded no settings: one row each
    summary = label_heuristics(summary, setting_keys_of(summary))
    check_one_job_per_seed(summary, groups)
    chosen, sizes_note = choose_sizes(summary, sizes)
    table = long_table(summary, groups, chosen)
    # the sizes and the target travel in summary.csv, so a folder holding only it rebuilds the same tables
    summary["report_sizes"] = json.dumps(chosen)
    summary["report_target_accuracy"] = target_record(targets)
    evaluation, evaluation_long, paired = evaluation_sections(summary, groups, chosen, targets)
    found = make_verdict(summary, paired, groups)
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
                "Each heuristic against random, paired by seed, on the whole learning curve of test accuracy "
                "(AUBC; p Holm-adjusted over the accuracy table):\n",
                *(f"- {line}" for line in found.lines), "",
                f"{n_jobs} jobs, seeds {', '.join(str(x) for x in seeds) or '-'}. Cells: mean +- std over seeds "
                "(number of seeds). Read at the labelled sizes shown; a cell marked @N was read at N labelled "
                "items, the group's last step below that size.\n"]
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
                  found.lines, notes, unfinished)


def main(argv: list[str] | None = None) -> int:
    """`python -m alrun.report FOLDER [--sizes 500 1000]`: re-aggregate a sweep folder."""
    parser = argparse.ArgumentParser(prog="python -m alrun.report", description=main.__doc__)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--sizes", type=int, nargs="*", default=None, help="labelled sizes to read the table at")
    parser.add_argument("--target-accuracy", type=float, nargs="+", default=None,
                        help="report the labels each job needed to reach this test accuracy (or these)")
    parser.add_argument("--full", action="store_true",
                        help="print every table of table.md, not only the verdict and the compact table")
    parser.add_argument("--gzip", action="store_true",
                        help="write the summary as summary.csv.gz (a folder that holds one keeps it without this)")
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        print(f"alrun: error: {args.folder} is not a folder.", file=sys.stderr)
        return 2
    try:
        targets = args.target_accuracy
        report = write_report(args.folder, args.sizes, targets[0] if targets and len(targets) == 1 else targets,
                              compress=True if args.gzip else None)
    except AlrunError as exc:
        print(f"alrun: error: {exc}", file=sys.stderr)
        return 2
    if report is None:
        print(f"alrun: error: no job under {args.folder} has finished a step (no steps.csv, no summary.csv).",
              file=sys.stderr)
        return 2
    from alrun.progress import print_report
    from alrun.tracking import log_to_recorded_store

    print_report(report, args.folder, full=args.full)
    log_to_recorded_store(args.folder, report)  # a tracked sweep's parent run gets the new numbers, each once
    return 0


if __name__ == "__main__":
    sys.exit(main())
