"""Registry of data sources: name -> loader(spec) -> DataBundle.

Each loader reads its true on-disk format; a missing or corrupt data set raises DataError with
one sentence that says where it looked and how to get the data.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch

from alrun.config import components
from alrun.config.schema import DatasetSpec
from alrun.core.errors import DataError
from alrun.core.seeding import generator
from alrun.data.arrays import DATA_SEED, cap_indices
from alrun.data.bundle import DataBundle, standardise_images
from alrun.data.checks import check_bundle, check_lengths, check_not_empty, integer_labels, label_space, source_name
from alrun.data.pathologies import stratified_split

Loader = Callable[[DatasetSpec], DataBundle]
log = logging.getLogger("alrun")


def load_digits(spec: DatasetSpec) -> DataBundle:
    """scikit-learn's built-in 8x8 digits (1,797 items) as 64-d feature vectors in [0, 1]; no download."""
    from sklearn.datasets import load_digits as sk_load_digits

    raw = sk_load_digits()
    x = (raw.data / 16.0).astype(np.float32)
    y = raw.target.astype(np.int64)
    train_idx, test_idx = stratified_split(y, spec.test_fraction, generator(DATA_SEED, "digits/split"))
    return DataBundle(
        torch.from_numpy(x[train_idx]), y[train_idx], torch.from_numpy(x[test_idx]), y[test_idx],
        [str(c) for c in raw.target_names],
        [f"digits: held out a stratified test split of {len(test_idx)} items"],
    )


def load_npz(spec: DatasetSpec) -> DataBundle:
    """A user's arrays: x_train, y_train, x_test, y_test (images uint8 [N,H,W(,C)] or features), class_names."""
    if spec.root is None:
        raise DataError("The npz data set needs `dataset.root=PATH/TO/FILE.npz`.")
    path = Path(spec.root)
    if not path.is_file():
        raise DataError(f"No npz file at {path}: give `dataset.root=PATH/TO/FILE.npz` with arrays "
                        "x_train, y_train, x_test, y_test.")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as exc:  # zip / format errors of every kind: name the file
        raise DataError(f"The npz file {path} cannot be read ({type(exc).__name__}: {exc}).") from None
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in arrays]
    if missing:
        raise DataError(f"The npz file {path} lacks the arrays {', '.join(missing)}.")
    where = source_name(spec)
    # before any cast: a float label 1.5 would be truncated, a length mismatch would shift the split
    y_train = integer_labels(arrays["y_train"], "y_train", where)
    y_test = integer_labels(arrays["y_test"], "y_test", where)
    check_lengths(len(arrays["x_train"]), len(y_train), "train", where)
    check_lengths(len(arrays["x_test"]), len(y_test), "test", where)
    check_not_empty(len(y_train), len(y_test), where)
    # before anything is sized by the labels: one stray label of 10**9 must not build 10**9 class names
    names = label_space(y_train, y_test, arrays.get("class_names"), where)

    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:  # before np.concatenate would raise
        raise DataError(f"{where}: x_train items have shape {list(arrays['x_train'].shape[1:])} but x_test items "
                        f"{list(arrays['x_test'].shape[1:])}: both splits need one shape (the same features).")
    both = np.concatenate([arrays["x_train"], arrays["x_test"]])  # one set of image statistics
    stats = None  # images: the statistics removed, so that pretrained networks get their own normalisation
    if both.dtype == np.uint8 and both.ndim in (3, 4):
        x, stats = standardise_images(both)
    else:
        x = torch.from_numpy(np.ascontiguousarray(both, dtype=np.float32))
    n_train = len(y_train)
    return DataBundle(x[:n_train], y_train, x[n_train:], y_test, names, pixel_stats=stats)


# name -> loader, from the one registry (alrun.config.components)
SOURCES: Mapping[str, Loader] = components.Builders("dataset")


def load_dataset(spec: DatasetSpec) -> DataBundle:
    """Load `spec.name` (a built-in of the registry, or the user's `dataset._target_`), apply the seeded
    `max_train` / `max_test` caps, and check the data (alrun.data.checks); its warnings (a class the test
    set lacks, a class the caps dropped) go to the log."""
    if spec.name == components.CUSTOM:
        from alrun.data.custom import load_custom

        bundle = load_custom(spec)
    elif spec.name not in SOURCES:
        from alrun.core.errors import ConfigError

        raise ConfigError(f"`dataset.name={spec.name}` is not allowed: choose one of {', '.join(SOURCES)}.")
    else:
        bundle = SOURCES[spec.name](spec)
    # image sources cap before decoding (same generators), so this finds nothing more to cut for them
    train_idx, test_idx = cap_indices(len(bundle.y_train), len(bundle.y_test), spec)
    if len(train_idx) < len(bundle.y_train) or len(test_idx) < len(bundle.y_test):
        bundle = bundle.select(train_idx, test_idx)
    # labels, lengths, empty splits, finite features, two classes: before training
    for warning in check_bundle(bundle, source_name(spec)):
        log.warning("alrun: warning: %s", warning)
    return bundle
