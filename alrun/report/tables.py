"""The report's tables as frames and their markdown: cells formatted, sections assembled (only formatting and
the choice of what a section shows)."""

from __future__ import annotations

import pandas as pd

from alrun.report import stats
from alrun.report.frames import (
    METRIC_TITLES,
    PAIRED_METRICS,
    acquisition_time_table,
    curve_table,
    job_curves,
    long_table,
    paired_table,
    penalty_points,
    per_class_f1_table,
)
from alrun.train.fit_guard import flag_counts


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
    if "noisy_fit_acc" in summary.columns and summary["noisy_fit_acc"].notna().any():
        noisy = summary[summary["noisy_fit_acc"].notna()]
        table = long_table(noisy, groups, sizes, metrics=("train_acc", "noisy_fit_acc", "noisy_true_acc"))
        for metric, what in (("noisy_fit_acc", "share of the wrong labels the model fits as given (1 = memorised)"),
                             ("noisy_true_acc", "share of them it predicts as their true class")):
            wide = wide_table(table, groups, metric)
            if not wide.empty:
                sections.append((f"Memorisation of the noisy labels: {what}", wide))
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
