"""Every study of the paper, one command each, at scale=smoke on fixtures in the data sets' true layout."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.conftest import run_alrun
from tests.fixtures_data import write_cifar10, write_cifar100, write_miotcd, write_mnist


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_cifar10(root / "cifar10", n_per_class=12, n_test_per_class=4)
    write_cifar100(root / "cifar100", n_per_class=3, n_test_per_class=1)
    write_miotcd(root / "miotcd", n_per_class=8)
    write_mnist(root / "mnist", n_per_class=12, n_test_per_class=3)
    return root


def run_study(name: str, data_dir, tmp_path, *overrides: str):
    sweep = tmp_path / name
    proc = run_alrun([f"+experiment={name}", "scale=smoke", f"hydra.sweep.dir={sweep}", *overrides], tmp_path,
                     env={"ALRUN_DATA_DIR": str(data_dir)})
    summary = pd.read_csv(sweep / "summary.csv")
    return proc, sweep, summary


def test_noise_study_sweeps_lambda_heuristic_and_seed(data_dir, tmp_path):
    proc, sweep, summary = run_study("noise", data_dir, tmp_path)
    jobs = summary.groupby(["lambda", "heuristic", "seed"]).size()
    assert len(jobs) == 2 * 3 * 2  # smoke grid: lambda 0,0.1 x bald,entropy,random x seeds 0,1
    md = (sweep / "table.md").read_text()
    assert "| lambda | heuristic |" in md and "test NLL against Random, paired by seed" in md
    assert "Penalty matrix, test NLL" in md and "AUBC" in md
    assert (summary["dataset"] == "cifar10").all() and (summary["model"] == "gal_cnn").all()


def test_noise_study_with_lambda_fixed_keeps_the_other_swept_keys(data_dir, tmp_path):
    _, _, summary = run_study("noise", data_dir, tmp_path, "lambda=0.1", "seed=0")
    assert set(summary["lambda"]) == {0.1} and set(summary["heuristic"]) == {"bald", "entropy", "random"}


def test_convergence_study_reports_active_gain_by_epochs(data_dir, tmp_path):
    _, sweep, summary = run_study("convergence", data_dir, tmp_path, "seed=0")
    assert set(summary["epochs"]) == {1, 5} and set(summary["heuristic"]) == {"bald", "random"}
    md = (sweep / "table.md").read_text()
    assert "test NLL against Random, paired by seed" in md and "| epochs | heuristic |" in md


def test_query_size_study(data_dir, tmp_path):
    _, sweep, summary = run_study("query_size", data_dir, tmp_path, "seed=0")
    assert set(summary["query_size"]) == {5, 15}
    steps = summary[(summary.query_size == 15) & (summary.heuristic == "bald")]["labelled"].tolist()
    assert steps == [20, 35, 50]
    assert "| query_size | heuristic |" in (sweep / "table.md").read_text()


def test_pool_size_study_times_acquisition(data_dir, tmp_path):
    _, sweep, summary = run_study("pool_size", data_dir, tmp_path, "seed=0")
    assert set(summary["pool_fraction"]) == {1.0, 0.25}
    md = (sweep / "table.md").read_text()
    assert "Seconds per acquisition" in md and "speedup" in md


def test_imbalance_study_on_cifar100_layout(data_dir, tmp_path):
    _, sweep, summary = run_study("imbalance", data_dir, tmp_path, "seed=0", "heuristic=bald,random")
    assert set(summary["delta"]) == {0, 2} and (summary["dataset"] == "cifar100").all()
    assert "f1_reduced" in summary.columns
    reduced = summary[summary.delta == 2]
    assert reduced["f1_reduced"].notna().all()
    assert "F1 of the reduced classes" in (sweep / "table.md").read_text()


def test_miotcd_study_per_class_f1(data_dir, tmp_path):
    _, sweep, summary = run_study("miotcd", data_dir, tmp_path, "seed=0", "max_labelled=40")
    assert (summary["dataset"] == "miotcd").all()
    md = (sweep / "table.md").read_text()
    assert "Per-class F1" in md and "| heuristic |" in md and "car" in md and "articulated_truck" in md


def test_mnist_batchbald_study_on_idx_files(data_dir, tmp_path):
    """The BatchBALD code's MNIST protocol (its epochs, T and validation set shrunk to the fixture): a balanced
    start of 2 per class, steps of 10, early stopping on accuracy over fixed-length epochs, BALD, BatchBALD
    and Random, and the labels each needed to reach 90% and 95% test accuracy."""
    _, sweep, summary = run_study("mnist_batchbald", data_dir, tmp_path, "seed=0", "mc_samples=4", "epochs=3",
                                  "train.validation_size=20", "train.epoch_samples=96", "max_labelled=40",
                                  "report.sizes=[20,30,40]")
    assert set(summary["heuristic"]) == {"bald", "batchbald", "random"} and (summary["dataset"] == "mnist").all()
    assert (summary["model"] == "gal_cnn").all() and (summary["validation_labels"] == 20).all()
    first = summary[summary["labelled"] == 20]
    assert (first[[f"count_{c}" for c in range(10)]] == 2).all().all()  # 2 labels per class to start
    assert sorted(set(summary["labelled"])) == [20, 30, 40] and "fit_flag" in summary.columns
    md = (sweep / "table.md").read_text()
    assert "labels to accuracy 0.9" in md and "labels to accuracy 0.95" in md
    table = pd.read_csv(sweep / "table.csv")
    assert set(table.loc[table["metric"] == "labels_to_target", "target"]) == {0.9, 0.95}
