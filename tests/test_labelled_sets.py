"""The labels a job holds before acquisition (initial set, validation set) and the data preparation the
loop uses (pathologies applied to a real data set), checked through alrun.loop.job.prepare_data and the job."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from alrun.config.schema import DatasetSpec, RunSpec, TrainSpec
from alrun.data import load_dataset
from alrun.loop import job as loop
from alrun.loop.checkpoint import load_checkpoint
from alrun.loop.job import ActiveLearningJob, prepare_data
from alrun.loop.labelled_sets import initial_positions, validation_split
from tests.conftest import run_alrun


def g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- the initial labelled set ----------------------------------------------------------------------------


def test_balanced_initial_set_has_equal_counts_per_class():
    labels = np.random.default_rng(0).permutation(np.repeat(np.arange(10), [50, 40, 30, 30, 30, 30, 30, 30, 30, 200]))
    chosen = initial_positions(labels, 20, True, g(0))
    assert len(np.unique(chosen)) == 20
    assert np.bincount(labels[chosen], minlength=10).tolist() == [2] * 10
    counts = np.bincount(labels[initial_positions(labels, 25, True, g(1))], minlength=10)
    assert sorted(counts.tolist()) == [2] * 5 + [3] * 5  # the 5 extra labels go to 5 different classes


def test_balanced_initial_set_when_a_class_is_short():
    labels = np.array([0] * 30 + [1] * 30 + [2] * 1)  # class 2 cannot give its share of 4
    counts = np.bincount(labels[initial_positions(labels, 12, True, g(3))], minlength=3)
    assert counts.tolist() in ([6, 5, 1], [5, 6, 1])


def test_initial_set_is_seeded():
    labels = np.arange(300) % 7
    for balanced in (False, True):
        a, b = initial_positions(labels, 14, balanced, g(5)), initial_positions(labels, 14, balanced, g(5))
        assert np.array_equal(a, b)
        assert not np.array_equal(np.sort(a), np.sort(initial_positions(labels, 14, balanced, g(6))))
    # the unbalanced draw is the one earlier versions made, so old sweeps keep their initial labels
    assert np.array_equal(initial_positions(labels, 14, False, g(5)), torch.randperm(300, generator=g(5))[:14].numpy())


def test_validation_split_is_disjoint_and_seeded():
    eligible = np.arange(0, 400, 2)
    pool, validation = validation_split(eligible, 30, g(0))
    assert len(validation) == 30 and len(np.intersect1d(pool, validation)) == 0
    assert np.array_equal(np.sort(np.concatenate([pool, validation])), eligible)
    assert np.array_equal(validation, validation_split(eligible, 30, g(0))[1])
    pool0, validation0 = validation_split(eligible, 0, g(0))
    assert np.array_equal(pool0, eligible) and len(validation0) == 0


# --- through the loop's data preparation -------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    return load_dataset(DatasetSpec(name="digits"))


def test_label_noise_through_prepare_data(digits):
    spec = RunSpec(label_noise=0.1, seed=3)
    data = prepare_data(spec, digits)
    truth = digits.y_train
    changed = data.oracle_labels != truth
    assert changed.sum() == round(0.1 * len(data.eligible))
    assert data.oracle_labels.min() >= 0 and data.oracle_labels.max() < digits.n_classes
    # the test set and the training inputs are the ones loaded
    assert np.array_equal(data.bundle.y_test, digits.y_test) and torch.equal(data.bundle.x_test, digits.x_test)
    assert torch.equal(data.bundle.x_train, digits.x_train) and np.array_equal(data.bundle.y_train, truth)
    other_seed = prepare_data(replace(spec, seed=4), digits)
    assert not np.array_equal(other_seed.oracle_labels, data.oracle_labels)


def test_imbalance_through_prepare_data(digits):
    data = prepare_data(RunSpec(imbalance_classes=3, imbalance_keep=0.25, seed=1), digits)
    full = np.bincount(digits.y_train, minlength=10)
    kept = np.bincount(digits.y_train[data.eligible], minlength=10)
    assert len(data.reduced_classes) == 3
    for c in range(10):
        assert kept[c] == (round(0.25 * full[c]) if c in data.reduced_classes else full[c])
    assert np.array_equal(data.bundle.y_test, digits.y_test)  # the test set keeps every class whole
    assert np.array_equal(data.oracle_labels, digits.y_train)  # no noise asked: the oracle tells the truth


def test_noise_and_imbalance_with_a_validation_set(digits):
    train = TrainSpec(schedule="early_stopping", validation_size=60)
    spec = RunSpec(label_noise=0.2, imbalance_classes=2, seed=7, train=train)
    data = prepare_data(spec, digits)
    without = prepare_data(replace(spec, train=TrainSpec(validation_size=60)), digits)  # fixed: nothing held out
    assert len(without.validation) == 0
    # the validation set comes out of the (imbalanced) pool; the pathologies do not depend on it
    assert len(data.validation) == 60 and len(np.intersect1d(data.validation, data.eligible)) == 0
    assert np.array_equal(np.sort(np.concatenate([data.eligible, data.validation])), without.eligible)
    assert np.array_equal(data.oracle_labels, without.oracle_labels)
    changed = data.oracle_labels != digits.y_train
    assert changed.sum() == round(0.2 * len(without.eligible))
    assert not changed[np.setdiff1d(np.arange(len(changed)), without.eligible)].any()  # removed items keep theirs


# --- through a job ------------------------------------------------------------------------------------------


def small_spec(heuristic: str, **changes) -> RunSpec:
    train = TrainSpec(epochs=30, schedule="early_stopping", validation_size=40, patience=3)
    return RunSpec(heuristic=heuristic, seed=2, initial_labelled=20, query_size=10, max_labelled=50, mc_samples=3,
                   dataset=DatasetSpec(name="digits", max_train=400, max_test=100), train=train, device="cpu",
                   **changes)


def test_validation_set_is_fixed_and_never_acquired(tmp_path, monkeypatch):
    seen: list[tuple[str, torch.Tensor, torch.Tensor]] = []

    class Recording(loop.EarlyStopping):
        def __init__(self, x_val, y_val, *args, **kwargs):
            seen.append((heuristic, x_val.clone(), y_val.clone()))
            super().__init__(x_val, y_val, *args, **kwargs)

    monkeypatch.setattr(loop, "EarlyStopping", Recording)
    validations = {}
    for heuristic in ("bald", "random"):
        job = ActiveLearningJob(small_spec(heuristic), tmp_path / heuristic)
        rows = job.run()
        labelled = load_checkpoint(tmp_path / heuristic / "checkpoint.json")["labelled"]
        validations[heuristic] = job.data.validation
        assert len(labelled) == 50 and len(np.intersect1d(labelled, job.data.validation)) == 0
        assert (rows["validation_labels"] == 40).all()
        assert rows["epochs_trained"].between(1, 30).all()
    assert np.array_equal(validations["bald"], validations["random"])
    # one validation set per step, the same at every step and for both heuristics
    assert len(seen) == 2 * 4
    for _, x_val, y_val in seen[1:]:
        assert torch.equal(x_val, seen[0][1]) and torch.equal(y_val, seen[0][2])


def test_cli_balanced_start_and_early_stopping(tmp_path):
    sweep = tmp_path / "sweep"
    run_alrun(["scale=smoke", "heuristic=bald", "seed=0", "initial_balanced=true", "train.schedule=early_stopping",
               "train.validation_size=30", "epochs=40", "train.patience=5", f"hydra.sweep.dir={sweep}"], tmp_path)
    (job,) = [p.parent for p in sweep.glob("*/steps.csv")]
    steps = pd.read_csv(job / "steps.csv")
    counts = steps[[c for c in steps.columns if c.startswith("count_")]]
    assert counts.iloc[0].tolist() == [2] * 10  # 20 initial labels over 10 classes
    assert (steps["validation_labels"] == 30).all() and json.loads((job / "job.json").read_text())[
        "validation_labels"] == 30
    # at most epochs=40, or the 60 epochs scale=smoke's train.min_updates=60 takes at one batch per epoch
    assert steps["epochs_trained"].between(1, 60).all() and (steps["epochs_trained"].iloc[2:] <= 40).all()
    assert steps["labelled"].tolist() == [20, 30, 40, 50]  # validation labels are not counted as acquired


def test_fingerprint_of_jobs_made_before_these_settings_is_kept():
    import hashlib
    from dataclasses import asdict

    spec = RunSpec()
    old = asdict(spec)  # the config as jobs on disk recorded it: without the settings added since
    old.pop("device"), old.pop("initial_balanced"), old["train"].pop("validation_size"), old["train"].pop("patience")
    old["train"].pop("epoch_samples"), old["train"].pop("eval_every"), old["train"].pop("stop_on")
    old.pop("deterministic"), old.pop("threads")
    for section in ("dataset", "model"):
        for key in ("target", "args") + (("trunk", "head") if section == "model" else ()):
            old[section].pop(key)
    old_hash = hashlib.sha256(json.dumps(old, sort_keys=True, default=str).encode()).hexdigest()[:16]
    assert loop.spec_fingerprint(spec) == old_hash
    assert loop.spec_fingerprint(replace(spec, initial_balanced=True)) != old_hash
    assert loop.spec_fingerprint(replace(spec, train=TrainSpec(patience=3))) != old_hash
    assert loop.spec_fingerprint(replace(spec, train=TrainSpec(epoch_samples=64))) != old_hash
    assert loop.spec_fingerprint(replace(spec, train=TrainSpec(eval_every=5))) != old_hash
