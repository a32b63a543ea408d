"""A new user's first week, as the issue tried it: an ImageFolder laid out flat (root/<class>/*), a corrupt file or
three in it, a torchvision ResNet with dropout in its head split by `model.head=fc`, and the sweep's MLflow
experiment named by `tracker.experiment`."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest

from alrun.config.schema import DatasetSpec
from alrun.core.errors import DataError
from alrun.data.sources import load_dataset
from tests.conftest import run_alrun
from tests.fixtures_data import write_image_tree

RESNET = '''
import torch.nn as nn
import torchvision


def resnet18(n_classes):
    model = torchvision.models.resnet18(weights=None)
    model.fc = nn.Sequential(nn.Dropout(0.5), nn.Linear(model.fc.in_features, n_classes))
    return model
'''


def flat_tree(root: Path, n_per_class: int = 8, size: int = 16) -> Path:
    """torchvision's own layout: root/<class>/<i>.png, no train/ or test/."""
    write_image_tree(root / "tmp", n_train_per_class=n_per_class, n_test_per_class=None, sizes=((size, size),))
    for folder in (root / "tmp" / "train").iterdir():
        shutil.move(str(folder), root / folder.name)
    shutil.rmtree(root / "tmp")
    return root


def test_a_flat_image_folder_gets_a_seeded_stratified_test_split_and_says_so(tmp_path):
    root = flat_tree(tmp_path / "pets")
    spec = DatasetSpec(name="imagefolder", root=str(root), test_fraction=0.25)
    bundle = load_dataset(spec)
    assert bundle.class_names == ["cat", "dog", "horse"]
    assert len(bundle.y_test) == 6 and np.bincount(np.asarray(bundle.y_test)).tolist() == [2, 2, 2]
    assert len(bundle.y_train) == 18
    said = [n for n in bundle.notes if "class folders at the top" in n]
    assert len(said) == 1 and "test split of 6 of its 24 images" in said[0], bundle.notes
    again = load_dataset(DatasetSpec(name="imagefolder", root=str(root), test_fraction=0.25, cache=False))
    assert np.array_equal(np.asarray(again.x_test), np.asarray(bundle.x_test))  # the same split every time (seeded)


def test_every_corrupt_image_is_named_in_one_sentence(tmp_path):
    truth = write_image_tree(tmp_path, n_train_per_class=3, n_test_per_class=1, formats=("png",))
    victims = [Path(truth["train"][0][0]), Path(truth["train"][4][0]), Path(truth["test"][2][0])]
    for path in victims:
        path.write_bytes(b"not an image")
    with pytest.raises(DataError) as info:
        load_dataset(DatasetSpec(name="imagefolder", root=str(tmp_path)))
    message = str(info.value)
    assert message.startswith(f"3 image files under {tmp_path} cannot be decoded: ")
    for path in victims:
        assert str(path.relative_to(tmp_path)) in message
    assert message.count(".") <= 2 + 3  # one sentence (the dots are the files' extensions)


@pytest.mark.skipif(not __import__("importlib").util.find_spec("mlflow"), reason="the `tracking` extra is absent")
def test_flat_folder_resnet_split_at_fc_and_own_mlflow_experiment(tmp_path):
    from mlflow.tracking import MlflowClient

    flat_tree(tmp_path / "pets", n_per_class=20)
    (tmp_path / "mynets.py").write_text(textwrap.dedent(RESNET))
    proc = run_alrun(["scale=smoke", "heuristic=bald", "seed=0", "max_labelled=30", "dataset=imagefolder",
                      f"dataset.root={tmp_path / 'pets'}", "model=custom", "model._target_=mynets.resnet18",
                      "model.head=fc", "tracker=mlflow", "tracker.experiment=pets-resnet",
                      f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path,
                     env={"PYTHONPATH": f"{tmp_path}:{__import__('os').environ.get('PYTHONPATH', '')}"})
    log = proc.stdout + proc.stderr
    assert "holds its class folders at the top" in log
    assert "runs the whole network T times" not in log  # split at fc: the trunk runs once
    assert (tmp_path / "sweep" / "heuristic=bald,seed=0" / "done").exists()
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("pets-resnet")
    assert experiment is not None and len(client.search_runs([experiment.experiment_id])) == 2  # sweep + job
    assert client.get_experiment_by_name("baseline") is None  # not the study's


def test_class_folders_beside_a_test_folder_at_the_top_are_named(tmp_path):
    root = flat_tree(tmp_path / "pets")
    shutil.copytree(root / "cat", root / "test" / "cat")
    with pytest.raises(DataError, match=r"holds the folders cat, dog, horse, test at its top but no train/ folder"):
        load_dataset(DatasetSpec(name="imagefolder", root=str(root)))
