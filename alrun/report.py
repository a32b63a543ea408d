"""Aggregate a sweep folder into tables and plots; reads only files.

The Hydra callback at the end of a sweep and ``python -m alrun.report FOLDER`` call the same
:func:`write_report`, so a sweep whose jobs ran on many machines can be aggregated at any time.

Files written at the top of the folder: ``summary.csv`` (every step of every job, the job's
settings as columns), ``table.csv`` (long: group, labelled size, metric, mean, std, n),
``table.md`` (the paper's layout: mean +- std over seeds, the seed count shown) and ``curves.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from alrun.checkpoint import atomic_write_text

# settings recorded for every job; those that vary across a sweep (seed aside) become table rows
SETTING_COLUMNS = ("heuristic", "lambda", "delta", "query_size", "pool_fraction", "epochs", "dataset", "model",
                   "mc_samples")
METRICS = ("test_nll", "test_acc", "test_f1_macro")
METRIC_TITLES = {"test_nll": "test NLL", "test_acc": "test accuracy", "test_f1_macro": "test macro F1"}


@dataclass
class Report:
    """What :func:`write_report` produced."""

    summary: pd.DataFrame  # every step of every job
    table: pd.DataFrame  # long: groups..., labelled, metric, mean, std, n
    group_columns: list[str]
    sizes: list[int]
    markdown: str
    failed_jobs: list[str]
    extra: list[tuple[str, pd.DataFrame]]  # the study's own tables (active gain, timings, per-class F1)


def _read_job(job_dir: Path, sweep_dir: Path) -> pd.DataFrame | None:
    steps = pd.read_csv(job_dir / "steps.csv")
    if steps.empty:
        return None
    meta_path = job_dir / "job.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    settings = meta.get("settings", {})
    # typed settings win over the override strings (query_size 1000 sorts after 250)
    for key, value in {**meta.get("overrides", {}), **settings}.items():
        steps[key] = value if not isinstance(value, (list, dict)) else json.dumps(value)
    steps["study"] = meta.get("study")
    reduced = meta.get("reduced_classes") or []
    f1_cols = [f"f1_{c}" for c in reduced if f"f1_{c}" in steps.columns]
    if f1_cols:
        steps["f1_reduced"] = steps[f1_cols].mean(axis=1)
    steps["time_acquisition"] = steps["time_infer"] + steps["time_acquire"]
    steps["job"] = str(job_dir.relative_to(sweep_dir))
    steps["finished"] = (job_dir / "done").exists()
    steps["report_sizes"] = json.dumps(meta.get("report_sizes") or [])
    return steps


def failed_jobs(sweep_dir: Path) -> list[str]:
    """Job folders under `sweep_dir` (relative names) that hold a `failed` marker."""
    sweep_dir = Path(sweep_dir)
    return sorted(str(p.parent.relative_to(sweep_dir)) for p in sweep_dir.rglob("failed"))


def failure_reason(job_dir: Path) -> str:
    """The last line of a failed job's error.txt: its one-sentence error or the exception it raised."""
    try:
        lines = [line for line in (Path(job_dir) / "error.txt").read_text().splitlines() if line.strip()]
    except OSError:
        return "no error.txt"
    return lines[-1].strip() if lines else "empty error.txt"


def collect(sweep_dir: Path) -> tuple[pd.DataFrame, list[str]]:
    """(every step of every job under `sweep_dir`, names of job folders that failed)."""
    sweep_dir = Path(sweep_dir)
    frames = []
    for steps_path in sorted(sweep_dir.rglob("steps.csv")):
        frame = _read_job(steps_path.parent, sweep_dir)
        if frame is not None:
            frames.append(frame)
    failed = failed_jobs(sweep_dir)
    if not frames:
        return pd.DataFrame(), failed
    return pd.concat(frames, ignore_index=True, sort=False), failed


def group_columns_of(summary: pd.DataFrame) -> list[str]:
    """The settings that vary across the jobs (seed aside); heuristic always comes last."""
    varying = [c for c in SETTING_COLUMNS if c in summary.columns and c != "heuristic"
               and summary[c].astype(str).nunique() > 1]
    return varying + (["heuristic"] if "heuristic" in summary.columns else [])


def choose_sizes(summary: pd.DataFrame, requested: list[int] | None, how_many: int = 4) -> list[int]:
    """Labelled sizes at which the table is read: the requested ones that some job reached, or a
    few evenly spaced sizes every job reached."""
    reached = int(summary["labelled"].max())
    if requested:
        sizes = sorted({int(s) for s in requested if int(s) <= reached})
        if sizes:
            return sizes
    per_job = summary.groupby("job")["labelled"].apply(set)
    common = sorted(set.intersection(*per_job)) if len(per_job) else []
    if not common:
        common = sorted(summary["labelled"].unique())
    picks = np.unique(np.linspace(0, len(common) - 1, num=min(how_many, len(common))).round().astype(int))
    return [int(common[i]) for i in picks]


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
    wide.columns = [f"{c} labelled" for c in wide.columns]
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


def paired_gain(summary: pd.DataFrame, groups: list[str], sizes: list[int], metric: str = "test_nll",
                reference: str = "random", method: str = "bald") -> pd.DataFrame:
    """Active gain per seed: metric(reference) - metric(method) of the jobs sharing every other setting
    and the seed (so the same initial labels); mean, std and n over seeds, per group and size."""
    others = [g for g in groups if g != "heuristic"]
    parts = []
    for size in sizes:
        at = rows_at_size(summary, size)
        wide = at.pivot_table(index=[*others, "seed"], columns="heuristic", values=metric, aggfunc="first")
        if reference not in wide.columns or method not in wide.columns:
            continue
        gain = (wide[reference] - wide[method]).dropna().rename("gain").reset_index()
        if others:
            agg = gain.groupby(others, dropna=False)["gain"].agg(["mean", "std", "count"]).reset_index()
            agg["read_at"] = at.groupby(others, dropna=False)["labelled"].max().reindex(
                pd.MultiIndex.from_frame(agg[others]) if len(others) > 1 else agg[others[0]]).to_numpy()
        else:
            agg = pd.DataFrame([gain["gain"].agg(["mean", "std", "count"])])
            agg["read_at"] = at["labelled"].max()
        agg["labelled"] = size
        agg["metric"] = f"gain_{metric}"
        parts.append(agg.rename(columns={"count": "n"}))
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


def study_sections(summary: pd.DataFrame, groups: list[str], sizes: list[int]) -> list[tuple[str, pd.DataFrame]]:
    """Extra tables of the paper's studies (chosen by the `study` the jobs recorded)."""
    studies = set(summary["study"].dropna()) if "study" in summary.columns else set()
    sections: list[tuple[str, pd.DataFrame]] = []
    if "convergence" in studies or {"bald", "random"} <= set(summary.get("heuristic", [])):
        gain = paired_gain(summary, groups, sizes)
        if not gain.empty:
            others = [g for g in groups if g != "heuristic"]
            sections.append(("Active gain: NLL(random) - NLL(bald), paired by seed (positive: BALD helps)",
                             wide_table(gain, others or ["metric"], "gain_test_nll")))
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


def write_report(sweep_dir: Path, sizes: list[int] | None = None) -> Report | None:
    """Aggregate every job under `sweep_dir` and write the summary, tables and plot there.

    Returns None when no job has finished a step yet.
    """
    sweep_dir = Path(sweep_dir)
    summary, failed = collect(sweep_dir)
    if summary.empty:
        return None
    if sizes is None and "report_sizes" in summary.columns:
        sizes = json.loads(summary["report_sizes"].iloc[0]) or None
    groups = group_columns_of(summary)
    chosen = choose_sizes(summary, sizes)
    table = long_table(summary, groups, chosen)
    atomic_write_text(sweep_dir / "summary.csv", summary.drop(columns=["report_sizes"]).to_csv(index=False))
    atomic_write_text(sweep_dir / "table.csv", table.to_csv(index=False))
    sections = [f"# Results of {sweep_dir.name}\n",
                "Cells: mean +- std over seeds (number of seeds). Read at the labelled sizes shown; a cell marked "
                "@N was read at N labelled items, the group's last step below that size.\n"]
    for metric in METRICS:
        sections.append(f"## {METRIC_TITLES[metric]}\n")
        sections.append(to_markdown(wide_table(table, groups, metric)))
    extra = study_sections(summary, groups, chosen)
    for title, frame in extra:
        sections.append(f"## {title}\n")
        sections.append(to_markdown(frame))
    if failed:
        sections.append("\nFailed jobs (their `error.txt` has the details):\n")
        sections.extend(f"- {job}: {failure_reason(sweep_dir / job)}" for job in failed)
    markdown = "\n".join(sections)
    atomic_write_text(sweep_dir / "table.md", markdown)
    plot_curves(summary, groups, sweep_dir / "curves.png")
    return Report(summary, table, groups, chosen, markdown, failed, extra)


def main(argv: list[str] | None = None) -> int:
    """`python -m alrun.report FOLDER [--sizes 500 1000]`: re-aggregate a sweep folder."""
    parser = argparse.ArgumentParser(prog="python -m alrun.report", description=main.__doc__)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--sizes", type=int, nargs="*", default=None, help="labelled sizes to read the table at")
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        print(f"alrun: error: {args.folder} is not a folder.", file=sys.stderr)
        return 2
    report = write_report(args.folder, args.sizes)
    if report is None:
        print(f"alrun: error: no job under {args.folder} has finished a step (no steps.csv found).", file=sys.stderr)
        return 2
    from alrun.progress import print_report

    print_report(report, args.folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
