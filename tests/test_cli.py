"""The real entry point, end to end, on scikit-learn's built-in digits at scale=smoke."""

from __future__ import annotations

import json
import subprocess
import sys

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from tests.conftest import run_alrun, steps_without_timings


@pytest.fixture(scope="module")
def smoke_sweep(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("sweep")
    proc = run_alrun(["scale=smoke", "seed=0,1", f"hydra.sweep.dir={cwd / 'sweep'}"], cwd)
    return cwd, cwd / "sweep", proc


def test_sweep_writes_every_file(smoke_sweep):
    _, sweep, proc = smoke_sweep
    # curves.png: a readable image of the two panels (NLL, accuracy) side by side
    height, width, _ = plt.imread(sweep / "curves.png").shape
    assert width > 2 * height
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir() and (p / "steps.csv").exists())
    assert jobs == [f"heuristic={h},seed={s}" for h in ("bald", "entropy", "random") for s in (0, 1)]
    assert "test NLL" in proc.stdout and str(sweep) in proc.stdout.replace("\n", "")


def test_steps_are_sane(smoke_sweep):
    _, sweep, _ = smoke_sweep
    steps = pd.read_csv(sweep / "heuristic=bald,seed=0" / "steps.csv")
    assert steps["labelled"].tolist() == [20, 30, 40, 50]
    assert steps["step"].tolist() == [0, 1, 2, 3]
    assert (steps["test_nll"] > 0).all() and (steps["test_nll"] < 10).all()
    assert steps["test_acc"].between(0, 1).all()
    count_cols = [c for c in steps.columns if c.startswith("count_")]
    assert len(count_cols) == 10 and (steps[count_cols].sum(axis=1) == steps["labelled"]).all()
    assert len([c for c in steps.columns if c.startswith("f1_") and c != "f1_macro"]) == 10
    # every step trains; every step but the last scores the pool (the last has no room to acquire)
    assert (steps["time_train"] > 0).all() and (steps["time_infer"].iloc[:-1] > 0).all()
    assert steps["time_infer"].iloc[-1] == 0 and steps["time_acquire"].iloc[-1] == 0
    assert steps["test_balanced_acc"].between(0, 1).all()


def test_summary_and_table(smoke_sweep):
    _, sweep, _ = smoke_sweep
    summary = pd.read_csv(sweep / "summary.csv")
    assert len(summary) == 6 * 4 and {"heuristic", "seed", "labelled", "test_nll"} <= set(summary.columns)
    table = pd.read_csv(sweep / "table.csv")
    nll = table[(table["metric"] == "test_nll") & (table["labelled"] == 50)]
    assert sorted(nll["heuristic"]) == ["bald", "entropy", "random"] and (nll["n"] == 2).all()
    expected = summary[(summary.heuristic == "bald") & (summary.labelled == 50)]["test_nll"].mean()
    assert nll.set_index("heuristic").loc["bald", "mean"] == pytest.approx(expected)
    assert "(2)" in (sweep / "table.md").read_text()
    # each heuristic against random, paired by seed, agrees with the per-seed NLLs of summary.csv
    paired = table[(table["metric"] == "paired_test_nll") & (table["labelled"] == 50)].set_index("heuristic")
    by_seed = summary[summary.labelled == 50].pivot_table(index="seed", columns="heuristic", values="test_nll")
    assert paired.loc["bald", "mean"] == pytest.approx((by_seed["random"] - by_seed["bald"]).mean())
    assert paired.loc["bald", "n"] == 2 and paired.loc["entropy", "versus"] == "random"


def test_same_config_gives_identical_steps(smoke_sweep, tmp_path):
    cwd, sweep, _ = smoke_sweep
    run_alrun(["scale=smoke", "heuristic=bald", "seed=0", f"hydra.sweep.dir={tmp_path / 'again'}"], cwd)
    first = steps_without_timings(sweep / "heuristic=bald,seed=0" / "steps.csv")
    second = steps_without_timings(tmp_path / "again" / "heuristic=bald,seed=0" / "steps.csv")
    pd.testing.assert_frame_equal(first, second)


def test_seeds_and_heuristics_differ(smoke_sweep):
    _, sweep, _ = smoke_sweep
    a = steps_without_timings(sweep / "heuristic=bald,seed=0" / "steps.csv")
    b = steps_without_timings(sweep / "heuristic=bald,seed=1" / "steps.csv")
    c = steps_without_timings(sweep / "heuristic=random,seed=0" / "steps.csv")
    assert not a.equals(b) and not a.equals(c)


def test_rerun_of_finished_sweep_resumes_without_recomputing(smoke_sweep):
    cwd, sweep, _ = smoke_sweep
    before = (sweep / "heuristic=bald,seed=0" / "steps.csv").read_text()
    run_alrun(["scale=smoke", "heuristic=bald", "seed=0", f"hydra.sweep.dir={sweep}"], cwd)
    assert (sweep / "heuristic=bald,seed=0" / "steps.csv").read_text() == before


def test_report_can_be_rerun_on_the_folder(smoke_sweep):
    _, sweep, _ = smoke_sweep
    (sweep / "table.md").unlink()
    proc = subprocess.run([sys.executable, "-m", "alrun.report", str(sweep), "--sizes", "30"],
                          capture_output=True, text=True, check=True)
    assert "30 labelled" in (sweep / "table.md").read_text() and "test NLL" in proc.stdout


def test_job_json_records_settings(smoke_sweep):
    _, sweep, _ = smoke_sweep
    meta = json.loads((sweep / "heuristic=entropy,seed=1" / "job.json").read_text())
    assert meta["settings"]["heuristic"] == "entropy" and meta["settings"]["seed"] == 1
    assert meta["settings"]["model"] == "mlp"


@pytest.mark.parametrize("override,fragment", [
    ("pool_fraction=0", "pool_fraction=0"),
    ("query_size=100000", "query_size=100000"),
    ("lambda=2", "lambda=2"),
    ("mc_samples=-1", "mc_samples=-1"),
    ("report.target_accuracy=80", "report.target_accuracy=80"),
    ("report.primary=auc", "report.primary=auc"),
    ("report.equivalence_margin=-1", "report.equivalence_margin=-1"),
])
def test_bad_config_one_sentence_no_traceback(tmp_path, override, fragment):
    proc = run_alrun(["scale=smoke", "heuristic=bald", "seed=0", override,
                      f"hydra.sweep.dir={tmp_path / 'bad'}"], tmp_path, check=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("alrun: error:")]
    assert len(errors) == 1 and fragment in errors[0]
    assert not list((tmp_path / "bad").rglob("steps.csv"))


def test_unknown_heuristic_lists_the_options(tmp_path):
    proc = run_alrun(["scale=smoke", "heuristic=nope"], tmp_path, check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "heuristic/nope" in proc.stderr and "bald" in proc.stderr


def test_missing_npz_names_the_file(tmp_path):
    proc = run_alrun(["scale=smoke", "dataset=npz", "heuristic=bald", "seed=0",
                      f"dataset.root={tmp_path / 'nothing.npz'}"], tmp_path, check=False)
    assert proc.returncode == 2 and "nothing.npz" in proc.stderr and "Traceback" not in proc.stderr
