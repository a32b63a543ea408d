"""Checks of the data a user brings, for every source, before any training.

Each failure is one DataError sentence naming where the data came from (the file, the folder or
the `dataset._target_`) and the array: labels must be integer class ids in [0, C), x and y of a
split equally long, neither split empty, features finite, and the training labels must hold at least two
classes. The label space (:func:`label_space`) is checked on the user's arrays before any array or model is
sized by it: every class 0..C-1 has training items, every test class is a training class, and no label runs
past class_names or past the number of training items.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from alrun.config.schema import DatasetSpec
from alrun.core.errors import DataError
from alrun.data.bundle import DataBundle

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


def check_not_empty(n_train: int, n_test: int, where: str) -> None:
    """Both splits hold items: an empty one would only fail later, inside training or evaluation."""
    if n_train == 0:
        raise DataError(f"{where}: the training split is empty (x_train and y_train hold 0 items), but active "
                        "learning needs training items to label.")
    if n_test == 0:
        raise DataError(f"{where}: the test split is empty (x_test and y_test hold 0 items), but every step is "
                        "scored on test items: give at least one.")


def _at(index: np.ndarray | None, row: int) -> int:
    """The user's index of `row` (index: the user's index of each row; None: the rows are the user's)."""
    return row if index is None else int(index[row])


def _classes(ids: np.ndarray, names: list[str] | None) -> str:
    """`0, 4` or `2 ('cat')`: class ids for a sentence (at most five, then a count)."""
    shown = [f"{int(c)} ({names[int(c)]!r})" if names is not None and names[int(c)] != str(int(c)) else str(int(c))
             for c in ids[:5]]
    more = f" and {len(ids) - 5} more" if len(ids) > 5 else ""
    return ", ".join(shown) + more


def _which(ids: np.ndarray, names: list[str] | None) -> str:
    """`class 3` or `the 2 classes 0, 4`."""
    return f"class {_classes(ids, names)}" if len(ids) == 1 else f"the {len(ids)} classes {_classes(ids, names)}"


def label_space(y_train: np.ndarray, y_test: np.ndarray, class_names: list[str] | None, where: str,
                train_index: np.ndarray | None = None, test_index: np.ndarray | None = None,
                n_train_items: int | None = None, complete: bool = True) -> list[str]:
    """The class names of integer labels y_train [N], y_test [M], checked before anything is sized by them.

    Labels are class ids 0..C-1, C = len(class_names) or, without names, the largest training label + 1,
    which must stay below the number of training items (`n_train_items`, default N): one stray huge label
    must not build a model of 10**9 classes. With `complete` (the arrays are all the user's items, not a
    `max_train` subset) every class 0..C-1 needs training items (1-based labels are refused with the fix)
    and every test class must be one of them. train_index / test_index: the user's index of each row, for
    the sentences. Names are made from the ids when class_names is None.
    """
    y_train, y_test = np.asarray(y_train), np.asarray(y_test)
    n_items = len(y_train) if n_train_items is None else n_train_items
    for split, y, index in (("train", y_train, train_index), ("test", y_test, test_index)):
        if y.size and int(y.min()) < 0:
            row = int(np.argmin(y))
            raise DataError(f"{where}: y_{split} holds the label {int(y[row])} (at index {_at(index, row)}), but "
                            "labels must be class ids 0..C-1.")
    if class_names is not None:
        names = [str(c) for c in class_names]
        n_classes = len(names)
        for split, y, index in (("train", y_train, train_index), ("test", y_test, test_index)):
            if y.size and int(y.max()) >= n_classes:
                row = int(np.argmax(y))
                raise DataError(f"{where}: y_{split} holds the label {int(y[row])} (at index {_at(index, row)}), "
                                f"outside [0, {n_classes}) for its {n_classes} classes (class_names): labels must "
                                "be class ids 0..C-1.")
    else:
        names = None
        # all the user's items: C from the training labels (a larger test label is refused below); a subset:
        # from both splits, as either may hold a class the other's subset lacks
        splits = (("train", y_train, train_index),) + (() if complete else (("test", y_test, test_index),))
        n_classes = 0
        for split, y, index in splits:
            top = int(y.max()) if y.size else -1
            if top >= n_items:
                row = int(np.argmax(y))
                raise DataError(f"{where}: y_{split} holds the label {top} (at index {_at(index, row)}), which "
                                f"would make a model of {top + 1} classes from {n_items} training items: labels "
                                f"must be class ids 0..C-1, at most {n_items} classes (renumber them).")
            n_classes = max(n_classes, top + 1)
        low = min(int(y.min()) for _, y, _ in splits if y.size) if any(y.size for _, y, _ in splits) else 0
        if not complete and low > 0:  # no class 0 in either subset: 1-based labels, not bad luck of the draw
            raise DataError(missing_classes_sentence(np.arange(low), np.concatenate([y_train, y_test]), None,
                                                     n_classes, where))
    if complete:
        missing = np.setdiff1d(np.arange(n_classes), np.unique(y_train))
        tested = np.isin(y_test, missing) if missing.size else np.zeros(len(y_test), dtype=bool)
        if tested.any():  # a named class the test set holds but training lacks
            row = int(np.argmax(tested))
            raise DataError(f"{where}: y_test holds the label {_classes(y_test[row:row + 1], names)} (at index "
                            f"{_at(test_index, row)}), a class y_train has no items of: the model could never "
                            "learn it, so drop those test items or add training items of that class.")
        if missing.size:
            raise DataError(missing_classes_sentence(missing, y_train, names, n_classes, where))
        if names is None and y_test.size and int(y_test.max()) >= n_classes:
            row = int(np.argmax(y_test))
            raise DataError(f"{where}: y_test holds the label {int(y_test[row])} (at index {_at(test_index, row)}), "
                            f"a class y_train lacks (it holds the classes 0..{n_classes - 1}): the model could never "
                            "predict it, so drop those test items or add training items of that class.")
    return names if names is not None else [str(c) for c in range(n_classes)]


def missing_classes_sentence(missing: np.ndarray, y_train: np.ndarray, names: list[str] | None, n_classes: int,
                             where: str) -> str:
    """The sentence for classes 0..C-1 without training items: 1-based labels get the fix spelled out."""
    low = int(y_train.min()) if y_train.size else 0
    if names is None and low > 0 and np.array_equal(missing, np.arange(low)):
        return (f"{where}: y_train has no items of class {_classes(missing, None)} (its labels run from {low} to "
                f"{n_classes - 1}, as if they were {low}-based): labels must be class ids 0..C-1, so subtract "
                f"{low} from every label of y_train and y_test.")
    fix = "renumber the labels 0..C-1 without gaps" + (" or drop the unused class_names" if names else "")
    return (f"{where}: y_train has no items of {_which(missing, names)} of its {n_classes} classes: a model would "
            f"keep an output it can never learn, so {fix}.")


def _row_digests(x: torch.Tensor) -> list[bytes]:
    """An 8-byte BLAKE2 digest of each row of x [N, ...] (its bytes as stored: equal rows, equal digests)."""
    rows = np.ascontiguousarray(x.reshape(x.shape[0], -1).numpy())
    return [hashlib.blake2b(row.data, digest_size=8).digest() for row in rows]


def pool_copies_in_test(x_train: torch.Tensor, x_test: torch.Tensor) -> int:
    """How many rows of x_test [M, ...] equal some row of x_train [N, ...] exactly (matched by a digest of their
    bytes, every match then confirmed element by element)."""
    if not x_train.shape[0] or not x_test.shape[0] or x_train.shape[1:] != x_test.shape[1:]:
        return 0
    by_digest: dict[bytes, list[int]] = {}
    for i, digest in enumerate(_row_digests(x_train)):
        by_digest.setdefault(digest, []).append(i)
    copies = 0
    for j, digest in enumerate(_row_digests(x_test)):
        if any(torch.equal(x_train[i], x_test[j]) for i in by_digest.get(digest, ())):
            copies += 1
    return copies


def check_bundle(bundle: DataBundle, where: str) -> list[str]:
    """Every check on a loaded data set (after the loader and the `max_train` / `max_test` caps, before
    featurisation and training). Raises DataError; returns warnings, one sentence each.

    Items are named by their index in the user's arrays (`bundle.train_index` / `test_index`). When a cap
    kept a subset, a class the kept training items lack is a warning (the full data covered it); a class
    the test set lacks is always a warning, and macro F1 then averages over the classes it holds.
    """
    n_classes = bundle.n_classes
    check_not_empty(len(bundle.y_train), len(bundle.y_test), where)
    indices = {"train": bundle.train_index, "test": bundle.test_index}
    for split, x, y in (("train", bundle.x_train, bundle.y_train), ("test", bundle.x_test, bundle.y_test)):
        check_lengths(x.shape[0], len(y), split, where)
        count, first = _non_finite_rows(x)
        if count:
            raise DataError(f"{where}: x_{split} holds NaN or infinite values in {count} of {x.shape[0]} items "
                            f"(the first at index {_at(indices[split], first)}): remove or impute them.")
    capped = bundle.train_index is not None
    label_space(bundle.y_train, bundle.y_test, bundle.class_names, where, bundle.train_index, bundle.test_index,
                complete=not capped)
    present = np.unique(np.asarray(bundle.y_train))
    if present.size < 2:
        only = f" (only {int(present[0])})" if present.size else ""
        raise DataError(f"{where}: y_train holds {present.size} class{only}, but active learning needs at least two.")
    warnings = []
    missing = np.setdiff1d(np.arange(n_classes), present)
    if missing.size:  # only a cap can get here: label_space refused it in the full data
        warnings.append(f"{where}: the {len(bundle.y_train)} training items that dataset.max_train keeps hold no "
                        f"items of {_which(missing, bundle.class_names)}: the "
                        "model keeps an output it never learns (raise dataset.max_train to keep them).")
    copies = pool_copies_in_test(bundle.x_train, bundle.x_test)
    if copies:
        warnings.append(f"{where}: {copies} of {len(bundle.y_test)} test items are exact copies of training-pool "
                        "items: the tables then measure memory, not generalisation (drop them from the test set).")
    in_test = np.unique(np.asarray(bundle.y_test))
    absent = np.setdiff1d(np.arange(n_classes), in_test)
    if absent.size:
        warnings.append(f"{where}: y_test holds no items of "
                        f"{_which(absent, bundle.class_names)}: macro F1 is the mean over the {in_test.size} "
                        "classes the test set holds, and the F1 columns of the others are empty (NaN).")
    return warnings
