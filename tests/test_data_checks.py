"""Data a user brings is checked before any training, for every source (npz, image trees, custom): labels
integer class ids in [0, C), x and y of a split equally long, finite features, at least two classes. A loss
that turns NaN or infinite stops that job with one sentence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alrun.config.schema import DatasetSpec, TrainSpec
from alrun.core.errors import DataError, TrainingDiverged
from alrun.data import load_dataset
from alrun.train.fit import fit
from tests.conftest import THREADS, run_alrun
from tests.fixtures_data import write_image_tree, write_npz


def npz_with(path, **changes):
    arrays = write_npz(path, images=False)
    arrays.update(changes)
    np.savez(path, **arrays)
    return arrays


def float_labels(n):
    return (np.arange(n) % 3).astype(np.float64)


CASES = {
    "negative label": (lambda a: {"y_train": np.where(np.arange(60) == 4, -1, a["y_train"])},
                       "y_train holds the label -1 (at index 4), but labels must be class ids 0..C-1"),
    "label past class_names": (lambda a: {"y_test": np.where(np.arange(30) == 2, 3, a["y_test"])},
                               "y_test holds the label 3 (at index 2), outside [0, 3) for its 3 classes"),
    "float label": (lambda a: {"y_train": np.where(np.arange(60) == 7, 1.5, float_labels(60))},
                    "y_train holds the non-integer label 1.5 (at index 7)"),
    "short labels": (lambda a: {"y_train": a["y_train"][:-1]}, "x_train has 60 items but y_train has 59"),
    "nan feature": (lambda a: {"x_train": np.where(np.arange(60)[:, None] == 9, np.nan, a["x_train"])},
                    "x_train holds NaN or infinite values in 1 of 60 items (the first at index 9)"),
    "inf feature": (lambda a: {"x_test": np.where(np.arange(30)[:, None] == 0, np.inf, a["x_test"])},
                    "x_test holds NaN or infinite values in 1 of 30 items (the first at index 0)"),
    "one class": (lambda a: {"y_train": np.zeros(60, dtype=np.int64), "y_test": np.zeros(30, dtype=np.int64),
                             "class_names": np.array(["a"])}, "y_train holds 1 class (only 0)"),
    "string labels": (lambda a: {"y_train": np.array(["a"] * 60)}, "y_train holds <U1 values"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_npz_data_is_checked(tmp_path, case):
    path = tmp_path / "data.npz"
    change, words = CASES[case]
    npz_with(path, **change(write_npz(path, images=False)))
    with pytest.raises(DataError) as info:
        load_dataset(DatasetSpec(name="npz", root=str(path)))
    message = str(info.value)
    assert message.startswith(f"the npz file {path}: ") and words in message and "\n" not in message


def test_integral_float_labels_are_accepted(tmp_path):
    path = tmp_path / "data.npz"
    npz_with(path, y_train=float_labels(60))
    bundle = load_dataset(DatasetSpec(name="npz", root=str(path)))
    assert bundle.y_train.dtype == np.int64 and list(bundle.y_train[:4]) == [0, 1, 2, 0]


def test_an_image_tree_with_one_class_is_refused(tmp_path):
    write_image_tree(tmp_path / "tree", classes=("cat",), n_train_per_class=4, n_test_per_class=2)
    with pytest.raises(DataError, match="y_train holds 1 class .only 0., but active learning needs at least two"):
        load_dataset(DatasetSpec(name="imagefolder", root=str(tmp_path / "tree"), cache=False))


def test_a_diverging_loss_stops_training_with_one_sentence():
    x = torch.randn(16, 4, generator=torch.Generator().manual_seed(0))
    y = torch.arange(16) % 2
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    with pytest.raises(TrainingDiverged) as info:  # Adam steps of 1e30: the logits overflow in the second step
        fit(model, x, y, TrainSpec(epochs=3, batch_size=8, lr=1e30), torch.Generator().manual_seed(0))
    assert "The training loss became" in str(info.value) and "try a lower `train.lr` (now 1e+30)" in str(info.value)


def test_cli_npz_with_a_bad_label_exits_2_before_training(tmp_path):
    path = tmp_path / "data.npz"
    arrays = write_npz(path, images=False)
    npz_with(path, y_train=np.where(np.arange(60) == 4, -1, arrays["y_train"]))
    proc = run_alrun(["scale=smoke", "heuristic=bald", "seed=0", "dataset=npz", f"dataset.root={path}",
                      f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path, check=False, env=THREADS)
    assert proc.returncode == 2
    assert "alrun: error: the npz file" in proc.stderr and "holds the label -1" in proc.stderr
    assert "Traceback" not in proc.stderr and not list((tmp_path / "sweep").glob("*/steps.csv"))


def test_cli_a_diverging_job_fails_alone_with_one_sentence(tmp_path):
    proc = run_alrun(["scale=smoke", "heuristic=bald", "seed=0,1", "train.lr=1e30",
                      f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path, check=False, env=THREADS)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    errors = sorted((tmp_path / "sweep").glob("*/error.txt"))
    assert len(errors) == 2  # both seeds ran; each stopped on its own
    text = errors[0].read_text()
    assert text.startswith("alrun: error: At step 0 (20 labelled), the training loss became") and text.count("\n") == 1
    assert "try a lower `train.lr` (now 1e+30)" in text
