"""A user's package that alrun has never seen, written by tests into a temporary folder outside the
repository and put on PYTHONPATH (in a subprocess) or sys.path (in-process)."""

from __future__ import annotations

import textwrap
from pathlib import Path

NETS = '''
import torch
from torch import nn


class Net(nn.Module):
    """Not an nn.Sequential: a trunk with BatchNorm and a head with dropout, for feature vectors."""

    def __init__(self, n_classes, input_shape, width=32, dropout=0.5):
        super().__init__()
        d = int(torch.tensor(input_shape).prod())
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(d, width), nn.BatchNorm1d(width), nn.ReLU())
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, width), nn.ReLU(),
                                        nn.Dropout(dropout), nn.Linear(width, n_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


class SmallCNN(nn.Module):
    """A CNN with BatchNorm and Dropout2d; the reshaping between its halves sits in forward."""

    def __init__(self, n_classes, input_shape, width=8, dropout=0.5):
        super().__init__()
        channels = input_shape[0]
        self.features = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                                      nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Dropout2d(dropout / 2), nn.Conv2d(width, width, 3, padding=1),
                                        nn.BatchNorm2d(width), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                                        nn.Dropout(dropout), nn.Linear(4 * width, n_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


def sequential_net(n_classes, input_shape, hidden=16):
    """A factory returning an nn.Sequential (split automatically at its first dropout)."""
    d = int(torch.tensor(input_shape).prod())
    return nn.Sequential(nn.Flatten(), nn.Linear(d, hidden), nn.ReLU(), nn.AlphaDropout(0.2),
                         nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(0.5), nn.Linear(hidden, n_classes))


def sequential_cnn(n_classes, input_shape, width=6):
    """An nn.Sequential whose head starts with Dropout2d (the split's repeat-at-first-dropout path)."""
    return nn.Sequential(nn.Conv2d(input_shape[0], width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.Dropout2d(0.3), nn.Conv2d(width, width, 3), nn.ReLU(), nn.Flatten(),
                         nn.FeatureAlphaDropout(0.1), nn.Linear(width * (input_shape[1] - 2) ** 2, n_classes))


def no_dropout(n_classes, input_shape):
    return nn.Sequential(nn.Flatten(), nn.Linear(int(torch.tensor(input_shape).prod()), n_classes))


def broken(n_classes):
    raise ValueError("width must be even")


def not_a_module(n_classes):
    return "a string"


def wrong_classes(n_classes, input_shape):
    d = int(torch.tensor(input_shape).prod())
    return nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(d, n_classes + 1))


def exploding(n_classes, input_shape):
    d = int(torch.tensor(input_shape).prod())
    return nn.Sequential(nn.Flatten(), nn.Linear(d, 8), nn.Dropout(0.5), nn.Linear(8, n_classes))
'''

DATA = '''
import numpy as np
import torch
from torch.utils.data import TensorDataset


def load(path):
    """An npz-backed data function."""
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def synthetic(n_train=120, n_test=60, n_classes=3, dim=6, nan=False, label=None, seed=0):
    """Feature vectors around a per-class mean; `nan` puts a NaN in x_train, `label` one bad y_train entry."""
    rng = np.random.default_rng(seed)
    y_train = np.arange(n_train) % n_classes
    y_test = np.arange(n_test) % n_classes
    means = rng.normal(0, 3, size=(n_classes, dim))
    x_train = (means[y_train] + rng.normal(size=(n_train, dim))).astype(np.float32)
    x_test = (means[y_test] + rng.normal(size=(n_test, dim))).astype(np.float32)
    if nan:
        x_train[5, 2] = np.nan
    if label is not None:
        y_train = y_train.astype(type(label))
        y_train[7] = label
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def pair(n_classes=3):
    """(train, test) as map-style torch Datasets of feature vectors."""
    arrays = synthetic(n_classes=n_classes)
    return (TensorDataset(torch.from_numpy(arrays["x_train"]), torch.from_numpy(arrays["y_train"])),
            TensorDataset(torch.from_numpy(arrays["x_test"]), torch.from_numpy(arrays["y_test"])))


def not_data():
    return 42


def images(path):
    """uint8 images from an npz written by write_image_npz (the npz layout)."""
    return load(path)


class Tiny(torch.utils.data.Dataset):
    """A torchvision-style data set class: PIL images of two sizes, labels from the brightness."""

    classes = ["dark", "light"]

    def __init__(self, root=None, train=True, download=False):
        from PIL import Image

        rng = np.random.default_rng(0 if train else 1)
        n = 40 if train else 16
        self.labels = [i % 2 for i in range(n)]
        sizes = [(12, 12), (10, 14)]
        self.items = [Image.fromarray(rng.integers(0, 100, size=sizes[i % 2]).astype(np.uint8) + 120 * y)
                      for i, y in enumerate(self.labels)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i], self.labels[i]
'''

ACQ = '''
import torch


def score(probs):
    """1 - max class probability of the mean predictive: probs [N, C, T] -> [N]."""
    return 1.0 - probs.mean(dim=2).max(dim=1).values


def scaled(probs, generator=None, factor=1.0):
    return factor * score(probs)


def nan_scores(probs):
    scores = score(probs)
    scores[0] = float("nan")
    return scores


def short_scores(probs):
    return score(probs)[:-1]


def select(probs, k, generator):
    """A batch selector: k items drawn uniformly without replacement."""
    return torch.randperm(probs.shape[0], generator=generator)[:k]


def duplicates(probs, k, generator):
    return torch.zeros(k, dtype=torch.long)
'''


def write_user_package(root: Path, name: str = "userpkg") -> Path:
    """Write the package `name` (nets, data, acq) under `root`; returns the folder to put on the path."""
    package = Path(root) / name
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("")
    for module, text in {"nets": NETS, "data": DATA, "acq": ACQ}.items():
        (package / f"{module}.py").write_text(textwrap.dedent(text))
    return Path(root)


def write_image_npz(path: Path, n_train: int = 120, n_test: int = 60, n_classes: int = 3, seed: int = 0) -> Path:
    """uint8 RGB images [N, 16, 16, 3] whose colour depends on the class, in the npz layout."""
    import numpy as np

    from tests.fixtures_data import class_images

    rng = np.random.default_rng(seed)
    arrays = {}
    for part, n in (("train", n_train), ("test", n_test)):
        y = np.arange(n) % n_classes
        arrays[f"x_{part}"], arrays[f"y_{part}"] = class_images(y, n_classes, (16, 16, 3), rng), y
    np.savez(path, **arrays, class_names=np.array([f"c{i}" for i in range(n_classes)]))
    return Path(path)
