"""Decoded uint8 images as every image source reads them, the seeded size caps, and the step to a DataBundle.

The caps (`max_train`, `max_test`) are applied *before* images are normalised (and, for image folders,
before they are decoded), so a small run on a large data set pays only for the items it keeps. They draw
from the same generators as :func:`alrun.data.sources.load_dataset`, so capping early or late keeps the
same items.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch.nn.functional as F

from alrun.config.schema import DatasetSpec
from alrun.core.errors import DataError
from alrun.core.seeding import generator
from alrun.data.bundle import DataBundle, standardise_images
from alrun.data.pathologies import subsample

# the data subset (max_train / max_test) and held-out splits are the same for every job seed,
# so that seeds differ only in the active-learning choices
DATA_SEED = 0


@dataclass
class ImageArrays:
    """A data set as read from disk: x_*: uint8 [N, H, W] or [N, H, W, C]; y_*: int64 [N]; class_names: [C]."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    notes: list[str] = field(default_factory=list)
    # set when the reader already kept a `max_train` / `max_test` subset: the index of each kept item among
    # all of the split's items (see DataBundle.train_index); None: these are all of them
    train_index: np.ndarray | None = None
    test_index: np.ndarray | None = None


def cap_indices(n_train: int, n_test: int, spec: DatasetSpec) -> tuple[np.ndarray, np.ndarray]:
    """The seeded `max_train` / `max_test` subsets: (train indices [<= n_train], test indices), ascending."""
    train_idx = subsample(n_train, spec.max_train, generator(DATA_SEED, "subset/train"))
    test_idx = subsample(n_test, spec.max_test, generator(DATA_SEED, "subset/test"))
    return train_idx, test_idx


def images_to_bundle(arrays: ImageArrays, spec: DatasetSpec) -> DataBundle:
    """Cap, normalise (one set of statistics over the kept train and test images) and, when
    `spec.image_size` differs from the stored size, resize to that square size (bilinear, antialiased).
    """
    train_idx, test_idx = cap_indices(len(arrays.y_train), len(arrays.y_test), spec)
    n_train = len(train_idx)
    kept = [x if len(idx) == len(x) else x[idx]  # all kept: no fancy-index copy
            for x, idx in ((arrays.x_train, train_idx), (arrays.x_test, test_idx))]
    both, stats = standardise_images(np.concatenate(kept))
    size = spec.image_size
    if size is not None and tuple(both.shape[2:]) != (size, size):
        # a convex combination of pixels: the statistics removed stay exact for the resized images
        both = F.interpolate(both, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    y_train = np.asarray(arrays.y_train, dtype=np.int64)[train_idx]
    y_test = np.asarray(arrays.y_test, dtype=np.int64)[test_idx]
    bundle = DataBundle(both[:n_train].contiguous(), y_train, both[n_train:].contiguous(), y_test,
                        list(arrays.class_names), list(arrays.notes), stats, arrays.train_index, arrays.test_index)
    if n_train < len(arrays.y_train):
        bundle.train_index = np.asarray(bundle.user_index("train", train_idx), dtype=np.int64)
    if len(test_idx) < len(arrays.y_test):
        bundle.test_index = np.asarray(bundle.user_index("test", test_idx), dtype=np.int64)
    return bundle


def check_labels(y: np.ndarray, n_classes: int) -> bool:
    """True when every label lies in [0, n_classes)."""
    y = np.asarray(y)
    return y.size == 0 or (int(y.min()) >= 0 and int(y.max()) < n_classes)



def data_root(spec: DatasetSpec) -> Path:
    """`spec.root` as a path; DataError when the data set has none."""
    if spec.root is None:
        raise DataError(f"The {spec.name} data set needs `dataset.root=FOLDER`, the folder that holds it.")
    return Path(spec.root).expanduser()


# Pillow's modes of 16-bit (and 32-bit integer) grayscale: its convert("RGB") clips them at 255, so a 16-bit
# PNG turns almost white; they are scaled to 8 bits instead (alrun's images are uint8 throughout)
WIDE_GRAY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def as_rgb(img: Any, where: str) -> Any:
    """A PIL image IMG as an 8-bit RGB image; 16-bit grayscale scaled from 0..65535 to 0..255 (not clipped at 255)."""
    if img.mode not in WIDE_GRAY_MODES:
        return img.convert("RGB")
    wide = np.asarray(img).astype(np.int64)
    if wide.size and (int(wide.min()) < 0 or int(wide.max()) > 65535):
        raise DataError(f"{where} is a {img.mode} grayscale image with values outside 0..65535, which alrun cannot "
                        "scale to 8 bits: save it as an 8- or 16-bit image.")
    # round(v * 255 / 65535): 65535 -> 255, 257 -> 1, the 8-bit value of each 16-bit level
    narrow = ((wide * 255 + 32767) // 65535).astype(np.uint8)
    from PIL import Image

    return Image.fromarray(narrow).convert("RGB")
