"""Checks of the data a user brings, for every source, before any training.

Each failure is one DataError sentence naming where the data came from (the file, the folder or
the `dataset._target_`) and the array: labels must be integer class ids in [0, C), x and y of a
split equally long, features finite, and the training labels must hold at least two classes.
"""

from __future__ import annotations

import numpy as np
import torch

from alrun.config import DatasetSpec
from alrun.data.bundle import DataBundle
from alrun.errors import DataError

_CHUNK_ENTRIES = 1 << 22  # isfinite over rows in chunks: no bool copy of a whole image set


def source_name(spec: DatasetSpec) -> str:
    """How sentences name the data: its file, folder or dotted path."""
    if spec.name == "custom":
        return f"`dataset._target_={spec.target}`"
    if spec.name == "npz":
        return f"the npz file {spec.root}"
    if spec.name in ("imagefolder", "miotcd"):
        return f"the {spec.name} data at {spec.root}"
    return f"the {spec.name} data set"


def integer_labels(y: object, array: str, where: str) -> np.ndarray:
    """Labels as int64 [N], refusing what a cast would silently change: non-integer values (1.5),
    non-numeric types, and arrays that are not one label per item."""
    y = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{where}: {array} has shape {list(y.shape)}, but one integer label per item [N] "
                        "was expected.")
    if y.dtype.kind == "b" or y.dtype.kind not in "iuf":
        raise DataError(f"{where}: {array} holds {y.dtype} values, but integer class ids 0..C-1 were expected.")
    if y.dtype.kind == "f":
        bad = ~np.isfinite(y) | (y != np.round(y))
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise DataError(f"{where}: {array} holds the non-integer label {y[first]} (at index {first}), but "
                            "labels must be integer class ids 0..C-1.")
    return y.astype(np.int64)


def check_lengths(n_x: int, n_y: int, split: str, where: str) -> None:
    if n_x != n_y:
        raise DataError(f"{where}: x_{split} has {n_x} items but y_{split} has {n_y}: each split needs one label "
                        "per item.")


def _non_finite_rows(x: torch.Tensor) -> tuple[int, int]:
    """(count, first index) of the rows of x [N, ...] holding NaN or an infinity; (0, -1) when none."""
    if not x.is_floating_point() or x.shape[0] == 0:
        return 0, -1
    rows = x.reshape(x.shape[0], -1)
    step = max(1, _CHUNK_ENTRIES // max(1, rows.shape[1]))
    count, first = 0, -1
    for start in range(0, rows.shape[0], step):
        chunk = rows[start : start + step]
        # a row sum is NaN or infinite when the row holds NaN or an infinity (or overflows): cheap, and only
        # the rows it flags get the exact element-wise test
        flagged = (~torch.isfinite(chunk.sum(dim=1, dtype=torch.float64))).nonzero().squeeze(1)
        bad = torch.zeros(chunk.shape[0], dtype=torch.bool)
        if flagged.numel():
            bad[flagged] = ~torch.isfinite(chunk[flagged]).all(dim=1)
        n_bad = int(bad.sum())
        if n_bad and first < 0:
            first = start + int(bad.nonzero()[0, 0])
        count += n_bad
    return count, first


def check_bundle(bundle: DataBundle, where: str) -> None:
    """Every check on a loaded data set (after the loader, before featurisation and training)."""
    n_classes = bundle.n_classes
    for split, x, y in (("train", bundle.x_train, bundle.y_train), ("test", bundle.x_test, bundle.y_test)):
        check_lengths(x.shape[0], len(y), split, where)
        y = np.asarray(y)
        if y.size:
            low, high = int(y.min()), int(y.max())
            if low < 0 or high >= n_classes:
                bad = low if low < 0 else high
                raise DataError(f"{where}: y_{split} holds the label {bad}, outside [0, {n_classes}) for its "
                                f"{n_classes} classes: labels must be class ids 0..C-1.")
        count, first = _non_finite_rows(x)
        if count:
            raise DataError(f"{where}: x_{split} holds NaN or infinite values in {count} of {x.shape[0]} items "
                            f"(the first at index {first}): remove or impute them.")
    present = np.unique(np.asarray(bundle.y_train))
    if present.size < 2:
        only = f" (only {int(present[0])})" if present.size else ""
        raise DataError(f"{where}: y_train holds {present.size} class{only}, but active learning needs at least two.")
