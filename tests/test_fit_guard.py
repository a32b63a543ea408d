"""Epochs of a fixed length (train.epoch_samples) and the under-fitting guard (steps.csv's fit_flag, the verdict's
sentence and the report's note)."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch

from alrun.config.schema import DatasetSpec, RunSpec, TrainSpec, run_spec_from_dict
from alrun.core.errors import ConfigError
from alrun.loop import job as loop
from alrun.model.builders import mlp
from alrun.report import write_report
from alrun.train.fit import EarlyStopping, epoch_order, epochs_for, fit, passes_before, steps_per_epoch, training_fit
from alrun.train.fit_guard import EARLY_PASSES, FIT_ACCURACY, fit_flag, fit_threshold, flag_sentence
from tests.conftest import run_alrun
from tests.test_training_metrics import ScriptedStopping
from tests.test_verdict import write_job


def _counted_fit(n: int, spec: TrainSpec, early_stopping=None) -> int:
    """Gradient steps `fit` takes on a toy set of `n` items (forward passes in training mode)."""
    model = mlp(4, 3, 8, 0.5)
    calls = []
    model.register_forward_pre_hook(lambda module, args: calls.append(module.training))
    x = torch.randn(n, 4, generator=torch.Generator().manual_seed(0))
    fit(model, x, torch.arange(n) % 3, spec, torch.Generator().manual_seed(1), torch.Generator().manual_seed(2),
        early_stopping=early_stopping)
    return sum(calls)


def test_steps_per_epoch_do_not_depend_on_the_labelled_size():
    spec = TrainSpec(epochs=2, epoch_samples=5056)
    assert steps_per_epoch(spec, 20) == steps_per_epoch(spec, 20_000) == math.ceil(5056 / 32)
    # unset: one pass, as before
    assert steps_per_epoch(TrainSpec(), 20) == 1 and steps_per_epoch(TrainSpec(), 20_000) == 625
    short = TrainSpec(epochs=2, epoch_samples=64)
    assert _counted_fit(10, short) == _counted_fit(200, short) == 4
    assert _counted_fit(10, TrainSpec(epochs=2)) == 2 and _counted_fit(200, TrainSpec(epochs=2)) == 14


def test_min_updates_counts_in_fixed_length_epochs():
    spec = TrainSpec(epochs=1, schedule="min_updates", min_updates=100, epoch_samples=320, batch_size=32)
    assert epochs_for(spec, 20) == epochs_for(spec, 20_000) == 10


def test_epoch_order_is_seeded_and_drawn_with_replacement():
    spec = TrainSpec(epoch_samples=64)
    a = epoch_order(spec, 5, torch.Generator().manual_seed(3))
    b = epoch_order(spec, 5, torch.Generator().manual_seed(3))
    c = epoch_order(spec, 5, torch.Generator().manual_seed(4))
    assert a.shape == (64,) and torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() < 5 and len(set(a.tolist())) == 5  # 64 draws of 5 items: repeats
    # unset: today's permutation, from the same generator
    assert torch.equal(epoch_order(TrainSpec(), 7, torch.Generator().manual_seed(3)),
                       torch.randperm(7, generator=torch.Generator().manual_seed(3)))


@pytest.mark.parametrize("n", [10, 300])
def test_patience_counts_fixed_length_epochs(n):
    # best validation NLL at epoch 2, patience 3: five epochs of 64 samples (2 steps each) at any labelled size
    stopper = ScriptedStopping([2.0, 1.0, 1.5, 1.5, 1.5, 1.5, 1.5, 0.1], patience=3)
    spec = TrainSpec(epochs=20, schedule="early_stopping", validation_size=1, patience=3, epoch_samples=64)
    assert _counted_fit(n, spec, stopper) == 10
    assert stopper.best_epoch == 2 and stopper.epochs_run == 5


def test_training_fit_is_the_deterministic_networks_loss_and_accuracy():
    torch.manual_seed(0)
    model = mlp(4, 3, 8, 0.5).train()
    x, y = torch.randn(30, 4), torch.arange(30) % 3
    loss, acc = training_fit(model, x, y, batch_size=7)
    assert model.training  # the mode it was in
    model.eval()
    logits = model(x).detach()
    assert loss == pytest.approx(float(torch.nn.functional.cross_entropy(logits, y)), rel=1e-5)
    assert acc == pytest.approx(float((logits.argmax(1) == y).float().mean()))
    assert training_fit(model, x, y) == pytest.approx((loss, acc), rel=1e-6)


def test_fit_flag_reasons():
    assert fit_flag(0.95, 10, 10, 0.8, 10) == ""
    assert fit_flag(0.5, 10, 10, 0.8, 10) == "underfit"
    assert fit_flag(0.95, 1, 12, 0.8, 10) == "early_weights"
    assert fit_flag(0.95, 1, 1, 0.8, 10) == ""  # one epoch ran and was kept: not a collapse
    assert fit_flag(0.95, 2, 12, 0.8, 10) == ""  # epochs of one pass (kept_passes unset): two passes are not early
    assert fit_flag(0.95, 10, 10, 0.1, 10) == "chance" and fit_flag(0.2, 1, 5, 0.05, 10) == "chance"
    # with label noise lambda the bar is (1 - lambda) * 0.9
    assert fit_threshold(0.0) == FIT_ACCURACY == 0.9 and fit_threshold(0.2) == pytest.approx(0.72)
    assert fit_flag(0.75, 10, 10, 0.8, 10, label_noise=0.2) == ""
    assert fit_flag(0.75, 10, 10, 0.8, 10) == "underfit"
    assert flag_sentence(["", float("nan"), ""]) is None
    assert flag_sentence(["underfit", "", "chance"], 0.0).startswith(
        "1 of 3 steps ended at or below chance test accuracy; 1 of 3 steps did not fit their labelled set "
        "(training accuracy below 0.9)")


def test_passes_before_counts_labelled_samples_drawn_over_the_labelled_size():
    # one pass per epoch when epoch_samples is unset: 20 labels in batches of 32 is one step, 1,000 are 32 steps
    assert passes_before(TrainSpec(batch_size=32), 20, 1) == passes_before(TrainSpec(batch_size=32), 1000, 32) == 1.0
    assert passes_before(TrainSpec(batch_size=32), 1000, 3) == pytest.approx(96 / 1000)
    assert passes_before(TrainSpec(batch_size=32), 1000, 33) == pytest.approx(1032 / 1000)  # last batch is 8 short
    # fixed-length epochs (mnist_batchbald's reference: 1,264 samples in batches of 64, 20 steps): many passes
    spec = TrainSpec(epoch_samples=1264, batch_size=64)
    assert passes_before(spec, 20, 20) == pytest.approx(63.2) and passes_before(spec, 250, 20) == pytest.approx(5.056)
    assert passes_before(spec, 20, 21) == pytest.approx((1264 + 64) / 20)
    assert math.isnan(passes_before(spec, 0, 0))


def test_early_weights_counts_passes_over_the_labelled_set_not_epochs_or_steps():
    spec = TrainSpec(epoch_samples=1264, batch_size=64)
    # long fixed-length epochs: the first epoch (20 steps) kept, with training accuracy 1.0, is 5 to 63 passes
    for n in (20, 250):
        assert fit_flag(1.0, 1, 4, 0.9, 10, kept_passes=passes_before(spec, n, 20)) == ""
    # genuinely early: the first one-pass epoch kept while more ran, at 20 labels (1 step) and at 5,000 (157 steps)
    for n in (20, 5000):
        passes = passes_before(TrainSpec(batch_size=32), n, steps_per_epoch(TrainSpec(batch_size=32), n))
        assert passes == EARLY_PASSES and fit_flag(1.0, 1, 4, 0.9, 10, kept_passes=passes) == "early_weights"
    # checked every 3 steps (train.eval_every): the first check is a tenth of a pass over 1,000 labels
    assert fit_flag(0.95, 1, 4, 0.9, 10, kept_passes=passes_before(TrainSpec(), 1000, 3)) == "early_weights"
    # nothing ran after the kept weights (no early stopping, or the last check kept): not flagged
    assert fit_flag(0.95, 4, 4, 0.9, 10, kept_passes=0.5) == ""
    assert flag_sentence(["early_weights", ""]).startswith(
        "1 of 2 steps kept weights that had seen the labelled set at most once (training diverged or collapsed")


class _FirstEpochBest(EarlyStopping):
    """Early stopping whose validation NLL only gets worse: the first scored epoch is always the one kept."""

    def validation_scores(self, model, amp=False):
        self.calls = getattr(self, "calls", 0) + 1
        return float(self.calls), 0.0


@pytest.mark.parametrize("epoch_samples,flag", [(2048, ""), (None, "early_weights")])
def test_a_job_flags_a_kept_first_epoch_only_when_it_is_a_pass_or_less(tmp_path, monkeypatch, epoch_samples, flag):
    # the first epoch kept, 3 more run: epochs of 2,048 samples (32 steps, 68 to 102 passes over 20-30 labels) fit
    # their labels and are not flagged; epochs of one pass are
    monkeypatch.setattr(loop, "EarlyStopping", _FirstEpochBest)
    train = TrainSpec(epochs=30, schedule="early_stopping", validation_size=40, patience=3, epoch_samples=epoch_samples,
                      batch_size=64, lr=1e-2)
    spec = RunSpec(heuristic="random", seed=0, initial_labelled=20, query_size=10, max_labelled=30, mc_samples=2,
                   dataset=DatasetSpec(name="digits", max_train=300, max_test=100), train=train, device="cpu")
    rows = loop.ActiveLearningJob(spec, tmp_path / "job").run()
    assert (rows["epochs_trained"] == 1).all() and (rows["epochs_run"] == 4).all()
    shown = rows[["labelled", "train_acc", "test_acc", "fit_flag"]].to_string()
    if flag == "":
        assert (rows["fit_flag"] == "").all() and (rows["train_acc"] >= FIT_ACCURACY).all(), shown
    else:  # "chance" is tried first: a step at or below chance test accuracy says that instead
        assert ((rows["fit_flag"] == flag) | (rows["test_acc"] <= 0.1)).all(), shown
        assert flag in rows["fit_flag"].tolist(), shown


@pytest.mark.parametrize("value", [0, -5, 1.5, "many", True])
def test_epoch_samples_is_checked_in_one_sentence(value):
    with pytest.raises(ConfigError) as caught:
        run_spec_from_dict({"train": {"epoch_samples": value}})
    message = str(caught.value)
    assert message.startswith(f"`train.epoch_samples={value}` is not allowed") and "positive integer" in message
    assert "null" in message and message.count(".") <= 3 and "\n" not in message


def test_epoch_samples_null_or_positive():
    assert run_spec_from_dict({"train": {"epoch_samples": None}}).train.epoch_samples is None
    assert run_spec_from_dict({"train": {"epoch_samples": 5056}}).train.epoch_samples == 5056


def _flag(job, flags):
    steps = pd.read_csv(job / "steps.csv")
    steps.assign(train_acc=[0.5 if f else 1.0 for f in flags], fit_flag=flags).to_csv(job / "steps.csv", index=False)


def test_a_fitted_sweep_says_nothing_and_flagged_steps_are_said_per_setting(tmp_path):
    for noise in (0.0, 0.1):
        for seed in (0, 1):
            for name, shift in (("random", 0.0), ("bald", 0.05)):
                job = write_job(tmp_path, name, seed, [0.5, 0.6 + shift, 0.7 + shift + seed / 100],
                                **{"lambda": noise})
                _flag(job, ["underfit", "", ""] if noise and name == "bald" and seed == 0 else ["", "", ""])
    report = write_report(tmp_path)
    lines = report.verdict_lines
    flagged = [line for line in lines if "did not fit" in line]
    assert flagged == ["lambda=0.1: 1 of 12 steps did not fit their labelled set (training accuracy below 0.81): the "
                       "comparison there is unreliable; train longer (train.schedule=min_updates "
                       "train.min_updates=500, or train.epoch_samples with early stopping)."]
    # appended after that setting's own lines, which are kept
    assert lines.index(flagged[0]) == len(lines) - 1 and lines[-2].startswith("lambda=0.1: bald:")
    assert any(line.startswith("lambda=0.0: bald:") for line in lines)
    note = next(n for n in report.notes if n.startswith("Flagged steps"))
    assert "1 of 24 (1 underfit)" in note and note in report.markdown
    assert "fit_flag" in pd.read_csv(tmp_path / "summary.csv").columns
    # nothing flagged: no sentence, no note
    for job in tmp_path.glob("*/steps.csv"):
        _flag(job.parent, ["", "", ""])
    report = write_report(tmp_path)
    assert not any("did not fit" in line for line in report.verdict_lines)
    assert not any(n.startswith("Flagged steps") for n in report.notes)


def test_an_under_trained_run_is_flagged_and_a_fitted_one_is_not(tmp_path):
    common = ["scale=smoke", "max_labelled=30", "seed=0"]
    run_alrun([*common, "heuristic=bald,random", "epochs=1", "train.schedule=fixed",
               f"hydra.sweep.dir={tmp_path / 'under'}"], tmp_path)
    for steps_path in (tmp_path / "under").glob("*/steps.csv"):
        steps = pd.read_csv(steps_path)
        assert {"train_loss", "train_acc", "epochs_run", "fit_flag"} <= set(steps.columns)
        assert steps["fit_flag"].isin(["underfit", "chance"]).all()
        assert (steps["epochs_run"] == 1).all() and (steps["epochs_trained"] == 1).all()
    report_text = (tmp_path / "under" / "table.md").read_text()
    assert "of 4 steps" in report_text and "train longer" in report_text and "Flagged steps" in report_text
    # fitted: enough gradient steps, and fixed-length epochs with early stopping through the CLI
    proc = run_alrun([*common, "heuristic=random", "train.schedule=early_stopping", "train.epoch_samples=320",
                      "train.patience=3", "train.validation_size=30", "train.min_updates=300", "epochs=50",
                      f"hydra.sweep.dir={tmp_path / 'fitted'}"], tmp_path)
    steps = pd.read_csv(next((tmp_path / "fitted").glob("*/steps.csv")))
    assert steps["fit_flag"].isna().all() and (steps["train_acc"] >= 0.9).all(), steps.to_string()
    assert (steps["epochs_run"] >= 30).all()  # 300 updates at 10 steps an epoch, at 20 labels as at 30
    assert "did not fit" not in proc.stdout
    assert json.loads((next((tmp_path / "fitted").glob("*/spec.json"))).read_text())["train"]["epoch_samples"] == 320


@pytest.mark.parametrize("n", [10, 300])
def test_eval_every_checks_every_k_gradient_steps(n):
    # checks every 3 steps, best at check 2, patience 3: stopped at check 5, after 15 steps, whatever the epochs
    stopper = ScriptedStopping([2.0, 1.0, 1.5, 1.5, 1.5, 1.5, 1.5, 0.1], patience=3)
    spec = TrainSpec(epochs=20, schedule="early_stopping", validation_size=1, patience=3, epoch_samples=64,
                     eval_every=3)
    assert _counted_fit(n, spec, stopper) == 15
    assert stopper.best_epoch == 2 and stopper.epochs_run == 5
    # with min_updates 30: checks 1-9 (3 to 27 steps) are neither scored nor kept; check 10 is the first scored,
    # 11 the best, stopped at 14
    stopper = ScriptedStopping([2.0, 1.0] + [1.5] * 30, patience=3)
    assert _counted_fit(n, TrainSpec(**{**spec.__dict__, "min_updates": 30, "epochs": 30}), stopper) == 42
    assert stopper.best_epoch == 11 and stopper.epochs_run == 14


@pytest.mark.parametrize("value", [0, -1, 2.5])
def test_eval_every_is_checked_in_one_sentence(value):
    with pytest.raises(ConfigError, match=r"^`train.eval_every=.*` is not allowed: it must be a positive integer"):
        run_spec_from_dict({"train": {"eval_every": value}})
