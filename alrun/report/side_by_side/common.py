"""The inputs (the committed summaries, the paper's tables), our paired gains, and the formatting the
sections share; NOTES collects each finding's verdict for the summary table.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from alrun.report import read_summary, rows_at_size, stats, summary_file

# the results folder of a source checkout (beside alrun/); --results names another
RESULTS_DIR = Path(__file__).resolve().parents[3] / "results"
PAPER_SIZES, CPU = "`scale=cpu_paper_sizes`", "`scale=cpu`"
START, END = "<!-- side-by-side:start -->", "<!-- side-by-side:end -->"
NAMES = {"bald": "BALD", "entropy": "Entropy", "random": "Random", "batchbald": "BatchBALD", "power_bald": "power-BALD"}


# --- inputs -----------------------------------------------------------------------------------------------


def load(name: str) -> pd.DataFrame:
    return read_summary(summary_file(RESULTS_DIR / "reference" / name))


def paper_table(number: int) -> pd.DataFrame:
    """The paper's Table `number` as a frame: one column per header cell, "0.65 +- 0.01" cells as text."""
    text = (RESULTS_DIR / "paper_tables.md").read_text()
    block = text.split(f"## Table {number}:")[1].split("\n## ")[0]
    lines = [line for line in block.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    return pd.DataFrame(rows, columns=header)


def mean_of(cell: str) -> float:
    return float(cell.split("+-")[0])


def paper_sizes(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if re.fullmatch(r"[\d,]+", c)]


# --- ours -------------------------------------------------------------------------------------------------


def cells(summary: pd.DataFrame, size: int, by: list[str], metric: str = "test_nll") -> pd.DataFrame:
    """mean and std over seeds of `metric` at `size`, per `by`."""
    at = rows_at_size(summary, size)
    return at.groupby(by)[metric].agg(["mean", "std", "count"])


def gains(summary: pd.DataFrame, size: int | None, by: list[str], metric: str = "test_nll") -> pd.DataFrame:
    """Paired gain against Random per (by..., heuristic); size None: on the AUBC of the whole curve."""
    if size is None:
        frame = stats.per_job_curves(summary, [*by, "heuristic", "seed"], (metric,))
        return stats.paired_against(frame, f"aubc_{metric}", by, higher_is_better=False).set_index(
            [*by, "heuristic"])
    at = rows_at_size(summary, size)
    out = stats.paired_against(at, metric, by, higher_is_better=False).set_index([*by, "heuristic"])
    out["read_at"] = at.groupby([*by, "heuristic"])["labelled"].max().reindex(out.index)
    out["size"] = size
    return out


def fmt(mean: float, std: float | None = None, digits: int = 3) -> str:
    if pd.isna(mean):
        return "-"
    return f"{mean:.{digits}f}" if std is None or pd.isna(std) else f"{mean:.{digits}f} +- {std:.{digits}f}"


def fmt_gain(row: pd.Series) -> str:
    """'+0.045 [+0.030, +0.060] p=0.003': the paired mean gain, its 95% interval and the t-test."""
    p = "p<0.001" if row["p_value"] < 0.001 else f"p={row['p_value']:.3f}"
    where = f" @{int(row['read_at'])}" if "read_at" in row and row["read_at"] != row["size"] else ""
    return f"{row['mean']:+.3f} [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}] {p}{where}"


def significant(row: pd.Series) -> bool:
    return bool(row["p_value"] < stats.ALPHA)


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def joined(values, spec: str = "+.3f") -> str:
    """'+0.045 / +0.030 / ...'"""
    return " / ".join(format(v, spec) for v in values)


NOTES: list[tuple[str, str, str]] = []  # (finding, scale, verdict), collected while rendering


def note(finding: str, scale: str, text: str) -> str:
    """Record a verdict for the summary table; returns it for the sentence that states it."""
    NOTES.append((finding, scale, text))
    return text


def verdict(flags: list[bool]) -> str:
    """yes (all), no (none), or partly (k of n)."""
    if all(flags):
        return "yes"
    return "no" if not any(flags) else f"partly ({count_text(flags)})"


def count_text(flags: list[bool]) -> str:
    return f"{sum(flags)} of {len(flags)}"
