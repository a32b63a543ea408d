"""The user's own data (`dataset=custom dataset._target_=pkg.module.load`).

The target is called with the extra keys (`++dataset.key=value`) and, when its signature takes
them, `root` (dataset.root, when set) and `download`. It returns one of:

* a mapping with the npz layout: x_train, y_train, x_test, y_test (numpy arrays or tensors),
  optional class_names; uint8 images [N, H, W] or [N, H, W, C] are standardised and resized as
  `dataset=npz` / the image sources do, anything else is used as float32 features;
* a pair (train, test) of map-style torch Datasets whose items are (x, label) pairs, x a PIL
  image, an array or a tensor (only the items `max_train` / `max_test` keep are read, and cached
  decoded under `dataset.cache_dir`, keyed by the `_target_`, its arguments and file, and the items);
* or `_target_` is a torch Dataset class (e.g. torchvision.datasets.SVHN): it is called once per
  split with train=True/False or split="train"/"test", and root / download when it takes them.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from alrun.config import components
from alrun.config.schema import DatasetSpec
from alrun.core.errors import DataError
from alrun.data.arrays import ImageArrays, as_rgb, cap_indices, images_to_bundle
from alrun.data.bundle import DataBundle
from alrun.data.checks import check_lengths, check_not_empty, integer_labels, label_space, source_name
from alrun.data.image_cache import cache_lock, read_cache, write_cache

KEY = "dataset._target_"
ARRAYS = ("x_train", "y_train", "x_test", "y_test")


def load_custom(spec: DatasetSpec) -> DataBundle:
    """The user's data as a DataBundle (caps applied to image arrays; load_dataset caps the rest and checks)."""
    path = spec.target or ""
    where = source_name(spec)
    obj = components.locate(KEY, path)
    if inspect.isclass(obj) and issubclass(obj, torch.utils.data.Dataset):
        return from_datasets(*dataset_class_splits(obj, spec, path), spec, where)
    offered: dict[str, Any] = {"download": spec.download}
    if spec.root is not None:
        offered["root"] = spec.root
    result = components.call(KEY, path, obj, spec.args, offered, error=DataError)
    if isinstance(result, Mapping):
        return from_mapping(result, spec, where)
    if isinstance(result, Sequence) and len(result) == 2 and all(_is_map_dataset(d) for d in result):
        return from_datasets(result[0], result[1], spec, where)
    raise DataError(f"{where} returned a {type(result).__name__}, but a mapping with {', '.join(ARRAYS)} or a pair "
                    "(train, test) of map-style torch Datasets was expected.")


def _is_map_dataset(obj: Any) -> bool:
    return hasattr(obj, "__getitem__") and hasattr(obj, "__len__") and not isinstance(obj, (str, bytes, Mapping))


def dataset_class_splits(cls: type, spec: DatasetSpec, path: str) -> tuple[Any, Any]:
    """A torch Dataset class called once per split (train=True/False, or split="train"/"test")."""
    parameters = inspect.signature(cls).parameters
    if "train" in parameters:
        flags = ({"train": True}, {"train": False})
    elif "split" in parameters:
        flags = ({"split": "train"}, {"split": "test"})
    else:
        raise DataError(f"`{KEY}={path}` is a Dataset class without a `train` or `split` argument, so its two splits "
                        "cannot be made: write a function that returns (train, test) instead.")
    offered: dict[str, Any] = {"download": spec.download}
    if spec.root is not None:
        offered["root"] = spec.root
    return tuple(components.call(KEY, path, cls, {**spec.args, **flag}, offered, error=DataError) for flag in flags)


def _as_numpy(x: Any, array: str, where: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    try:
        out = np.asarray(x)
    except Exception:
        out = np.asarray([], dtype=object)
    if out.dtype.kind not in "biuf":
        raise DataError(f"{where}: {array} is a {type(x).__name__} of {out.dtype} values, but a numeric array was "
                        "expected.")
    return out


def from_mapping(arrays: Mapping[str, Any], spec: DatasetSpec, where: str) -> DataBundle:
    """x_train, y_train, x_test, y_test (and optional class_names) as a DataBundle."""
    missing = [k for k in ARRAYS if k not in arrays]
    if missing:
        raise DataError(f"{where} returned a mapping without {', '.join(missing)}: it needs {', '.join(ARRAYS)} "
                        "(and optionally class_names).")
    y_train = integer_labels(arrays["y_train"], "y_train", where)
    y_test = integer_labels(arrays["y_test"], "y_test", where)
    x_train = _as_numpy(arrays["x_train"], "x_train", where)
    x_test = _as_numpy(arrays["x_test"], "x_test", where)
    check_lengths(len(x_train), len(y_train), "train", where)
    check_lengths(len(x_test), len(y_test), "test", where)
    check_not_empty(len(y_train), len(y_test), where)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(f"{where}: x_train items have shape {list(x_train.shape[1:])} but x_test items "
                        f"{list(x_test.shape[1:])}: both splits need one shape.")
    names = label_space(y_train, y_test, arrays.get("class_names"), where)  # before anything is sized by them
    return arrays_to_bundle(x_train, y_train, x_test, y_test, names, spec)


def arrays_to_bundle(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                     names: list[str], spec: DatasetSpec) -> DataBundle:
    """uint8 images [N, H, W(, C)] go the image sources' way (caps, standardisation, image_size);
    anything else becomes float32 [N, ...] as it is (4-D float images resized to image_size).
    names: the checked class names (:func:`alrun.data.checks.label_space`)."""
    if x_train.dtype == np.uint8 and x_train.ndim in (3, 4):
        return images_to_bundle(ImageArrays(x_train, y_train, x_test, y_test, names), spec)
    xs = [torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)) for x in (x_train, x_test)]
    if spec.image_size is not None and xs[0].ndim == 4 and tuple(xs[0].shape[2:]) != (spec.image_size,) * 2:
        xs = [F.interpolate(x, size=(spec.image_size,) * 2, mode="bilinear", antialias=True, align_corners=False)
              for x in xs]
    return DataBundle(xs[0], y_train, xs[1], y_test, names)


def _item_array(x: Any, image_size: int | None) -> np.ndarray:
    """One item's x: a PIL image (resized to image_size when set) as uint8 [H, W(, C)], else an array."""
    if hasattr(x, "convert") and hasattr(x, "size"):  # a PIL image
        if x.mode not in ("L", "RGB"):
            x = as_rgb(x, "an item's image")  # 16-bit grayscale scaled to 8 bits, not clipped at 255
        if image_size is not None and x.size != (image_size, image_size):
            from PIL import Image

            x = x.resize((image_size, image_size), Image.BILINEAR)
        return np.asarray(x, dtype=np.uint8)
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _item_label(label: Any, index: int, split: str, where: str) -> Any:
    """One item's label as a scalar; a label of several numbers (one-hot, soft labels) is refused in one sentence,
    as one-hot label arrays are (alrun.data.checks.integer_labels): its argmax would silently be a guess."""
    if isinstance(label, (torch.Tensor, np.ndarray)):
        if label.size == 1 if isinstance(label, np.ndarray) else label.numel() == 1:
            return label.item()
        shape = list(label.shape)
        raise DataError(f"{where}: item {index} of the {split} set has a label of shape {shape} (one-hot?), but one "
                        "integer class id per item was expected: give labels.argmax(1) as the labels.")
    return label


def _read_split(dataset: Any, indices: np.ndarray, split: str, spec: DatasetSpec,
                where: str) -> tuple[np.ndarray, np.ndarray]:
    """The kept items of one Dataset as (x [n, ...], labels [n])."""
    xs, ys = [], []
    for i in indices:
        try:
            item = dataset[int(i)]
        except Exception as exc:
            raise DataError(f"{where}: reading item {int(i)} of the {split} set raised {type(exc).__name__} "
                            f"({exc}).") from None
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise DataError(f"{where}: item {int(i)} of the {split} set is a {type(item).__name__}, but (x, label) "
                            "pairs were expected.")
        x = _item_array(item[0], spec.image_size)
        if xs and x.shape != xs[0].shape:
            raise DataError(f"{where}: item {int(i)} of the {split} set has shape {list(x.shape)} but the first "
                            f"{list(xs[0].shape)}: give the items one size (a transform, or dataset.image_size for "
                            "PIL images).")
        xs.append(x)
        ys.append(_item_label(item[1], int(i), split, where))
    if not xs:
        raise DataError(f"{where}: the {split} set is empty.")
    return np.stack(xs), integer_labels(np.asarray(ys), f"the {split} labels", where)


def decode_key(spec: DatasetSpec, train_idx: np.ndarray, test_idx: np.ndarray, sizes: tuple[int, int]) -> str:
    """The decode cache's key: the `_target_`, its arguments, the SHA-256 of its module's file, the root,
    the image size and the items kept (a changed data function, argument or cap reads the items again)."""
    origin = components.code_origin(components.locate(KEY, spec.target))
    identity = {"format": 1, "target": spec.target, "args": spec.args, "code": origin.get("sha256"),
                "root": spec.root, "image_size": spec.image_size, "sizes": list(sizes),
                "train": hashlib.sha256(train_idx.tobytes()).hexdigest(),
                "test": hashlib.sha256(test_idx.tobytes()).hexdigest()}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def all_targets(dataset: Any, where: str, split: str) -> np.ndarray | None:
    """Every label of a Dataset without reading its items, when it exposes them (torchvision's `targets` or
    `labels`, a TensorDataset's last tensor) as one integer label per item; None otherwise."""
    if isinstance(dataset, torch.utils.data.TensorDataset):
        labels = dataset.tensors[-1] if len(dataset.tensors) >= 2 else None
    else:
        labels = next((getattr(dataset, a) for a in ("targets", "labels") if hasattr(dataset, a)), None)
    if labels is None:
        return None
    try:
        y = np.asarray(labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else labels)
    except Exception:
        return None
    if y.ndim != 1 or len(y) != len(dataset) or y.dtype.kind not in "iu":
        return None  # not one integer label per item: the items' own labels are checked when read
    return y.astype(np.int64)


def from_datasets(train: Any, test: Any, spec: DatasetSpec, where: str) -> DataBundle:
    """Two map-style Datasets of (x, label) items as a DataBundle; only the kept items are read, and
    with `dataset.cache` (and a `dataset.cache_dir`) the decoded arrays are cached under that folder."""
    check_not_empty(len(train), len(test), where)
    names = getattr(train, "classes", None)
    all_labels = [all_targets(d, where, split) for d, split in ((train, "train"), (test, "test"))]
    if all_labels[0] is not None and all_labels[1] is not None:  # the whole label space, without reading items
        label_space(*all_labels, [str(n) for n in names] if names else None, where)
    train_idx, test_idx = cap_indices(len(train), len(test), spec)  # the same items load_dataset would keep
    dirs = [Path(spec.cache_dir).expanduser() / "custom"] if spec.cache and spec.cache_dir else []
    key = decode_key(spec, train_idx, test_idx, (len(train), len(test))) if dirs else ""
    filename = f"{components.short_name(spec.target or '')}-{key[:20]}.npz"
    notes = []
    with cache_lock(dirs, filename) if dirs else contextlib.nullcontext(False):
        cached = read_cache(dirs, filename, key) if dirs else None
        if cached is not None:
            arrays, path = cached
            notes.append(f"custom data: read {len(arrays['y_train']) + len(arrays['y_test'])} decoded items from "
                         f"the cache {path}")
        else:
            arrays = {}
            arrays["x_train"], arrays["y_train"] = _read_split(train, train_idx, "train", spec, where)
            arrays["x_test"], arrays["y_test"] = _read_split(test, test_idx, "test", spec, where)
            if names:
                arrays["class_names"] = np.array([str(n) for n in names])
            written = write_cache(dirs, filename, key, arrays) if dirs else None
            if written is not None:
                notes.append(f"custom data: decoded {len(arrays['y_train']) + len(arrays['y_test'])} items and "
                             f"cached them in {written}")
    x_train, x_test = arrays["x_train"], arrays["x_test"]
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(f"{where}: train items have shape {list(x_train.shape[1:])} but test items "
                        f"{list(x_test.shape[1:])}: both splits need one shape.")
    # only the kept items were read: the sentences name items by the Datasets' indices, and a class the kept
    # training items lack is load_dataset's warning (the full labels, when exposed, were checked above)
    capped = len(train_idx) < len(train)
    train_index = train_idx if capped else None
    test_index = test_idx if len(test_idx) < len(test) else None
    names = label_space(arrays["y_train"], arrays["y_test"], arrays.get("class_names"), where, train_index,
                        test_index, n_train_items=len(train), complete=not capped)
    bundle = arrays_to_bundle(x_train, arrays["y_train"], x_test, arrays["y_test"], names, spec)
    bundle.train_index, bundle.test_index = train_index, test_index
    bundle.notes.extend(notes)
    return bundle
