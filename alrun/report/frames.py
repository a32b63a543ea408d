"""The summary frame -> grouped frames: settings that vary, sizes to read at, mean/std tables, curves, paired
comparisons against Random, penalty points. Pure pandas; nothing here formats or writes."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from alrun.core.errors import AlrunError, ConfigError
from alrun.report import stats
from alrun.report.collect import SETTING_COLUMNS

METRICS = ("test_nll", "test_acc", "test_balanced_acc", "test_f1_macro")


METRIC_TITLES = {"test_nll": "test NLL", "test_acc": "test accuracy", "test_balanced_acc": "test balanced accuracy",
                 "test_f1_macro": "test macro F1"}


# metrics whose whole curve (AUBC) and paired comparison against Random the report gives
CURVE_METRICS = ("test_nll", "test_acc", "test_balanced_acc")


PAIRED_METRICS = ("test_nll", "test_acc")


REFERENCE = "random"


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


def _targets_of(summary: pd.DataFrame, target_accuracy: object) -> tuple[float, ...]:
    if target_accuracy is not None:
        return target_accuracies_of(target_accuracy)
    if "report_target_accuracy" in summary.columns:
        recorded = summary["report_target_accuracy"].dropna()
        if len(recorded):
            return target_accuracies_of(recorded.iloc[0])
    return ()
