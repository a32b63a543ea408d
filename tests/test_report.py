"""Aggregation of a sweep folder, on job folders the test writes by hand."""

from __future__ import annotations

import gzip
import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from alrun.core.errors import ConfigError
from alrun.report import choose_sizes, read_summary, summary_file, write_report


def write_job(sweep: Path, heuristic: str, seed: int, nll: list[float], extra: dict | None = None,
              study: str = "convergence", reduced: list[str] | None = None, times: list[float] | None = None,
              labelled: list[int] | None = None, acc: list[float] | None = None, overrides: dict | None = None):
    folder = sweep / f"heuristic={heuristic},seed={seed}" if not extra else \
        sweep / (",".join(f"{k}={v}" for k, v in extra.items()) + f",heuristic={heuristic},seed={seed}")
    folder.mkdir(parents=True)
    labelled = labelled or [10, 20, 30][: len(nll)]
    times = times or [0.5] * len(nll)
    rows = pd.DataFrame({
        "step": range(len(nll)), "labelled": labelled, "test_nll": nll, "test_acc": acc or [0.5] * len(nll),
        "test_f1_macro": [0.4] * len(nll), "f1_a": [0.2] * len(nll), "f1_b": [0.6] * len(nll),
        "count_a": [1] * len(nll), "count_b": [l - 1 for l in labelled],
        "time_train": [1.0] * len(nll), "time_infer": times[:-1] + [0.0], "time_acquire": [0.0] * len(nll),
    })
    rows.to_csv(folder / "steps.csv", index=False)
    settings = {"heuristic": heuristic, "seed": seed, "lambda": 0.0, "delta": 0, "query_size": 10,
                "pool_fraction": 1.0, "epochs": 5, "dataset": "digits", "model": "mlp", "mc_samples": 4}
    settings.update(extra or {})
    (folder / "job.json").write_text(json.dumps({"settings": settings, "overrides": overrides or {}, "study": study,
                                                 "report_sizes": None, "reduced_classes": reduced or []}))
    (folder / "done").write_text("")


# Student's t with 1 degree of freedom is the Cauchy law: two-sided p of t is 1 - 2 atan(|t|) / pi and
# the 97.5% quantile is tan(0.475 pi)
T975_DF1 = math.tan(0.475 * math.pi)


def test_paired_against_random_and_aubc_by_hand(tmp_path):
    write_job(tmp_path, "bald", 0, [2.0, 1.0, 0.5])
    write_job(tmp_path, "bald", 1, [2.0, 1.2, 0.7])
    write_job(tmp_path, "random", 0, [2.0, 1.5, 0.6])
    write_job(tmp_path, "random", 1, [2.0, 1.3, 0.9])
    write_job(tmp_path, "random", 2, [2.0, 1.1, 1.0])  # bald has no seed 2: it drops out of the pairing
    report = write_report(tmp_path)
    assert report.sizes == [10, 20, 30]
    md = (tmp_path / "table.md").read_text()
    # NLL gains at 20 labels: seed 0: 1.5 - 1.0 = 0.5, seed 1: 1.3 - 1.2 = 0.1; mean 0.3, std 0.2 sqrt 2,
    # standard error 0.2, t = 1.5 with 1 dof
    half = T975_DF1 * 0.2
    p = 1 - 2 * math.atan(1.5) / math.pi
    at_20 = f"+0.300 [{0.3 - half:+.3f}, {0.3 + half:+.3f}] p={p:.3f} (2)"
    # at 10 labels every job has the same initial labels and weights: the paired tables leave it out
    assert f"| heuristic | 20 labelled | 30 labelled | AUBC |\n|---|---|---|---|\n| bald | {at_20} |" in md
    paired = report.table[(report.table["metric"] == "paired_test_nll") & (report.table["labelled"] == 20)].iloc[0]
    assert (paired["heuristic"], paired["versus"], paired["n"]) == ("bald", "random", 2)
    assert paired["p_value"] == pytest.approx(p)
    assert 10 not in set(report.table[report.table["metric"] == "paired_test_nll"]["labelled"])
    # Holm over the NLL table's three comparisons (20, 30 labelled and the AUBC)
    family = report.table[report.table["metric"].isin(["paired_test_nll", "paired_aubc_test_nll"])]
    raw = sorted(family["p_value"])
    assert sorted(family["p_holm"]) == pytest.approx(
        [min(1.0, v) for v in pd.Series([3 * raw[0], 2 * raw[1], raw[2]]).cummax()])
    # AUBC of NLL over 10..30: bald (10 * 1.5 + 10 * 0.75) / 20 = 1.125 and (10 * 1.6 + 10 * 0.95) / 20 = 1.275
    aubc = report.table[report.table["metric"] == "aubc_test_nll"].set_index("heuristic")
    assert aubc.loc["bald", "mean"] == pytest.approx(1.2) and aubc.loc["bald", "n"] == 2
    assert aubc.loc["random", "n"] == 3
    assert "| bald | 1.200 +- 0.106 (2) |" in md
    # random's AUBC: 1.4, 1.375; paired gains 0.275 and 0.1
    gain = report.table[report.table["metric"] == "paired_aubc_test_nll"].iloc[0]
    assert gain["mean"] == pytest.approx(0.1875) and gain["n"] == 2
    # seed count and the random NLL cell at 20 labels
    assert "5 jobs, seeds 0, 1, 2." in md and "| random | 2.000 +- 0.000 (3) | 1.300 +- 0.200 (3) |" in md
    assert "Penalty matrix" not in md  # two heuristics: the paired table says it all
    table = pd.read_csv(tmp_path / "table.csv")
    assert {"paired_test_nll", "paired_aubc_test_acc", "aubc_test_acc", "test_nll"} <= set(table["metric"])


def test_labels_to_target_and_the_penalty_matrix(tmp_path):
    accs = {("bald", 0): [0.5, 0.8, 0.9], ("bald", 1): [0.5, 0.7, 0.8], ("bald", 2): [0.5, 0.8, 0.85],
            ("entropy", 0): [0.5, 0.6, 0.9], ("entropy", 1): [0.5, 0.6, 0.7], ("entropy", 2): [0.5, 0.6, 0.75],
            ("random", 0): [0.5, 0.55, 0.6], ("random", 1): [0.5, 0.5, 0.55], ("random", 2): [0.5, 0.55, 0.62]}
    for (heuristic, seed), acc in accs.items():
        write_job(tmp_path, heuristic, seed, [2.0 - a for a in acc], acc=acc)
    report = write_report(tmp_path, target_accuracy=0.8)
    md = (tmp_path / "table.md").read_text()
    # bald reaches 0.8 at 20, 30, 20 labels; entropy only with seed 0 (at 30); random never within 30
    target = report.table[report.table["metric"] == "labels_to_target"].set_index("heuristic")
    assert target.loc["bald", "mean"] == pytest.approx(70 / 3) and target.loc["bald", "n"] == 3
    assert target.loc["entropy", "n"] == 1 and target.loc["random", "n"] == 0
    assert "labels to accuracy 0.8" in md
    # cells: median [min, max] over seeds; a seed that never reached it counts as more than the budget
    assert "| 20 [20, 30] (3) |" in md
    assert "| > 30 [30, > 30] (1 of 3 reached) |" in md and "| > 30 (0 of 3 reached) |" in md
    assert target.loc["bald", "median"] == 20 and target.loc["bald", "max"] == 30
    assert pd.isna(target.loc["entropy", "median"]) and target.loc["entropy", "min"] == 30
    # three heuristics: the penalty matrices count the budget points after the shared start, 20 and 30
    # labelled (at 10 all share one model). bald beats random at 20 (gains .25 .2 .25) and 30 (.3 .25 .23)
    acc = next(frame for title, frame in report.extra if title.startswith("Penalty matrix, test accuracy"))
    title = next(title for title, _ in report.extra if title.startswith("Penalty matrix, test accuracy"))
    assert "of 2 budget points" in title and "Lüth et al. 2023" in title
    acc = acc.set_index("better than:")
    assert acc.loc["bald", "random"] == 2 and acc.loc["random", "bald"] == 0
    assert acc.loc["bald", "entropy"] >= 1 and (acc.to_numpy().diagonal() == 0).all()
    # the same matrix, long, in table.csv
    long = report.table[report.table["metric"] == "penalty_test_acc"]
    assert long.set_index(["heuristic", "versus"]).loc[("bald", "random"), "mean"] == 2


def test_labels_to_several_targets_survive_a_rebuild_from_summary(tmp_path):
    """report.target_accuracy=[0.7,0.8]: a column per target in table.md, rows per target in table.csv, and
    summary.csv keeps both, so a folder holding only it rebuilds the same tables."""
    for (heuristic, seed), acc in {("bald", 0): [0.5, 0.8, 0.9], ("bald", 1): [0.5, 0.7, 0.8],
                                   ("random", 0): [0.5, 0.6, 0.7], ("random", 1): [0.5, 0.55, 0.6]}.items():
        write_job(tmp_path / "sweep", heuristic, seed, [2.0 - a for a in acc], acc=acc)
    first = write_report(tmp_path / "sweep", target_accuracy=[0.7, 0.8])
    assert first.target_accuracy == (0.7, 0.8)
    rows = first.table[first.table["metric"] == "labels_to_target"].set_index(["heuristic", "target"])
    # bald reaches 0.7 at 20 and 20 labels, 0.8 at 20 and 30; random 0.7 at 30 on seed 0 only
    assert rows.loc[("bald", 0.7), "median"] == 20 and rows.loc[("bald", 0.8), "median"] == 25
    assert rows.loc[("random", 0.7), "n"] == 1 and pd.isna(rows.loc[("random", 0.7), "median"])
    assert "labels to accuracy 0.7" in first.markdown and "labels to accuracy 0.8" in first.markdown
    assert "| 25 [20, 30] (2) |" in first.markdown and "| > 30 [30, > 30] (1 of 2 reached) |" in first.markdown
    reference = tmp_path / "reference" / "sweep"
    reference.mkdir(parents=True)
    (reference / "summary.csv").write_text((tmp_path / "sweep" / "summary.csv").read_text())
    assert write_report(reference).markdown == first.markdown
    with pytest.raises(ConfigError, match=r"report.target_accuracy=\[0.9, 80\]"):
        write_report(reference, target_accuracy=[0.9, 80])


def test_interrupted_job_has_no_aubc_but_its_cells_count(tmp_path):
    write_job(tmp_path, "bald", 0, [2.0, 1.0, 0.5])
    write_job(tmp_path, "bald", 1, [2.0, 1.1])  # stopped before the end of the budget
    report = write_report(tmp_path)
    aubc = report.table[report.table["metric"] == "aubc_test_nll"]
    assert aubc["n"].tolist() == [1] and aubc["mean"].iloc[0] == pytest.approx(1.125)


def test_report_rebuilds_a_folder_holding_only_its_summary(tmp_path):
    """A reference folder is committed without its job folders; the report works from summary.csv alone,
    and no path of the machine (a data set root) is written to it."""
    sweep = tmp_path / "sweep"
    machine_path = str(tmp_path / "data" / "cifar10-jpg")
    for heuristic, seed, nll in (("bald", 0, [2.0, 1.0, 0.5]), ("bald", 1, [2.0, 1.2, 0.7]),
                                 ("random", 0, [2.0, 1.5, 0.6]), ("random", 1, [2.0, 1.3, 0.9])):
        write_job(sweep, heuristic, seed, nll, overrides={"dataset.root": machine_path, "seed": str(seed),
                                                         "model.feature_cache": machine_path + "/features"})
    first = write_report(sweep, sizes=[20, 30], target_accuracy=0.5)
    summary_text = (sweep / "summary.csv").read_text()
    assert str(tmp_path) not in summary_text and "dataset.root" not in summary_text
    reference = tmp_path / "reference" / "sweep"
    reference.mkdir(parents=True)
    (reference / "summary.csv").write_text(summary_text)
    proc = subprocess.run([sys.executable, "-m", "alrun.report", str(reference)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    # the same sizes and target as the sweep's own report, from what summary.csv recorded
    assert (reference / "table.md").read_text() == first.markdown
    pd.testing.assert_frame_equal(pd.read_csv(reference / "table.csv"), pd.read_csv(sweep / "table.csv"))
    assert "Verdict" in proc.stdout and "AUBC" in proc.stdout
    # a summary.csv of an older report that still carries a path column: the column is dropped
    old = pd.read_csv(reference / "summary.csv").assign(**{"dataset.root": machine_path})
    old.drop(columns=["report_sizes"]).to_csv(reference / "summary.csv", index=False)
    assert write_report(reference, sizes=[20, 30]) is not None
    assert machine_path not in (reference / "summary.csv").read_text()


def test_a_gzipped_summary_reads_back_to_the_same_frame_and_tables(tmp_path):
    """`python -m alrun.report FOLDER --gzip` writes summary.csv.gz in place of summary.csv: the same text
    compressed (the same bytes for the same summary), read back to the same frame, the same tables, and kept
    by later reports of that folder, from its job folders or (a reference folder) from the summary alone."""
    sweep = tmp_path / "sweep"
    for heuristic, seed, nll in (("bald", 0, [2.0, 1.0, 0.5]), ("bald", 1, [2.0, 1.2, 0.7]),
                                 ("random", 0, [2.0, 1.5, 0.6]), ("random", 1, [2.0, 1.3, 0.9])):
        write_job(sweep, heuristic, seed, nll)
    plain = write_report(sweep, sizes=[20, 30], target_accuracy=0.5)
    text, markdown, table = (sweep / "summary.csv").read_text(), plain.markdown, (sweep / "table.csv").read_text()
    assert summary_file(sweep) == sweep / "summary.csv"
    reference = tmp_path / "reference" / "sweep"
    reference.mkdir(parents=True)
    (reference / "summary.csv").write_text(text)
    proc = subprocess.run([sys.executable, "-m", "alrun.report", str(reference), "--gzip"], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    assert "summary.csv.gz, table.md" in proc.stdout
    packed = reference / "summary.csv.gz"
    assert sorted(p.name for p in reference.iterdir()) == ["curves.png", "summary.csv.gz", "table.csv", "table.md"]
    assert summary_file(reference) == packed and gzip.decompress(packed.read_bytes()).decode() == text
    pd.testing.assert_frame_equal(read_summary(packed), read_summary(sweep / "summary.csv"))
    assert (reference / "table.md").read_text() == markdown and (reference / "table.csv").read_text() == table
    # rebuilt from the compressed summary alone: kept compressed, the same bytes and tables
    first = packed.read_bytes()
    again = write_report(reference)
    assert again.markdown == markdown and (reference / "table.csv").read_text() == table
    assert packed.read_bytes() == first and not (reference / "summary.csv").exists()
    pd.testing.assert_frame_equal(again.summary, plain.summary)
    # a sweep folder asked once keeps the compressed form when its jobs are reported again; asked for text, back
    write_report(sweep, sizes=[20, 30], target_accuracy=0.5, compress=True)
    assert not (sweep / "summary.csv").exists() and (sweep / "summary.csv.gz").read_bytes() == first
    assert write_report(sweep, sizes=[20, 30], target_accuracy=0.5).markdown == markdown
    assert summary_file(sweep) == sweep / "summary.csv.gz"
    write_report(sweep, sizes=[20, 30], target_accuracy=0.5, compress=False)
    assert summary_file(sweep) == sweep / "summary.csv" and not (sweep / "summary.csv.gz").exists()
    assert (sweep / "summary.csv").read_text() == text


def test_validation_labels_are_shown_as_labels_spent(tmp_path):
    """Early stopping's validation labels are not in the labelled sizes: table.md and the terminal say how
    many each job spent; a sweep without them says nothing."""
    sweep = tmp_path / "sweep"
    for heuristic, seed in (("bald", 0), ("random", 0)):
        write_job(sweep, heuristic, seed, [2.0, 1.0, 0.5])
        steps = sweep / f"heuristic={heuristic},seed={seed}" / "steps.csv"
        pd.read_csv(steps).assign(validation_labels=50).to_csv(steps, index=False)
    report = write_report(sweep, sizes=[20, 30])
    sentence = "Labels spent on validation (early stopping), on top of the labelled sizes shown: 50 per job."
    assert sentence in report.markdown
    proc = subprocess.run([sys.executable, "-m", "alrun.report", str(sweep)], capture_output=True, text=True)
    assert proc.returncode == 0 and sentence in " ".join(proc.stdout.split())
    plain = tmp_path / "plain"
    write_job(plain, "bald", 0, [2.0, 1.0, 0.5])
    assert "validation" not in write_report(plain, sizes=[20, 30]).markdown


def test_report_target_accuracy_out_of_range_is_one_sentence(tmp_path):
    write_job(tmp_path, "bald", 0, [2.0, 1.0, 0.5])
    proc = subprocess.run([sys.executable, "-m", "alrun.report", str(tmp_path), "--target-accuracy", "80"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "report.target_accuracy=80" in proc.stderr and "Traceback" not in proc.stderr


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
    # the paired table too: one seed, no interval; Q = 20's cell at 20 would be read at its start: left out
    assert "| 20 | bald | - | +0.400 (1) | +0.200 (1) |" in md
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


def test_a_rebuilt_report_names_unfinished_jobs(tmp_path):
    write_job(tmp_path, "bald", 0, [2.0, 1.0, 0.5])
    write_job(tmp_path, "bald", 1, [2.0, 1.1])
    (tmp_path / "heuristic=bald,seed=1" / "done").unlink()  # cancelled after two steps
    (tmp_path / "heuristic=bald,seed=2").mkdir()
    (tmp_path / "heuristic=bald,seed=2" / "job.json").write_text("{}")  # killed before its first step
    proc = subprocess.run([sys.executable, "-m", "alrun.report", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    md = (tmp_path / "table.md").read_text()
    assert "Unfinished jobs" in md and "- heuristic=bald,seed=1\n- heuristic=bald,seed=2" in md
    assert "2 job(s) unfinished" in proc.stdout and "heuristic=bald,seed=2" in proc.stdout


def test_choose_sizes_defaults_to_sizes_every_job_reached(tmp_path):
    summary = pd.DataFrame({"job": ["a"] * 4 + ["b"] * 3, "labelled": [10, 20, 30, 40, 10, 20, 30]})
    # the start, sizes after it that every job reached, and the largest size reached
    assert choose_sizes(summary, None) == ([10, 20, 30, 40], None)
    sizes, note = choose_sizes(summary, [25, 40, 1000])
    assert sizes == [25, 40] and "1000" in note and "40" in note
    # a budget beyond the requested sizes is always read at its end
    assert choose_sizes(summary, [10, 20]) == ([10, 20, 40], None)


def test_empty_folder_gives_none(tmp_path):
    assert write_report(tmp_path) is None
