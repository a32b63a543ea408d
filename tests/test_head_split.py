"""`model.head=NAME` alone splits a user's network there: a torchvision ResNet with dropout in its head, written
the way tutorials write it, runs its trunk once per item."""

from __future__ import annotations

import textwrap

import pytest
import torch

from alrun.config.schema import ModelSpec, run_spec_from_dict
from alrun.core.errors import ConfigError, ModelError
from alrun.model.builders import build_model
from alrun.model.inference import mc_probs
from alrun.model.mc_probe import check_split

TUTORIAL = '''
import torch.nn as nn
import torch.nn.functional as F
import torchvision


def resnet18(n_classes):
    model = torchvision.models.resnet18(weights=None)
    model.fc = nn.Sequential(nn.Dropout(0.5), nn.Linear(model.fc.in_features, n_classes))
    return model


class NoisyTrunk(nn.Module):
    """Functional dropout in forward, before the head: run once per item, the trunk would share its mask."""

    def __init__(self, n_classes, input_shape):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(0.5), nn.Linear(16, n_classes))

    def forward(self, x):
        return self.head(F.dropout(self.body(x), 0.3, training=True))
'''


@pytest.fixture
def tutorial(tmp_path, monkeypatch):
    (tmp_path / "mynets.py").write_text(textwrap.dedent(TUTORIAL))
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def resnet(head: str | None = "fc") -> torch.nn.Module:
    return build_model(ModelSpec(name="custom", target="mynets.resnet18", head=head), (3, 16, 16), 4, seed=0)


def test_head_alone_runs_the_resnet_trunk_once_and_equals_full_passes(tutorial):
    model = resnet()
    rows = []
    model.conv1.register_forward_hook(lambda module, args, out: rows.append(args[0].shape[0]))
    x = torch.randn(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    split = mc_probs(model, x, 10, generator=torch.Generator().manual_seed(1))
    assert sum(rows) == 6  # the trunk once per item
    rows.clear()
    full = mc_probs(model, x, 10, generator=torch.Generator().manual_seed(1), split=False)
    assert sum(rows) == 6 * 10
    torch.testing.assert_close(split, full)
    assert split.std(dim=2).mean() > 1e-4  # the head's dropout is sampled
    check_split(model, x, seed=0, model_name="`model._target_=mynets.resnet18`")  # the MC probe agrees


def test_a_head_without_the_dropout_is_refused(tutorial):
    with pytest.raises(ModelError, match="`model.head=layer4` must hold every dropout layer"):
        resnet("layer4")
    with pytest.raises(ModelError, match="`model.head=classifier` is not a submodule.*its children: conv1"):
        resnet("classifier")


def test_the_probe_refuses_a_split_that_changes_the_samples(tutorial):
    model = build_model(ModelSpec(name="custom", target="mynets.NoisyTrunk", head="head"), (3, 8, 8), 3, seed=0)
    with pytest.raises(ModelError, match="samples differently from T full passes"):
        check_split(model, torch.randn(4, 3, 8, 8), seed=0, model_name="`model._target_=mynets.NoisyTrunk`")


def test_trunk_alone_says_to_name_the_head():
    run_spec_from_dict({"model": {"name": "custom", "_target_": "a.B", "head": "fc"}})  # the head alone is fine
    with pytest.raises(ConfigError, match="name the head that holds the dropout layers instead, e.g. model.head=fc"):
        run_spec_from_dict({"model": {"name": "custom", "_target_": "a.B", "trunk": "features"}})
