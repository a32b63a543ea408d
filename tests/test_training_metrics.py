import math

import numpy as np
import pytest
import torch

from alrun.config.schema import ModelSpec, TrainSpec
from alrun.model.builders import build_model, mlp, split_at_first_dropout
from alrun.model.inference import mc_probs
from alrun.train.fit import EarlyStopping, classification_metrics, epochs_for, fit


def test_metrics_hand_computed():
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    labels = np.array([0, 1, 1])
    ev = classification_metrics(probs, labels)
    assert ev.nll == pytest.approx(-(math.log(0.9) + math.log(0.8) + math.log(0.4)) / 3, rel=1e-6)
    assert ev.accuracy == pytest.approx(2 / 3)
    # class 0: tp=1 fp=1 fn=0 -> F1 2/3; class 1: tp=1 fp=0 fn=1 -> F1 2/3
    assert ev.f1_per_class == pytest.approx([2 / 3, 2 / 3])
    assert ev.f1_macro == pytest.approx(2 / 3)
    # recall of class 0: 1/1, of class 1: 1/2
    assert ev.balanced_accuracy == pytest.approx(0.75)


def test_f1_of_a_class_without_test_items_is_nan_and_left_out_of_the_macro_mean():
    ev = classification_metrics(torch.tensor([[1.0, 0.0, 0.0]]), np.array([0]))
    assert ev.f1_per_class[0] == 1.0 and np.isnan(ev.f1_per_class[1:]).all() and ev.f1_macro == 1.0


def test_min_updates_schedule():
    spec = TrainSpec(epochs=2, schedule="min_updates", min_updates=100, batch_size=10)
    assert epochs_for(spec, 20) == 50
    assert epochs_for(spec, 5000) == 2
    assert epochs_for(TrainSpec(epochs=7), 20) == 7


@pytest.mark.parametrize("name,shape", [("mlp", (12,)), ("gal_cnn", (1, 16, 16))])
def test_trunk_head_split_equals_full_passes_with_same_masks(name, shape):
    model = build_model(ModelSpec(name=name, hidden=16), shape, 3, seed=0)
    trunk, head = split_at_first_dropout(model)
    assert len(trunk) > 0 and len(head) > 0
    x = torch.randn(6, *shape, generator=torch.Generator().manual_seed(0))
    split = mc_probs(model, x, 5, batch_size=100, generator=torch.Generator().manual_seed(7))
    full = mc_probs(model, x, 5, batch_size=100, generator=torch.Generator().manual_seed(7), split=False)
    assert split.shape == (6, 3, 5)
    assert torch.allclose(split, full, atol=1e-6)
    # the T samples really differ (dropout is active at inference)
    assert split.std(dim=2).max() > 1e-4


def test_consistent_masks_are_shared_across_items_and_chunks():
    model = build_model(ModelSpec(name="mlp", hidden=16), (4,), 3, seed=0)
    x = torch.randn(1, 4).expand(10, 4).contiguous()  # ten copies of one item
    probs = mc_probs(model, x, 6, batch_size=3, generator=torch.Generator().manual_seed(1), consistent=True)
    assert torch.allclose(probs, probs[:1].expand_as(probs))


def test_model_init_is_seeded_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    a = build_model(ModelSpec(name="mlp"), (5,), 2, seed=3).state_dict()
    b = build_model(ModelSpec(name="mlp"), (5,), 2, seed=3).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(state, torch.get_rng_state())


class ScriptedStopping(EarlyStopping):
    """Early stopping whose validation NLL follows `script`; records the weights after every epoch."""

    def __init__(self, script: list[float], patience: int) -> None:
        super().__init__(torch.zeros(1, 4), torch.zeros(1, dtype=torch.long), patience)
        self.script, self.snapshots = script, []

    def validation_nll(self, model, amp=False):
        self.snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return self.script[len(self.snapshots) - 1]


def _fit_toy(early_stopping, epochs=20, min_updates=0):
    torch.manual_seed(0)
    model = mlp(4, 3, 8, 0.5)
    x, y = torch.randn(40, 4), torch.arange(40) % 3
    spec = TrainSpec(epochs=epochs, schedule="early_stopping", validation_size=1, patience=3, min_updates=min_updates)
    fit(model, x, y, spec,
        torch.Generator().manual_seed(1), torch.Generator().manual_seed(2), early_stopping=early_stopping)
    return model


def test_early_stopping_keeps_the_best_epoch():
    stopper = ScriptedStopping([3.0, 2.0, 1.0, 1.5, 1.2, 1.1, 0.5, 0.9], patience=3)
    model = _fit_toy(stopper)
    # best at epoch 3; epochs 4-6 are no better, so training stops after epoch 6 (never reaching the 0.5)
    assert len(stopper.snapshots) == 6 and stopper.best_epoch == 3 and stopper.best_nll == 1.0
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in stopper.snapshots[2].items())
    assert not all(torch.equal(state[k], v) for k, v in stopper.snapshots[5].items())


def test_early_stopping_runs_at_most_epochs_and_ignores_nan():
    stopper = ScriptedStopping([float("nan")] + [5.0 - i * 0.1 for i in range(20)], patience=3)
    model = _fit_toy(stopper, epochs=8)
    assert len(stopper.snapshots) == 8 and stopper.best_epoch == 8
    assert all(torch.equal(model.state_dict()[k], v) for k, v in stopper.snapshots[7].items())


class ScriptedScores(EarlyStopping):
    """Early stopping whose validation (NLL, accuracy) follow `script`, watching `stop_on`."""

    def __init__(self, script: list[tuple[float, float]], patience: int, stop_on: str) -> None:
        super().__init__(torch.zeros(1, 4), torch.zeros(1, dtype=torch.long), patience, stop_on=stop_on)
        self.script, self.snapshots = script, []

    def validation_scores(self, model, amp=False):
        self.snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return self.script[len(self.snapshots) - 1]


def test_early_stopping_on_accuracy_keeps_the_first_best_accuracy():
    # the NLL is best at epoch 2 (an over-confident network's NLL rises while its accuracy still improves);
    # the accuracy is best at epoch 4 and equalled at 5: the first of equals is kept, 3 epochs later it stops
    script = [(2.0, 0.3), (1.0, 0.5), (1.5, 0.6), (1.8, 0.8), (1.9, 0.8), (2.0, 0.7), (2.1, 0.79), (2.2, 0.9)]
    stopper = ScriptedScores(script, patience=3, stop_on="accuracy")
    model = _fit_toy(stopper)
    assert len(stopper.snapshots) == 7 and stopper.best_epoch == 4 and stopper.best_nll == 1.8
    assert all(torch.equal(model.state_dict()[k], v) for k, v in stopper.snapshots[3].items())
    on_nll = ScriptedScores(script, patience=3, stop_on="nll")
    on_nll.validation_nll = lambda model, amp=False: on_nll.validation_scores(model, amp)[0]
    _fit_toy(on_nll)
    assert on_nll.best_epoch == 2 and len(on_nll.snapshots) == 5


def test_validation_accuracy_is_the_deterministic_networks():
    torch.manual_seed(0)
    model = mlp(4, 3, 8, 0.5).train()
    x, y = torch.randn(30, 4), torch.arange(30) % 3
    nll, accuracy = EarlyStopping(x, y, patience=1, batch_size=7).validation_scores(model)
    model.eval()
    assert accuracy == pytest.approx(float((model(x).argmax(dim=1) == y).float().mean()))
    assert nll == pytest.approx(float(torch.nn.functional.cross_entropy(model(x), y).detach()), rel=1e-5)


def test_validation_nll_is_the_deterministic_networks():
    torch.manual_seed(0)
    model = mlp(4, 3, 8, 0.5).train()
    x, y = torch.randn(30, 4), torch.arange(30) % 3
    nll = EarlyStopping(x, y, patience=1, batch_size=7).validation_nll(model)
    model.eval()
    expected = float(torch.nn.functional.cross_entropy(model(x), y).detach())
    assert nll == pytest.approx(expected, rel=1e-5)
    model.train()
    assert EarlyStopping(x, y, patience=1).validation_nll(model) == pytest.approx(nll, rel=1e-5)
    assert model.training  # the model is left in the mode it was in


def test_early_stopping_waits_for_min_updates_and_keeps_nothing_before():
    # 40 items in batches of 32: 2 steps an epoch, so 16 steps are 8 epochs. Epochs 1-7 are not scored and
    # never kept (a barely trained network's validation NLL can stay the best); epoch 8 is the first scored,
    # the best, and 3 epochs later training stops
    assert epochs_for(TrainSpec(epochs=5, schedule="early_stopping", validation_size=1, min_updates=16), 40) == 8
    stopper = ScriptedStopping([1.0] + [2.0] * 30, patience=3)
    model = _fit_toy(stopper, epochs=20, min_updates=16)
    assert len(stopper.snapshots) == 4 and stopper.best_epoch == 8 and stopper.epochs_run == 11
    assert all(torch.equal(model.state_dict()[k], v) for k, v in stopper.snapshots[0].items())
