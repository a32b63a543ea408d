"""The label space a user's data brings is checked before any model is built (issue 21, part 4).

Labels are class ids 0..C-1 with training items of every class (1-based labels are refused with the fix),
test classes are training classes, no label runs past class_names or the training item count, neither split
is empty; a class the test set lacks is a warning and macro F1 averages over the classes it holds. Messages
name items by their index in the user's arrays and the user's pool size; a batch selector given as a scorer
names `heuristic.batch=true`. Through the real entry points: npz files in the true format, a custom data
function, a custom heuristic, and `python -m alrun` where the CLI adds something.
"""

from __future__ import annotations

import logging
import os
import sys
import textwrap
import time
import tracemalloc

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import f1_score

from alrun.acquire.custom import preflight
from alrun.config.schema import DatasetSpec
from alrun.core.errors import DataError, HeuristicError
from alrun.data import load_dataset
from alrun.data.arrays import cap_indices
from alrun.train.fit import classification_metrics
from tests.conftest import REPO, THREADS, run_alrun
from tests.fixtures_data import write_npz

PACKAGE = {
    "data": '''
        import numpy as np


        def one_based(n_train=60, n_test=30, n_classes=3, seed=0):
            """Feature vectors with labels 1..C, as many data sets ship them."""
            rng = np.random.default_rng(seed)
            out = {}
            for part, n in (("train", n_train), ("test", n_test)):
                y = np.arange(n) % n_classes
                out[f"x_{part}"] = (rng.normal(size=(n, 5)) + y[:, None]).astype(np.float32)
                out[f"y_{part}"] = y + 1
            return out


        class Items:
            """A map-style Dataset of (x, label) items that does not expose its labels as a whole."""

            def __init__(self, x, y):
                self.x, self.y = x, y

            def __len__(self):
                return len(self.y)

            def __getitem__(self, i):
                return self.x[i], int(self.y[i])


        def one_based_pair(exposed=True, **kwargs):
            """one_based as (train, test) Datasets: TensorDatasets (labels exposed) or plain item lists."""
            import torch
            from torch.utils.data import TensorDataset

            a = one_based(**kwargs)
            if exposed:
                return tuple(TensorDataset(torch.from_numpy(a[f"x_{p}"]), torch.from_numpy(a[f"y_{p}"]))
                             for p in ("train", "test"))
            return Items(a["x_train"], a["y_train"]), Items(a["x_test"], a["y_test"])
    ''',
    "acq": '''
        def per_class(probs):
            """A scorer that forgot to reduce over classes: [N, C] instead of [N]."""
            return probs.mean(dim=2)


        def pick(probs, k, generator):
            """A batch selector: the first k candidates."""
            import torch

            return torch.arange(k)
    ''',
}


@pytest.fixture(scope="module")
def package_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("labelsite")
    (root / "labelpkg").mkdir()
    (root / "labelpkg" / "__init__.py").write_text("")
    for module, text in PACKAGE.items():
        (root / "labelpkg" / f"{module}.py").write_text(textwrap.dedent(text))
    return root


@pytest.fixture
def label_pkg(package_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(package_dir))
    yield
    for name in [m for m in sys.modules if m == "labelpkg" or m.startswith("labelpkg.")]:
        del sys.modules[name]


def npz(path, class_names=True, **arrays):
    """write_npz's feature-vector file (60 train, 30 test items, classes 0..2) with some arrays replaced."""
    base = write_npz(path, images=False)
    if not class_names:
        base.pop("class_names")
    base.update(arrays)
    np.savez(path, **base)
    return base


def load_npz(path, **spec):
    return load_dataset(DatasetSpec(name="npz", root=str(path), **spec))


def refused(path, **spec) -> str:
    with pytest.raises(DataError) as info:
        load_npz(path, **spec)
    message = str(info.value)
    assert message.startswith(f"the npz file {path}: ") and "\n" not in message
    return message


def cli(tmp_path, *overrides, env=None):
    return run_alrun(["scale=smoke", "heuristic=bald", "seed=0", "train.min_updates=20", *overrides,
                      f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path, check=False, env={**THREADS, **(env or {})})


def stopped_before_training(proc, tmp_path) -> str:
    """The one `alrun: error:` sentence of a run that exited 2 before any step."""
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("alrun: error:")]
    assert len(errors) == 1, proc.stderr[-2000:]
    assert not list((tmp_path / "sweep").rglob("steps.csv"))
    return errors[0]


# ------------------------------------------------------------------ classes 0..C-1 with training items


def test_one_based_npz_labels_are_refused_with_the_fix(tmp_path):
    path = tmp_path / "data.npz"
    arrays = npz(path, class_names=False)
    npz(path, class_names=False, y_train=arrays["y_train"] + 1, y_test=arrays["y_test"] + 1)
    message = refused(path)
    assert "y_train has no items of class 0 (its labels run from 1 to 3, as if they were 1-based)" in message
    assert message.endswith("labels must be class ids 0..C-1, so subtract 1 from every label of y_train and y_test.")


def test_a_class_name_without_training_items_is_refused(tmp_path):
    path = tmp_path / "data.npz"
    arrays = npz(path)
    npz(path, y_train=np.where(arrays["y_train"] == 1, 0, arrays["y_train"]),
        y_test=np.where(arrays["y_test"] == 1, 0, arrays["y_test"]))
    assert "y_train has no items of class 1 ('b') of its 3 classes" in refused(path)


def test_gaps_in_the_label_ids_are_refused(tmp_path):
    path = tmp_path / "data.npz"
    arrays = npz(path, class_names=False)
    relabel = np.array([0, 2, 5])  # ids 0, 2, 5: classes 1, 3, 4 have no items
    npz(path, class_names=False, y_train=relabel[arrays["y_train"]], y_test=relabel[arrays["y_test"]])
    assert "y_train has no items of the 3 classes 1, 3, 4 of its 6 classes" in refused(path)


def test_a_custom_data_function_with_one_based_labels_is_refused(label_pkg):
    with pytest.raises(DataError) as info:
        load_dataset(DatasetSpec(name="custom", target="labelpkg.data.one_based"))
    message = str(info.value)
    assert message.startswith("`dataset._target_=labelpkg.data.one_based`: y_train has no items of class 0")
    assert "subtract 1" in message and "\n" not in message


@pytest.mark.parametrize("exposed", [True, False])
def test_one_based_labels_of_capped_datasets_are_refused(label_pkg, exposed):
    """max_train reads only some items: the labels a Dataset exposes are checked whole, and without them a
    subset of both splits without class 0 is 1-based labels, not the luck of the draw."""
    spec = DatasetSpec(name="custom", target="labelpkg.data.one_based_pair", args={"exposed": exposed},
                       max_train=30, max_test=20, cache=False)
    with pytest.raises(DataError) as info:
        load_dataset(spec)
    message = str(info.value)
    assert message.startswith("`dataset._target_=labelpkg.data.one_based_pair`: y_train has no items of class 0")
    assert "subtract 1" in message and "\n" not in message


def test_cli_custom_one_based_labels_stop_before_any_model(tmp_path, package_dir):
    env = {"PYTHONPATH": os.pathsep.join([str(REPO), str(package_dir)])}
    proc = cli(tmp_path, "dataset=custom", "dataset._target_=labelpkg.data.one_based", env=env)
    line = stopped_before_training(proc, tmp_path)
    assert line.startswith("alrun: error: `dataset._target_=labelpkg.data.one_based`: y_train has no items of class 0")


# ------------------------------------------------------------------ test classes against training classes


def test_a_test_class_the_training_set_lacks_is_refused(tmp_path):
    path = tmp_path / "data.npz"
    arrays = npz(path, class_names=False)
    y_test = arrays["y_test"].copy()
    y_test[11] = 3
    npz(path, class_names=False, y_test=y_test)
    message = refused(path)
    assert "y_test holds the label 3 (at index 11), a class y_train lacks (it holds the classes 0..2)" in message


def test_a_training_class_absent_from_the_test_set_warns_and_macro_f1_skips_it(tmp_path, caplog):
    path = tmp_path / "data.npz"
    arrays = npz(path)
    keep = arrays["y_test"] != 2
    npz(path, x_test=arrays["x_test"][keep], y_test=arrays["y_test"][keep])
    with caplog.at_level(logging.WARNING, logger="alrun"):
        bundle = load_npz(path)
    assert bundle.n_classes == 3 and set(bundle.y_test) == {0, 1}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("y_test holds no items of class 2 ('c'): macro F1 is the mean over the 2 classes" in w
               for w in warnings), warnings


def test_macro_f1_is_sklearns_over_the_classes_the_test_labels_hold():
    rng = np.random.default_rng(0)
    probs = torch.from_numpy(rng.dirichlet(np.ones(4), size=40))
    labels = rng.choice([0, 1, 3], size=40)  # class 2 has no test item; the model may still predict it
    predicted = probs.argmax(dim=1).numpy()
    assert 2 in predicted  # so a wrong treatment of the absent class would show
    ev = classification_metrics(probs, labels)
    assert ev.f1_macro == pytest.approx(f1_score(labels, predicted, labels=[0, 1, 3], average="macro"))
    assert np.isnan(ev.f1_per_class[2])
    np.testing.assert_allclose(ev.f1_per_class[[0, 1, 3]], f1_score(labels, predicted, labels=[0, 1, 3], average=None))


def test_cli_a_class_absent_from_the_test_set_runs_with_a_warning_and_empty_f1_column(tmp_path):
    path = tmp_path / "data.npz"
    arrays = npz(path)
    keep = arrays["y_test"] != 2
    npz(path, x_test=arrays["x_test"][keep], y_test=arrays["y_test"][keep])
    proc = cli(tmp_path, "dataset=npz", f"dataset.root={path}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "y_test holds no items of class 2 ('c')" in proc.stdout + proc.stderr
    (steps_path,) = (tmp_path / "sweep").rglob("steps.csv")
    steps = pd.read_csv(steps_path)
    assert steps["f1_c"].isna().all() and steps[["f1_a", "f1_b"]].notna().all().all()
    np.testing.assert_allclose(steps["test_f1_macro"], steps[["f1_a", "f1_b"]].mean(axis=1))


# ------------------------------------------------------------------ empty splits


@pytest.mark.parametrize("split,words", [
    ("train", "the training split is empty (x_train and y_train hold 0 items)"),
    ("test", "the test split is empty (x_test and y_test hold 0 items)"),
])
def test_an_empty_split_is_one_sentence(tmp_path, split, words):
    path = tmp_path / "data.npz"
    npz(path, **{f"x_{split}": np.zeros((0, 12), np.float32), f"y_{split}": np.zeros(0, np.int64)})
    assert words in refused(path)


def test_an_empty_split_of_a_custom_mapping_is_one_sentence(label_pkg):
    with pytest.raises(DataError, match=r"^`dataset._target_=labelpkg.data.one_based`: the test split is empty"):
        load_dataset(DatasetSpec(name="custom", target="labelpkg.data.one_based", args={"n_test": 0}))


@pytest.mark.parametrize("split", ["train", "test"])
def test_cli_an_empty_npz_split_stops_before_training(tmp_path, split):
    path = tmp_path / "data.npz"
    npz(path, **{f"x_{split}": np.zeros((0, 16, 16, 3), np.uint8), f"y_{split}": np.zeros(0, np.int64),
                 f"x_{'test' if split == 'train' else 'train'}": np.zeros((30 if split == "train" else 60, 16, 16, 3),
                                                                            np.uint8)})
    line = stopped_before_training(cli(tmp_path, "dataset=npz", f"dataset.root={path}"), tmp_path)
    assert line.startswith(f"alrun: error: the npz file {path}: the {'training' if split == 'train' else 'test'} "
                           "split is empty")


# ------------------------------------------------------------------ a label past any sane bound


def test_a_huge_label_is_refused_fast_without_a_big_allocation(tmp_path):
    path = tmp_path / "data.npz"
    arrays = npz(path, class_names=False)
    y_train = arrays["y_train"].copy()
    y_train[17] = 10**9
    npz(path, class_names=False, y_train=y_train)
    tracemalloc.start()
    tic = time.perf_counter()
    try:
        message = refused(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - tic < 5 and peak < 20 * 2**20  # under 20 MB (10**9 names or logits: gigabytes)
    assert ("y_train holds the label 1000000000 (at index 17), which would make a model of 1000000001 classes from "
            "60 training items") in message


def test_a_huge_test_label_is_refused(tmp_path):
    path = tmp_path / "data.npz"
    arrays = npz(path, class_names=False)
    y_test = arrays["y_test"].copy()
    y_test[3] = 10**9
    npz(path, class_names=False, y_test=y_test)
    assert "y_test holds the label 1000000000 (at index 3), a class y_train lacks" in refused(path)


def test_a_label_past_class_names_is_refused(tmp_path):
    path = tmp_path / "data.npz"
    arrays = npz(path)
    y_train = arrays["y_train"].copy()
    y_train[8] = 10**9
    npz(path, y_train=y_train)
    assert "y_train holds the label 1000000000 (at index 8), outside [0, 3) for its 3 classes" in refused(path)


def test_cli_a_huge_label_stops_before_any_model(tmp_path):
    path = tmp_path / "data.npz"
    arrays = npz(path, class_names=False)
    y_train = arrays["y_train"].copy()
    y_train[17] = 10**9
    npz(path, class_names=False, y_train=y_train)
    line = stopped_before_training(cli(tmp_path, "dataset=npz", f"dataset.root={path}"), tmp_path)
    assert "y_train holds the label 1000000000 (at index 17)" in line


# ------------------------------------------------------------------ indices in the user's arrays


def test_a_nan_is_named_by_its_index_in_the_users_array_under_max_train(tmp_path):
    path = tmp_path / "data.npz"
    arrays = npz(path)
    spec = DatasetSpec(name="npz", root=str(path), max_train=30)
    kept, _ = cap_indices(60, 30, spec)
    row = 20
    user_index = int(kept[row])
    assert user_index != row  # so the subset's index and the user's index differ
    x_train = arrays["x_train"].copy()
    x_train[user_index, 3] = np.nan
    npz(path, x_train=x_train)
    message = refused(path, max_train=30)
    assert f"x_train holds NaN or infinite values in 1 of 30 items (the first at index {user_index})" in message


def test_a_class_the_max_train_subset_drops_is_a_warning(tmp_path, caplog):
    path = tmp_path / "data.npz"
    arrays = npz(path)
    y_train = arrays["y_train"].copy()
    y_train[y_train == 2] = 0
    y_train[59] = 2  # one item of class 2, which the subset of 10 must not keep for this test
    spec = DatasetSpec(name="npz", root=str(path), max_train=10)
    kept, _ = cap_indices(60, 30, spec)
    assert 59 not in kept
    npz(path, y_train=y_train)
    with caplog.at_level(logging.WARNING, logger="alrun"):
        bundle = load_npz(path, max_train=10)
    assert bundle.n_classes == 3 and 2 not in bundle.y_train
    assert any("the 10 training items that dataset.max_train keeps hold no items of class 2 ('c')" in r.getMessage()
               for r in caplog.records)


# ------------------------------------------------------------------ a user's heuristic


def test_a_scorers_shape_error_names_the_users_pool(label_pkg):
    params = {"_target_": "labelpkg.acq.per_class", "batch": False}
    with pytest.raises(HeuristicError) as info:
        preflight(params, n_classes=3, n_samples=4, k=10, pool_size=1234)
    message = str(info.value)
    assert "returned scores of shape [18, 3] for 18 candidates (alrun's check before training" in message
    assert "your pool of 1234 items" in message and "\n" not in message


def test_a_selector_without_batch_names_the_setting(label_pkg):
    with pytest.raises(HeuristicError) as info:
        preflight({"_target_": "labelpkg.acq.pick", "batch": False}, n_classes=3, n_samples=4, k=10, pool_size=100)
    message = str(info.value)
    assert message.startswith("`heuristic._target_=labelpkg.acq.pick` needs the argument(s) k besides probs")
    assert "`heuristic.batch=true`" in message and "positional argument" not in message


def test_cli_a_wrong_scorer_shape_names_the_pool_size(tmp_path, package_dir):
    path = tmp_path / "data.npz"
    npz(path)
    env = {"PYTHONPATH": os.pathsep.join([str(REPO), str(package_dir)])}
    proc = cli(tmp_path, "dataset=npz", f"dataset.root={path}", "heuristic=custom",
               "heuristic._target_=labelpkg.acq.per_class", env=env)
    line = stopped_before_training(proc, tmp_path)
    # 60 training items, 20 labelled at the start: a pool of 40
    assert "returned scores of shape [18, 3] for 18 candidates" in line and "your pool of 40 items" in line


def test_cli_a_selector_without_batch_names_the_setting(tmp_path, package_dir):
    path = tmp_path / "data.npz"
    npz(path)
    env = {"PYTHONPATH": os.pathsep.join([str(REPO), str(package_dir)])}
    proc = cli(tmp_path, "dataset=npz", f"dataset.root={path}", "heuristic=custom",
               "heuristic._target_=labelpkg.acq.pick", env=env)
    assert "needs `heuristic.batch=true`" in stopped_before_training(proc, tmp_path)


def test_a_named_test_class_without_training_items_is_refused_as_a_test_class(tmp_path):
    path = tmp_path / "data.npz"
    arrays = npz(path)
    y_train = np.where(arrays["y_train"] == 2, 0, arrays["y_train"])  # class 'c' only in the test set
    npz(path, y_train=y_train)
    first = int(np.flatnonzero(arrays["y_test"] == 2)[0])
    message = refused(path)
    assert f"y_test holds the label 2 ('c') (at index {first}), a class y_train has no items of" in message
