"""How far the model fits the noisy labels it was given (issue #32): the oracle knows both labels."""

from __future__ import annotations

import math
from dataclasses import replace

import torch

from alrun.config.schema import DatasetSpec, RunSpec, TrainSpec
from alrun.loop.job import ActiveLearningJob, prepare_data
from alrun.train.fit import memorisation


def test_memorisation_counts_the_wrong_labels_and_what_the_model_predicts_for_them():
    true = torch.tensor([0, 1, 2, 3, 0, 1])
    given = torch.tensor([0, 2, 2, 0, 1, 1])  # items 1, 3, 4 corrupted
    predicted = torch.tensor([0, 2, 2, 3, 1, 0])  # fits item 1's and 4's wrong label, item 3's true one
    out = memorisation(predicted, given, true)
    assert out["noisy_labelled"] == 3
    assert math.isclose(out["noisy_fit_acc"], 2 / 3) and math.isclose(out["noisy_true_acc"], 1 / 3)
    clean = memorisation(predicted, true, true)
    assert clean["noisy_labelled"] == 0 and math.isnan(clean["noisy_fit_acc"]) and math.isnan(clean["noisy_true_acc"])


def test_a_noisy_job_records_its_memorisation_at_every_step_and_a_clean_one_does_not(tmp_path):
    train = TrainSpec(epochs=40, schedule="fixed", lr=1e-2)
    spec = RunSpec(heuristic="random", seed=1, initial_labelled=40, query_size=20, max_labelled=80, mc_samples=2,
                   label_noise=0.3, dataset=DatasetSpec(name="digits", max_train=300, max_test=100), train=train,
                   device="cpu")
    data = prepare_data(spec)
    rows = ActiveLearningJob(spec, tmp_path / "noisy", data).run()
    wrong = data.oracle_labels != data.bundle.y_train
    assert {"noisy_labelled", "noisy_fit_acc", "noisy_true_acc"} <= set(rows.columns)
    assert (rows["noisy_labelled"] > 0).all()
    # the shares are of the labelled items whose given label is wrong, which the oracle alone knows
    assert rows["noisy_labelled"].max() <= wrong.sum()
    assert ((rows["noisy_fit_acc"] + rows["noisy_true_acc"]) <= 1 + 1e-12).all()
    assert rows["noisy_fit_acc"].between(0, 1).all()
    clean = ActiveLearningJob(replace(spec, label_noise=0.0), tmp_path / "clean").run()
    assert "noisy_fit_acc" not in clean.columns
