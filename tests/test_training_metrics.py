import math

import numpy as np
import pytest
import torch

from alrun.config import ModelSpec, TrainSpec
from alrun.inference import mc_probs
from alrun.models import build_model, split_at_first_dropout
from alrun.training import classification_metrics, epochs_for


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


def test_f1_of_absent_class_is_zero_not_an_error():
    ev = classification_metrics(torch.tensor([[1.0, 0.0, 0.0]]), np.array([0]))
    assert ev.f1_per_class.tolist() == [1.0, 0.0, 0.0]


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
