"""The real entry point on the file-based data sources: scale=smoke runs on fixtures in their true
on-disk formats, the notes the run logs, and the one-sentence error for a missing data set."""

from __future__ import annotations

import json

import pandas as pd

from tests.conftest import run_alrun
from tests.fixtures_data import write_cifar10, write_image_tree

# one OpenMP thread: on a small shared CI machine two threads per process thrash (10x slower here)
ONE_THREAD = {"OMP_NUM_THREADS": "1"}
# these runs test the data path, not learning: a third of scale=smoke's gradient steps
FEWER_UPDATES = "train.min_updates=20"


def smoke(cwd, dataset, *overrides):
    sweep = cwd / "sweep"
    proc = run_alrun(["scale=smoke", "heuristic=bald", "seed=0", f"dataset={dataset}", FEWER_UPDATES, *overrides,
                      f"hydra.sweep.dir={sweep}"], cwd, env=ONE_THREAD)
    (job,) = {p.parent for p in sweep.rglob("steps.csv")}  # one job
    # a path in the name would nest folders; in summary.csv it would tie the results to this machine
    assert job.parent == sweep and str(cwd) not in job.name
    assert str(cwd) not in (sweep / "summary.csv").read_text()
    return proc, pd.read_csv(job / "steps.csv"), json.loads((job / "job.json").read_text())


def test_smoke_run_on_cifar10(tmp_path):
    write_cifar10(tmp_path / "cifar", n_per_class=10, n_test_per_class=5)
    _, steps, meta = smoke(tmp_path, "cifar10", f"dataset.root={tmp_path / 'cifar'}")
    assert steps["labelled"].tolist() == [20, 30, 40, 50]
    assert steps["test_acc"].between(0, 1).all() and (steps["test_nll"] > 0).all()
    assert {f"count_{c}" for c in ("airplane", "truck")} <= set(steps.columns)
    assert meta["settings"]["model"] == "gal_cnn" and meta["settings"]["dataset"] == "cifar10"


def test_smoke_run_on_an_image_folder_logs_the_split_and_the_cache(tmp_path):
    write_image_tree(tmp_path / "images", classes=("a", "b", "c", "d"), n_train_per_class=20, n_test_per_class=None,
                     sizes=((16, 16),))
    proc, steps, meta = smoke(tmp_path, "imagefolder", f"dataset.root={tmp_path / 'images'}",
                              f"model.feature_cache={tmp_path / 'features'}", f"data_dir={tmp_path / 'data'}")
    assert steps["labelled"].tolist() == [20, 30, 40, 50] and steps["test_acc"].between(0, 1).all()
    assert meta["settings"]["model"] == "gal_cnn"
    log = proc.stdout + proc.stderr
    assert "held out" in log and "cached them in" in log
    assert list((tmp_path / "images" / ".alrun_cache").glob("*.npz"))


def test_missing_data_set_stops_before_any_work(tmp_path):
    proc = run_alrun(["scale=smoke", "dataset=cifar10", "heuristic=bald", "seed=0",
                      f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path, check=False, env=ONE_THREAD)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("alrun: error:")]
    assert len(errors) == 1
    # the default root lies under data_dir, which the test points at tmp_path/data via ALRUN_DATA_DIR
    assert str(tmp_path / "data" / "cifar10") in errors[0] and "dataset.download=true" in errors[0]
    assert not list((tmp_path / "sweep").rglob("steps.csv"))
