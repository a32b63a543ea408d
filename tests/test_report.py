"""Aggregation of a sweep folder, on job folders the test writes by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from alrun.report import choose_sizes, format_cell, write_report


def write_job(sweep: Path, heuristic: str, seed: int, nll: list[float], extra: dict | None = None,
              study: str = "convergence", reduced: list[str] | None = None, times: list[float] | None = None,
              labelled: list[int] | None = None):
    folder = sweep / f"heuristic={heuristic},seed={seed}" if not extra else \
        sweep / (",".join(f"{k}={v}" for k, v in extra.items()) + f",heuristic={heuristic},seed={seed}")
    folder.mkdir(parents=True)
    labelled = labelled or [10, 20, 30][: len(nll)]
    times = times or [0.5] * len(nll)
    rows = pd.DataFrame({
        "step": range(len(nll)), "labelled": labelled, "test_nll": nll, "test_acc": [0.5] * len(nll),
        "test_f1_macro": [0.4] * len(nll), "f1_a": [0.2] * len(nll), "f1_b": [0.6] * len(nll),
        "count_a": [1] * len(nll), "count_b": [l - 1 for l in labelled],
        "time_train": [1.0] * len(nll), "time_infer": times[:-1] + [0.0], "time_acquire": [0.0] * len(nll),
    })
    rows.to_csv(folder / "steps.csv", index=False)
    settings = {"heuristic": heuristic, "seed": seed, "lambda": 0.0, "delta": 0, "query_size": 10,
                "pool_fraction": 1.0, "epochs": 5, "dataset": "digits", "model": "mlp", "mc_samples": 4}
    settings.update(extra or {})
    (folder / "job.json").write_text(json.dumps({"settings": settings, "overrides": {}, "study": study,
                                                 "report_sizes": None, "reduced_classes": reduced or []}))
    (folder / "done").write_text("")


def test_paired_active_gain(tmp_path):
    write_job(tmp_path, "bald", 0, [2.0, 1.0, 0.5])
    write_job(tmp_path, "bald", 1, [2.0, 1.2, 0.7])
    write_job(tmp_path, "random", 0, [2.0, 1.5, 0.6])
    write_job(tmp_path, "random", 1, [2.0, 1.3, 0.9])
    report = write_report(tmp_path)
    assert report.sizes == [10, 20, 30]
    title, gain = report.extra[0]
    assert "Active gain" in title
    # seed 0: 0.5 and 0.1, seed 1: 0.1 and 0.2
    assert gain.iloc[0]["20 labelled"] == format_cell(0.3, pd.Series([0.5, 0.1]).std(), 2)
    assert gain.iloc[0]["30 labelled"] == format_cell(0.15, pd.Series([0.1, 0.2]).std(), 2)
    md = (tmp_path / "table.md").read_text()
    assert "Active gain" in md and "1.400 +- 0.141 (2)" in md  # random NLL at 20 labels
    for name in ("summary.csv", "table.csv", "curves.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_cells_read_below_the_column_size_say_where(tmp_path):
    """A query size of 20 steps 10 -> 30: its cell in the 20 column is read at 10 and must say so."""
    for heuristic, nll in (("bald", [2.0, 0.5]), ("random", [2.0, 0.9])):
        write_job(tmp_path, heuristic, 0, nll, extra={"query_size": 20}, study="query_size", labelled=[10, 30])
        write_job(tmp_path, heuristic, 0, [2.0, 1.0, 0.5], extra={"query_size": 10}, study="query_size")
    report = write_report(tmp_path, [10, 20, 30])
    nll = report.table[(report.table["metric"] == "test_nll") & (report.table["labelled"] == 20)]
    assert sorted(nll["read_at"]) == [10, 10, 20, 20]
    md = (tmp_path / "table.md").read_text()
    assert "| 20 | bald | 2.000 (1) | 2.000 (1) @10 | 0.500 (1) |" in md
    assert "| 10 | bald | 2.000 (1) | 1.000 (1) | 0.500 (1) |" in md
    assert "| 20 | 0.000 (1) | 0.000 (1) @10 | 0.400 (1) |" in md  # the paired gain table too
    times = dict(report.extra)["Seconds per acquisition (MC inference over the scored pool + selection)"]
    q20 = times[(times["query_size"] == 20) & (times["heuristic"] == "bald")].iloc[0]
    q10 = times[(times["query_size"] == 10) & (times["heuristic"] == "bald")].iloc[0]
    # write_job times 0.5 s per acquisition: one acquisition for Q = 20, two for Q = 10
    assert (q20["seconds_per_acquisition"], q20["seconds_per_job"]) == (0.5, 0.5)
    assert (q10["seconds_per_acquisition"], q10["seconds_per_job"]) == (0.5, 1.0)


def test_pool_fraction_speedup_and_reduced_f1(tmp_path):
    for frac, t in ((1.0, 4.0), (0.25, 1.0)):
        for seed in (0, 1):
            write_job(tmp_path, "bald", seed, [2.0, 1.0, 0.5], extra={"pool_fraction": frac},
                      study="pool_size", reduced=["a"], times=[t, t, t])
    report = write_report(tmp_path)
    assert report.group_columns == ["pool_fraction", "heuristic"]
    titles = dict(report.extra)
    timing = next(v for k, v in titles.items() if k.startswith("Seconds"))
    quarter = timing[timing["pool_fraction"] == 0.25].iloc[0]
    assert quarter["seconds_per_acquisition"] == pytest.approx(1.0) and quarter["speedup"] == pytest.approx(4.0)
    reduced = next(v for k, v in titles.items() if k.startswith("F1 of the reduced"))
    assert reduced.iloc[0]["10 labelled"].startswith("0.200")


def test_failed_jobs_are_listed_and_partial_jobs_counted(tmp_path):
    write_job(tmp_path, "bald", 0, [2.0, 1.0, 0.5])
    write_job(tmp_path, "bald", 1, [2.0, 1.1])  # interrupted before 30 labels
    (tmp_path / "heuristic=bald,seed=2").mkdir()
    (tmp_path / "heuristic=bald,seed=2" / "failed").write_text("")
    report = write_report(tmp_path, sizes=[20, 30])
    assert report.failed_jobs == ["heuristic=bald,seed=2"]
    nll = report.table[report.table["metric"] == "test_nll"].set_index("labelled")
    assert nll.loc[20, "n"] == 2 and nll.loc[30, "n"] == 1
    assert "Failed jobs" in (tmp_path / "table.md").read_text()


def test_choose_sizes_defaults_to_sizes_every_job_reached(tmp_path):
    summary = pd.DataFrame({"job": ["a"] * 4 + ["b"] * 3, "labelled": [10, 20, 30, 40, 10, 20, 30]})
    assert choose_sizes(summary, None, how_many=3) == [10, 20, 30]
    assert choose_sizes(summary, [25, 40, 1000]) == [25, 40]


def test_empty_folder_gives_none(tmp_path):
    assert write_report(tmp_path) is None
