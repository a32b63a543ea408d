"""What `tracker=mlflow` logs, as plain names and values: a job's params, a report's metrics and tags.

A leaf (no mlflow import, no I/O): the training process builds these and the logger process
(alrun.track.mlflow_logger) sends them to MLflow. Names are made valid for MLflow here (a key holds
alphanumerics, ``_ - . /`` and spaces only, at most 250 characters, and no ``.``, ``..`` or empty
path segment; a param value at most 6,000 characters).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from alrun.report import Report

MAX_KEY = 250  # MLflow's longest param, metric or tag key
MAX_PARAM_VALUE = 6000  # MLflow's longest param value (since MLflow 2.x; older servers took 500)
MAX_TAG_VALUE = 8000  # MLflow's longest tag value
# the verdict's numbers the parent run gets, by the name of their column in Report.verdict
VERDICT_NUMBERS = {"mean": "gain", "ci_low": "ci_low", "ci_high": "ci_high", "p_value": "p", "p_holm": "p_holm",
                   "n": "n"}


def metric_key(name: str) -> str:
    """A name made valid as an MLflow metric key (alphanumerics, _ - . space / only)."""
    return re.sub(r"[^0-9A-Za-z_\-. /]+", "_", name).strip() or "metric"


def key_part(value: Any) -> str:
    """One `/`-separated part of a key: a setting's name or value with every character MLflow refuses
    (and `/`) made `_`; never empty, `.` or `..` (MLflow reads keys as paths)."""
    part = re.sub(r"[^0-9A-Za-z_\-. ]+", "_", str(value)).strip()
    return part if part.strip(".") else f"_{part}_"


def join_key(*parts: Any) -> str:
    """A metric or tag key from its parts, each made valid, cut to MLflow's 250 characters."""
    return "/".join(key_part(p) for p in parts)[:MAX_KEY].rstrip("/ ")


def param_value(value: Any) -> str:
    """A setting's value as MLflow keeps it: YAML's spelling (null, true, false), else its text, cut to
    MLflow's 6,000 characters."""
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = str(value)
    return text[:MAX_PARAM_VALUE]


def job_params(config: Mapping[str, Any] | None, settings: Mapping[str, Any]) -> dict[str, str]:
    """A child run's params: every key of the job's flat resolved config (job.json's "config": dotted keys,
    component paths and machine paths included), and of its recorded settings those the config lacks (the
    readable heuristic, dataset and resolved model names)."""
    merged = {**settings, **(config or {})}
    out: dict[str, str] = {}
    for key, value in merged.items():
        name = join_key(*str(key).split("/"))  # a key is never a path: keep its dots, lose what MLflow refuses
        out.setdefault(name, param_value(value))
    return out


def _is_number(value: Any) -> bool:
    try:
        return not math.isnan(float(value))
    except (TypeError, ValueError):
        return False


def _label(row: Any, columns: list[str]) -> str:
    return " ".join(f"{c} {row[c]}" for c in columns) if columns else "all"


def headline_metrics(report: Report) -> list[tuple[str, float, int]]:
    """(key, value, step = labelled size) of the report's table cells read at a labelled size: the mean of
    each metric per row (`test_nll/heuristic bald`), and each heuristic's paired gain against random
    (`paired_test_nll/heuristic bald`, positive: the heuristic is better)."""
    from alrun.report import METRICS

    out: list[tuple[str, float, int]] = []
    groups = report.group_columns
    for _, cell in report.table.iterrows():
        metric = str(cell["metric"])
        if not (metric in METRICS or metric.startswith("paired_test_")):
            continue
        if _is_number(cell["mean"]) and _is_number(cell.get("labelled")):  # AUBC rows have no labelled size
            out.append((metric_key(f"{metric}/{_label(cell, groups)}"), float(cell["mean"]), int(cell["labelled"])))
    return out


def _verdict_rows(report: Report) -> list[tuple[list[str], dict[str, Any]]]:
    """([metric, the row's other group values..., heuristic], row) of each row of the report's verdict."""
    verdict = getattr(report, "verdict", None)
    if verdict is None or len(verdict) == 0:
        return []
    known = {"heuristic", "versus", "metric", "decision", *VERDICT_NUMBERS}
    others = [c for c in report.group_columns if c in verdict.columns and c not in known]
    rows = []
    for _, row in verdict.iterrows():
        parts = [str(row["metric"]), *(f"{c} {row[c]}" for c in others), str(row["heuristic"])]
        if "versus" in verdict.columns and str(row["versus"]) not in ("random", "nan", "None"):
            parts[-1] += f" vs {row['versus']}"
        rows.append((parts, row))
    return rows


def verdict_metrics(report: Report) -> list[tuple[str, float, int]]:
    """(key, value, 0) of the verdict's numbers, one key per heuristic (per row key), metric and number:
    `verdict/aubc_test_nll/bald/gain`, `.../ci_low`, `.../ci_high`, `.../p`, `.../p_holm`, `.../n`, and
    `verdict/labels_saved/bald/mean` (labels saved against random); a number the verdict lacks is left out."""
    out = []
    for parts, row in _verdict_rows(report):
        for column, name in VERDICT_NUMBERS.items():
            if column == "mean" and row["metric"] == "labels_saved":
                name = "mean"
            if column in row.index and _is_number(row[column]):
                out.append((join_key("verdict", *parts, name), float(row[column]), 0))
    return out


def verdict_tags(report: Report) -> dict[str, str]:
    """The verdict's decision per heuristic and metric (`verdict/aubc_test_acc/bald`: better, worse, no
    decision, not testable, chance level), and its sentences as the tag `verdict` where the report has them."""
    tags = {join_key("verdict", *parts): str(row["decision"])[:MAX_TAG_VALUE]
            for parts, row in _verdict_rows(report) if "decision" in row.index}
    lines = getattr(report, "verdict_lines", None)
    if lines:
        tags["verdict"] = "\n".join(str(line) for line in lines)[:MAX_TAG_VALUE]
    return tags
