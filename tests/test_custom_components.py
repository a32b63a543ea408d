"""The user's own model, data and heuristic (`<group>=custom <group>._target_=...`), from a package alrun has
never seen: written by the test into a temporary folder outside the repository and put on the path."""

from __future__ import annotations

import json
import math
import os
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from alrun.acquire.acquisition import acquire
from alrun.config.schema import DatasetSpec, ModelSpec
from alrun.core.errors import ConfigError, DataError, HeuristicError, ModelError
from alrun.data import load_dataset
from alrun.model.builders import SeededDropout, build_model, dropout_layers
from alrun.model.inference import mc_probs
from tests.conftest import REPO, THREADS, run_alrun, steps_without_timings
from tests.user_package import write_image_npz, write_user_package


@pytest.fixture(scope="module")
def package_dir(tmp_path_factory):
    return write_user_package(tmp_path_factory.mktemp("site"))


@pytest.fixture
def user_pkg(package_dir, monkeypatch):
    """The user package importable in this process (removed again afterwards)."""
    monkeypatch.syspath_prepend(str(package_dir))
    yield
    for name in [m for m in sys.modules if m == "userpkg" or m.startswith("userpkg.")]:
        del sys.modules[name]


def user_env(package_dir) -> dict[str, str]:
    return {**THREADS, "PYTHONPATH": os.pathsep.join([str(REPO), str(package_dir)])}


def custom(target: str, **kwargs) -> ModelSpec:
    return ModelSpec(name="custom", target=target, **kwargs)


def trained_like(model: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial BatchNorm statistics, so eval-mode BatchNorm is not the identity."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model


def probs_pair(model, x, consistent=False, n_samples=5):
    """MC probabilities [N, C, T] with and without the trunk/head split, from the same generator seed."""
    split = mc_probs(model, x, n_samples, generator=torch.Generator().manual_seed(3), consistent=consistent,
                     batch_size=100)
    full = mc_probs(model, x, n_samples, generator=torch.Generator().manual_seed(3), consistent=consistent,
                    batch_size=100, split=False)
    return split, full


# ---------------------------------------------------------------- the model, in-process


@pytest.mark.parametrize("consistent", [False, True])
def test_split_equals_full_passes_for_a_custom_sequential(user_pkg, consistent):
    model = build_model(custom("userpkg.nets.sequential_net"), (6,), 3, seed=0)
    assert isinstance(model, torch.nn.Sequential)
    kinds = sorted((layer.alpha, layer.channelwise) for layer in dropout_layers(model))
    assert kinds == [(False, False), (True, False)]  # AlphaDropout became a seeded alpha layer
    x = torch.randn(20, 6, generator=torch.Generator().manual_seed(0))
    split, full = probs_pair(model, x, consistent)
    torch.testing.assert_close(split, full)
    assert split.shape == (20, 3, 5) and split.std(dim=2).mean() > 1e-3  # dropout is active


@pytest.mark.parametrize("consistent", [False, True])
def test_split_equals_full_passes_for_a_sequential_starting_its_head_with_dropout2d(user_pkg, consistent):
    model = trained_like(build_model(custom("userpkg.nets.sequential_cnn"), (2, 6, 6), 3, seed=0))
    x = torch.randn(11, 2, 6, 6, generator=torch.Generator().manual_seed(0))
    split, full = probs_pair(model, x, consistent)
    torch.testing.assert_close(split, full)
    assert split.std(dim=2).mean() > 1e-3


@pytest.mark.parametrize("target,shape", [("userpkg.nets.Net", (6,)), ("userpkg.nets.SmallCNN", (1, 8, 8))])
@pytest.mark.parametrize("consistent", [False, True])
def test_trunk_head_split_equals_full_passes(user_pkg, target, shape, consistent):
    model = trained_like(build_model(custom(target, trunk="features", head="classifier"), shape, 4, seed=1))
    x = torch.randn(19, *shape, generator=torch.Generator().manual_seed(0))
    calls = []
    handle = model.features.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    split, full = probs_pair(model, x, consistent)
    handle.remove()
    torch.testing.assert_close(split, full)
    # the trunk saw each item once in the split run and T times in the full one
    assert sum(calls) == 19 + 19 * 5
    assert split.std(dim=2).mean() > 1e-3


def test_consistent_masks_through_a_custom_cnn_with_dropout2d(user_pkg):
    """One mask per sample shared by all items: identical items get identical samples; BatchNorm stays in eval."""
    model = trained_like(build_model(custom("userpkg.nets.SmallCNN", trunk="features", head="classifier"),
                                     (1, 8, 8), 4, seed=0))
    channelwise = [layer for layer in dropout_layers(model) if layer.channelwise]
    assert len(channelwise) == 1
    bn = model.features[1]
    before = bn.running_mean.clone()
    item = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    x = torch.cat([item, torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(1)), item])
    consistent = mc_probs(model, x, 6, generator=torch.Generator().manual_seed(0), consistent=True, batch_size=4)
    independent = mc_probs(model, x, 6, generator=torch.Generator().manual_seed(0), batch_size=4)
    torch.testing.assert_close(consistent[0], consistent[-1])  # items 0 and 6 are in different chunks
    assert not torch.allclose(independent[0], independent[-1])
    torch.testing.assert_close(bn.running_mean, before)


def test_channelwise_dropout_drops_whole_channels_with_shared_masks():
    layer = SeededDropout(0.5, channelwise=True)
    layer.generator = torch.Generator().manual_seed(0)
    x = torch.ones(3 * 4, 6, 5, 5)  # 3 items x T=4 samples
    out = layer(x)
    per_channel = out.view(12, 6, -1)
    assert torch.equal(per_channel.amin(dim=2), per_channel.amax(dim=2))  # constant over each channel
    assert set(per_channel[..., 0].unique().tolist()) == {0.0, 2.0}
    layer.shared_mask_samples = 4
    shared = layer(x).view(3, 4, 6, 5, 5)
    assert torch.equal(shared[0], shared[1]) and torch.equal(shared[0], shared[2])
    assert not torch.equal(shared[0, 0], shared[0, 1])


def test_alpha_dropout_keeps_mean_and_variance_as_torch_does():
    x = torch.randn(200_000, generator=torch.Generator().manual_seed(0))
    layer = SeededDropout(0.2, alpha=True)
    layer.generator = torch.Generator().manual_seed(1)
    ours = layer(x)
    theirs = torch.nn.functional.alpha_dropout(x, 0.2, training=True)
    for out in (ours, theirs):
        assert abs(float(out.mean())) < 0.02 and abs(float(out.std()) - 1) < 0.02
    # a share p of the units takes one value, SELU's saturation under the affine map, as in torch
    saturation = 1.7580993408473766
    dropped = -saturation * (1 - 0.2) / math.sqrt((saturation**2 * 0.2 + 1) * (1 - 0.2))
    for out in (ours, theirs):
        assert abs(float(torch.isclose(out, torch.tensor(dropped), atol=1e-6).float().mean()) - 0.2) < 0.01


def test_custom_model_is_seeded(user_pkg):
    a = build_model(custom("userpkg.nets.Net"), (6,), 3, seed=5)
    b = build_model(custom("userpkg.nets.Net"), (6,), 3, seed=5)
    c = build_model(custom("userpkg.nets.Net"), (6,), 3, seed=6)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert not torch.equal(a.features[1].weight, c.features[1].weight)


@pytest.mark.parametrize("spec,shape,words", [
    (custom("userpkg.nets.broken"), (6,), "raised ValueError (width must be even)"),
    (custom("userpkg.nets.not_a_module"), (6,), "returned a str, but a torch.nn.Module was expected"),
    (custom("userpkg.nets.wrong_classes"), (6,), "returns [2, 4] for a batch of 2 items, but logits [2, 3]"),
    (custom("userpkg.nets.Net", trunk="features", head="clasifier"), (6,), "`model.head=clasifier` is not a submodule"),
    (custom("userpkg.nets.Net", trunk="classifier", head="features"), (6,), "must hold every dropout layer"),
    (custom("userpkg.nets.Net", weights_path="missing.pt"), (6,), "`model.weights_path=missing.pt` is not a file"),
])
def test_model_errors_are_one_sentence(user_pkg, spec, shape, words):
    with pytest.raises(ModelError) as info:
        build_model(spec, shape, 3, seed=0)
    message = str(info.value)
    assert words in message and "\n" not in message
    assert f"model._target_={spec.target}" in message or "model.weights_path" in message


def test_weights_path_loads_a_state_dict(user_pkg, tmp_path):
    source = build_model(custom("userpkg.nets.Net"), (6,), 3, seed=1)
    torch.save(source.state_dict(), tmp_path / "w.pt")
    loaded = build_model(custom("userpkg.nets.Net", weights_path=str(tmp_path / "w.pt")), (6,), 3, seed=2)
    assert torch.equal(loaded.features[1].weight, source.features[1].weight)


# ---------------------------------------------------------------- data and heuristics, in-process


def custom_data(target: str, **kwargs) -> DatasetSpec:
    args = kwargs.pop("args", {})
    return DatasetSpec(name="custom", target=target, args=args, **kwargs)


def test_custom_data_mapping_with_caps(user_pkg):
    bundle = load_dataset(custom_data("userpkg.data.synthetic", args={"n_classes": 4}, max_train=50))
    assert bundle.x_train.shape == (50, 6) and bundle.x_test.shape == (60, 6)
    assert bundle.class_names == ["0", "1", "2", "3"] and bundle.x_train.dtype == torch.float32


def test_custom_data_npz_images_take_image_size(user_pkg, tmp_path):
    path = write_image_npz(tmp_path / "img.npz")
    bundle = load_dataset(custom_data("userpkg.data.images", args={"path": str(path)}, image_size=8, max_test=20))
    assert bundle.x_train.shape == (120, 3, 8, 8) and bundle.x_test.shape == (20, 3, 8, 8)
    assert bundle.class_names == ["c0", "c1", "c2"] and bundle.pixel_stats is not None


def test_custom_data_pair_of_datasets(user_pkg):
    bundle = load_dataset(custom_data("userpkg.data.pair", max_train=30))
    direct = load_dataset(custom_data("userpkg.data.synthetic", max_train=30))
    torch.testing.assert_close(bundle.x_train, direct.x_train)  # the same items kept, read from the Dataset
    assert np.array_equal(bundle.y_train, direct.y_train)


def test_custom_datasets_are_decoded_once_into_the_cache(user_pkg, tmp_path):
    spec = custom_data("userpkg.data.Tiny", image_size=12, max_train=30, cache_dir=str(tmp_path / "cache"))
    first, second = load_dataset(spec), load_dataset(spec)
    assert any("decoded 46 items and cached them" in n for n in first.notes)
    assert any("read 46 decoded items from the cache" in n for n in second.notes)
    torch.testing.assert_close(first.x_train, second.x_train)
    other = load_dataset(custom_data("userpkg.data.Tiny", image_size=10, max_train=30,
                                     cache_dir=str(tmp_path / "cache")))  # another size: another key
    assert any("cached them" in n for n in other.notes) and other.x_train.shape[-1] == 10
    assert len(list((tmp_path / "cache" / "custom").glob("*.npz"))) == 2


def test_custom_data_torchvision_style_class(user_pkg):
    bundle = load_dataset(custom_data("userpkg.data.Tiny", image_size=12))
    assert bundle.x_train.shape == (40, 1, 12, 12) and bundle.x_test.shape == (16, 1, 12, 12)
    assert bundle.class_names == ["dark", "light"]


@pytest.mark.parametrize("target,args,error,words", [
    ("userpkg.data.synthetic", {"nan": True}, DataError, "x_train holds NaN or infinite values in 1 of 120 items"),
    ("userpkg.data.synthetic", {"label": -1}, DataError, "y_train holds the label -1 (at index 7)"),
    ("userpkg.data.synthetic", {"label": 1.5}, DataError, "y_train holds the non-integer label 1.5 (at index 7)"),
    ("userpkg.data.not_data", {}, DataError, "returned a int, but a mapping with x_train"),
    ("userpkg.data.synthetic", {"colour": 1}, DataError, "raised TypeError"),
    ("userpkg.data.lod", {}, ConfigError, "userpkg.data has no attribute lod (did you mean userpkg.data.load?)"),
])
def test_custom_data_errors_are_one_sentence(user_pkg, target, args, error, words):
    with pytest.raises(error) as info:
        load_dataset(custom_data(target, args=args))
    message = str(info.value)
    assert f"`dataset._target_={target}`" in message and words in message and "\n" not in message


def acquire_with(params, k=5, model=None):
    model = model or build_model(custom("userpkg.nets.Net"), (6,), 3, seed=0)
    x = torch.randn(30, 6, generator=torch.Generator().manual_seed(0))
    return acquire(model, x, "custom", k, 4, mc_generator=torch.Generator().manual_seed(1),
                   acquisition_generator=torch.Generator().manual_seed(2), heuristic_params=params).positions


def test_custom_scorer_takes_its_top_k_and_extra_keys(user_pkg):
    from userpkg.acq import score

    model = build_model(custom("userpkg.nets.Net"), (6,), 3, seed=0)
    chosen = acquire_with({"_target_": "userpkg.acq.score", "batch": False}, model=model)
    x = torch.randn(30, 6, generator=torch.Generator().manual_seed(0))
    expected = score(mc_probs(model, x, 4, generator=torch.Generator().manual_seed(1))).argsort(descending=True)[:5]
    assert chosen.tolist() == expected.tolist()
    scaled = acquire_with({"_target_": "userpkg.acq.scaled", "batch": False, "factor": -1.0}, model=model)
    assert set(scaled.tolist()).isdisjoint(chosen.tolist())  # the lowest scores instead


def test_custom_batch_selector(user_pkg):
    chosen = acquire_with({"_target_": "userpkg.acq.select", "batch": True}, k=7)
    assert chosen.shape == (7,) and chosen.unique().numel() == 7


@pytest.mark.parametrize("params,words", [
    ({"_target_": "userpkg.acq.nan_scores"}, "returned NaN or infinite scores for 1 of 30 candidates"),
    ({"_target_": "userpkg.acq.short_scores"}, "returned scores of shape [29] for 30 candidates"),
    ({"_target_": "userpkg.acq.duplicates", "batch": True}, "returned 4 duplicate indices"),
    # a selector without heuristic.batch=true, and a scorer with it: the sentence names the setting
    ({"_target_": "userpkg.acq.select", "batch": False}, "needs the argument(s) k besides probs, but it is called as "
                                                         "a scorer probs -> scores: a batch selector (probs, k, "
                                                         "generator) -> k indices needs `heuristic.batch=true`"),
    ({"_target_": "userpkg.acq.score", "batch": True}, "drop `heuristic.batch=true` to use it as a scorer"),
])
def test_custom_heuristic_output_is_checked(user_pkg, params, words):
    with pytest.raises(HeuristicError) as info:
        acquire_with(params)
    message = str(info.value)
    assert f"`heuristic._target_={params['_target_']}`" in message and words in message and "\n" not in message


# ---------------------------------------------------------------- through the CLI


@pytest.fixture(scope="module")
def custom_sweep(package_dir, tmp_path_factory):
    """`model=custom` with trunk/head and a user-named width, bald and batchbald, basic launcher."""
    cwd = tmp_path_factory.mktemp("custom_model")
    args = ["scale=smoke", "model=custom", "model._target_=userpkg.nets.Net", "++model.width=16",
            "model.trunk=features", "model.head=classifier", "heuristic=bald,batchbald", "seed=0"]
    proc = run_alrun([*args, f"hydra.sweep.dir={cwd / 'sweep'}"], cwd, env=user_env(package_dir))
    return cwd, args, proc


def job_dirs(sweep):
    return sorted(p.parent for p in sweep.glob("*/done"))


def test_cli_runs_a_custom_model_with_bald_and_batchbald(custom_sweep, package_dir):
    cwd, _, proc = custom_sweep
    jobs = job_dirs(cwd / "sweep")
    assert len(jobs) == 2
    for job in jobs:
        meta = json.loads((job / "job.json").read_text())
        model = meta["components"]["model"]
        assert model["target"] == "userpkg.nets.Net" and model["args"] == {"width": 16}
        assert model["sha256"] and model["file"].endswith("nets.py")
        assert meta["components"]["heuristic"]["name"] in ("bald", "batchbald")
        assert meta["components"]["dataset"]["version"]
    summary = pd.read_csv(cwd / "sweep" / "summary.csv")
    assert set(summary["model"]) == {"Net(width=16)"}
    assert set(summary["heuristic"]) == {"bald", "batchbald"}


def test_cli_custom_model_under_joblib_reproduces_the_basic_launcher(custom_sweep, package_dir):
    cwd, args, _ = custom_sweep
    other = cwd / "joblib"
    proc = run_alrun([*args, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={other}"], cwd,
                     env=user_env(package_dir))
    assert "Joblib.Parallel(n_jobs=2" in proc.stdout + proc.stderr
    for job in job_dirs(cwd / "sweep"):
        pd.testing.assert_frame_equal(steps_without_timings(other / job.name / "steps.csv"),
                                      steps_without_timings(job / "steps.csv"))


@pytest.mark.parametrize("args,words", [
    (["model._target_=userpkg.nets.Nett"], "`model._target_=userpkg.nets.Nett` cannot be found: userpkg.nets has "
                                           "no attribute Nett (did you mean userpkg.nets.Net?)."),
    (["model._target_=userpkgg.nets.Net"], "there is no module userpkgg on the Python path"),
    ([], "`model._target_=???` is not allowed: model=custom needs the dotted path"),
    (["model._target_=userpkg.nets"], "names a module, not a class or function"),
    (["model._target_=userpkg.nets.broken"], "raised ValueError (width must be even)"),
    # built, then refused by the MC probe for bald (alrun.model.mc_probe; random or entropy would run it at T = 1)
    (["model._target_=userpkg.nets.no_dropout"], "gives identical MC-Dropout samples on a probe batch of 4 inputs, "
                                                 "so heuristic=bald would score every candidate 0: it has no dropout "
                                                 "layer"),
])
def test_cli_model_errors_exit_2_with_one_sentence(package_dir, tmp_path, args, words):
    # an earlier result in the sweep folder survives
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "keep.txt").write_text("earlier result")
    proc = run_alrun(["scale=smoke", "heuristic=bald", "seed=0", "model=custom", *args, f"hydra.sweep.dir={sweep}"],
                     tmp_path, check=False, env=user_env(package_dir))
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("alrun: error:")]
    assert len(lines) == 1 and words in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert (sweep / "keep.txt").read_text() == "earlier result"
    assert not list(sweep.glob("*/steps.csv"))


def test_cli_custom_model_data_and_scorer_together(package_dir, tmp_path):
    """A new user's run: a non-Sequential CNN with Dropout2d and BatchNorm, an npz-backed data function
    (uint8 images, shrunk by scale=smoke's image_size) and a custom scorer, next to bald."""
    data = write_image_npz(tmp_path / "parts.npz")
    sweep = tmp_path / "sweep"
    run_alrun(["scale=smoke", "model=custom", "model._target_=userpkg.nets.SmallCNN", "model.trunk=features",
               "model.head=classifier", "dataset=custom", "dataset._target_=userpkg.data.images",
               f"++dataset.path={data}", "heuristic=custom", "heuristic._target_=userpkg.acq.scaled",
               "++heuristic.factor=2.0", "seed=0", f"hydra.sweep.dir={sweep}"], tmp_path, env=user_env(package_dir))
    (job,) = job_dirs(sweep)  # dataset.path is a path: kept out of the folder name
    meta = json.loads((job / "job.json").read_text())
    assert meta["components"]["heuristic"] | {"sha256": None, "file": None} == {
        "name": "scaled(factor=2.0)", "target": "userpkg.acq.scaled", "args": {"factor": 2.0}, "module": "userpkg.acq",
        "batch": False, "sha256": None, "file": None}
    assert meta["components"]["dataset"]["args"] == {"path": str(data)}
    summary = pd.read_csv(sweep / "summary.csv")
    assert set(summary["heuristic"]) == {"scaled(factor=2.0)"} and set(summary["model"]) == {"SmallCNN"}
    assert summary["labelled"].max() == 50 and summary["test_acc"].iloc[-1] > 0.5


@pytest.mark.parametrize("args,words", [
    (["dataset=custom", "dataset._target_=userpkg.dat.load"], "`dataset._target_=userpkg.dat.load` cannot be "
                                                              "found: userpkg has no module or attribute dat (did "
                                                              "you mean userpkg.data?)."),
    (["dataset=custom", "dataset._target_=userpkg.data.synthetic", "++dataset.nan=true"],
     "x_train holds NaN or infinite values"),
    (["heuristic=custom", "heuristic._target_=userpkg.acq.scor"], "did you mean userpkg.acq.score?"),
    (["heuristic=custom"], "`heuristic._target_=???` is not allowed"),
    (["heuristic=custom", "heuristic._target_=userpkg.acq.nan_scores"], "returned NaN or infinite scores"),
    (["++model._target_=userpkg.nets.Net"], "`model._target_=userpkg.nets.Net` is not allowed: it is read only with "
                                          "model=custom"),
])
def test_cli_data_and_heuristic_errors_exit_2_with_one_sentence(package_dir, tmp_path, args, words):
    proc = run_alrun(["scale=smoke", "seed=0", *args, f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path,
                     check=False, env=user_env(package_dir))
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("alrun: error:")]
    assert len(lines) == 1 and words in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list((tmp_path / "sweep").glob("*/steps.csv"))  # stopped before any training


# ---------------------------------------------------------------- examples/ and the config


@pytest.fixture
def example_pkg(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "examples"))
    yield
    for name in [m for m in sys.modules if m == "mypkg" or m.startswith("mypkg.")]:
        del sys.modules[name]


def test_the_example_package_works_as_the_readme_says(example_pkg, tmp_path):
    from mypkg.data import write_digits

    path = write_digits(str(tmp_path / "parts.npz"))
    bundle = load_dataset(custom_data("mypkg.data.load", args={"path": str(path)}, image_size=16))
    assert bundle.x_train.shape[1:] == (1, 16, 16) and bundle.n_classes == 10
    model = trained_like(build_model(custom("mypkg.nets.Net", trunk="features", head="classifier",
                                            args={"width": 8}), bundle.input_shape, 10, seed=0))
    split, full = probs_pair(model, bundle.x_test[:12], consistent=True)
    torch.testing.assert_close(split, full)
    chosen = acquire(model, bundle.x_train[:40], "custom", 10, 4, mc_generator=torch.Generator().manual_seed(0),
                     acquisition_generator=torch.Generator().manual_seed(1),
                     heuristic_params={"_target_": "mypkg.acq.balanced_top", "batch": True}).positions
    assert chosen.unique().numel() == 10 and int(chosen.max()) < 40


@pytest.mark.parametrize("cfg,words", [
    ({"model": {"name": "custom", "trunk": "features"}}, "`model._target_=???` is not allowed"),
    ({"model": {"name": "custom", "_target_": "a.B", "trunk": "features"}},
     "name the head that holds the dropout layers instead"),
    ({"model": {"name": "mlp", "trunk": "features", "head": "classifier"}}, "name the halves of a custom model"),
    ({"model": {"name": "mlp", "width": 3}}, "unknown setting `model.width`"),
    ({"dataset": {"name": "digits", "_target_": "a.load"}}, "it is read only with dataset=custom"),
    ({"heuristic": {"name": "bald", "factor": 2}}, "bald takes no settings"),
    ({"heuristic": {"name": "custom", "_target_": "a.score", "batch": "yes"}}, "true (a batch selector) or false"),
])
def test_config_checks_of_custom_components(cfg, words):
    from alrun.config.schema import run_spec_from_dict

    with pytest.raises(ConfigError) as info:
        run_spec_from_dict(cfg)
    assert words in str(info.value)


def test_extra_keys_of_custom_components_become_arguments():
    from alrun.config.schema import run_spec_from_dict

    spec = run_spec_from_dict({"model": {"name": "custom", "_target_": "a.Net", "width": 64, "dropout": 0.3},
                               "dataset": {"name": "custom", "_target_": "a.load", "path": "x.npz", "max_train": 9},
                               "heuristic": {"name": "custom", "_target_": "a.score", "batch": False, "k": 1}})
    assert (spec.model.target, spec.model.args, spec.model.dropout) == ("a.Net", {"width": 64}, 0.3)
    assert (spec.dataset.target, spec.dataset.args, spec.dataset.max_train) == ("a.load", {"path": "x.npz"}, 9)
    assert spec.heuristic_params == {"_target_": "a.score", "batch": False, "k": 1}


def test_the_registry_is_the_one_list():
    from alrun.acquire import heuristics
    from alrun.config import components
    from alrun.config import schema as config
    from alrun.data import SOURCES
    from alrun.model import backbones

    assert config.MODELS == components.names("model") and "custom" in config.MODELS
    assert set(SOURCES) == set(components.names("dataset")) - {"custom"}
    assert set(heuristics.REGISTRY) == set(components.names("heuristic", role="scorer"))
    assert set(backbones.BUILDERS) == set(config.BACKBONES) == set(backbones.FEATURE_DIMS)
    for kind in components.KINDS:  # every built-in's builder imports
        for name in components.names(kind):
            if components.get(kind, name).target is not None:
                assert callable(components.builder(kind, name))


def test_without_trunk_and_head_a_custom_module_runs_whole_and_says_so_once(user_pkg, caplog):
    with caplog.at_level("INFO", logger="alrun"):
        model = trained_like(build_model(custom("userpkg.nets.Net"), (6,), 3, seed=0))
    assert sum("runs the whole network T times" in r.getMessage() for r in caplog.records) == 1
    x = torch.randn(9, 6, generator=torch.Generator().manual_seed(0))
    calls = []
    handle = model.features.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    split, full = probs_pair(model, x, consistent=True)
    handle.remove()
    torch.testing.assert_close(split, full)
    assert sum(calls) == 2 * 9 * 5  # both runs: every item T times through the trunk


def test_the_frozen_feature_cache_is_keyed_by_the_custom_data_target(tmp_path):
    """The same tensors from two data functions (or two arguments) give two cache entries."""
    from dataclasses import replace

    from alrun.model.features import featurize
    from tests.test_features import frozen_spec, image_bundle

    bundle, base = image_bundle(), frozen_spec(tmp_path)
    specs = [replace(base, dataset=custom_data("a.load", args={"path": "x.npz"})),
             replace(base, dataset=custom_data("a.load", args={"path": "y.npz"})),
             replace(base, dataset=custom_data("b.load", args={"path": "x.npz"}))]
    for spec in specs:
        assert any("computed" in n for n in featurize(bundle, spec, torch.device("cpu")).notes)
    assert any("from the cache" in n for n in featurize(bundle, specs[0], torch.device("cpu")).notes)
    assert len(list(tmp_path.glob("custom-*.pt"))) == 3
