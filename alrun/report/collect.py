"""Read a sweep folder: every job's steps.csv and job.json -> one summary frame (and back to disk)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd

from alrun.config.settings import experiment_settings, is_path_setting
from alrun.core.files import atomic_write_text

# settings recorded for every job; those that vary across a sweep (seed aside) become table rows
SETTING_COLUMNS = ("heuristic", "lambda", "delta", "query_size", "pool_fraction", "epochs", "dataset", "model",
                   "mc_samples")


# the summary's file: plain text, or gzip-compressed when asked (a sweep's settings repeat on every step row,
# so it compresses about tenfold); a folder holds one of them
SUMMARY, SUMMARY_GZ = "summary.csv", "summary.csv.gz"


def _job_settings(meta: dict) -> tuple[dict, list[str]]:
    """(every column a job's record gives its rows, the keys among them that define the experiment).

    Jobs written with the whole resolved config ("config" in job.json) are keyed on every experiment setting
    of it (paths and run-side keys left out, see :mod:`alrun.config.settings`); the readable names of the heuristic,
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
    # the scale is no experiment setting (its values are), but the report names it among those held fixed
    scale = {"scale": config["scale_name"]} if config.get("scale_name") else {}
    return {**scale, **overrides, **keyed}, sorted(keyed)


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
    # the verdict's declared settings and the job's own class count (chance level per setting), where the job
    # recorded them (older jobs did not: their summaries stay as they were)
    for key in ("report_primary", "report_equivalence_margin", "n_classes"):
        if meta.get(key) is not None:
            steps[key] = meta[key]
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
