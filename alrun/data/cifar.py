"""CIFAR-10 and CIFAR-100 in torchvision's on-disk format: the `cifar-10-batches-py` and `cifar-100-python`
pickles under `dataset.root`, read (and with `dataset.download=true` fetched) by torchvision.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from torchvision.datasets import CIFAR10, CIFAR100

from alrun.config.schema import DatasetSpec
from alrun.core.errors import DataError
from alrun.data.arrays import ImageArrays, check_labels, data_root, images_to_bundle
from alrun.data.bundle import DataBundle

HOME_PAGE = "https://www.cs.toronto.edu/~kriz/cifar.html"


def _reader(cls: type[CIFAR10]) -> type[CIFAR10]:
    """A subclass of a torchvision CIFAR class that checks its files exist instead of their MD5 sums.

    torchvision would hash every file on every load and accept only the original bytes (so no small
    fixture could stand in); a damaged file still fails to unpickle or to reshape, and
    :func:`_corrupt_file` then names it. Downloads still check the archive's MD5.
    """
    return type(cls.__name__, (cls,), {
        "train_list": [[name, None] for name, _ in cls.train_list],
        "test_list": [[name, None] for name, _ in cls.test_list],
        "meta": {**cls.meta, "md5": None},
    })


def _files(cls: type[CIFAR10]) -> list[str]:
    return [name for name, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]


def _corrupt_file(folder: Path, cls: type[CIFAR10]) -> tuple[Path, str] | None:
    """The first file that does not unpickle to what torchvision expects, with the reason; None if all do."""
    label_key = "labels" if cls is CIFAR10 else "fine_labels"
    for name in _files(cls):
        path = folder / name
        try:
            with open(path, "rb") as f:
                entry = pickle.load(f, encoding="latin1")
        except Exception as exc:  # truncated or foreign files raise many kinds of errors
            return path, f"{type(exc).__name__}: {exc}"
        wanted = [cls.meta["key"]] if name == cls.meta["filename"] else ["data", label_key]
        if not isinstance(entry, dict) or any(key not in entry for key in wanted):
            return path, f"it lacks the entries {', '.join(wanted)}"
        if name != cls.meta["filename"] and np.asarray(entry["data"]).size != 3072 * len(entry[label_key]):
            return path, f"it holds {np.asarray(entry['data']).size} bytes of pixels for {len(entry[label_key])} labels"
    return None


def read_cifar(root: Path, cls: type[CIFAR10], title: str, download: bool) -> ImageArrays:
    """Read one CIFAR data set below `root` (torchvision's layout) as uint8 [N, 32, 32, 3] arrays."""
    folder = root / cls.base_folder
    missing = [name for name in _files(cls) if not (folder / name).is_file()]
    how = (f"run with `dataset.download=true` to fetch it, or extract {cls.filename} from {HOME_PAGE} "
           f"into {root}")
    if missing and not download:
        if len(missing) == len(_files(cls)):
            raise DataError(f"{title} not found: looked for {cls.base_folder}/ ({', '.join(_files(cls))}) "
                            f"in {root}; {how}.")
        raise DataError(f"{title} is incomplete in {folder}: {', '.join(missing)} missing; {how}.")
    reader = _reader(cls)
    try:
        train = reader(str(root), train=True, download=download)
        test = reader(str(root), train=False)
    except Exception as exc:
        if any(not (folder / name).is_file() for name in _files(cls)):
            raise DataError(f"Downloading {title} from {cls.url} into {root} failed ({type(exc).__name__}: "
                            f"{exc}); download {cls.filename} by hand and extract it there.") from None
        bad = _corrupt_file(folder, cls)
        if bad is not None:
            raise DataError(f"The {title} file {bad[0]} is corrupt ({bad[1]}); delete {folder} and {how}.") from None
        raise DataError(f"{title} in {folder} cannot be read ({type(exc).__name__}: {exc}).") from None
    names = [str(c) for c in train.classes]
    y_train = np.asarray(train.targets, dtype=np.int64)
    y_test = np.asarray(test.targets, dtype=np.int64)
    if len(y_train) != len(train.data) or len(y_test) != len(test.data):
        raise DataError(f"{title} in {folder} is corrupt: a batch holds a different number of images and labels.")
    if not (check_labels(y_train, len(names)) and check_labels(y_test, len(names))):
        raise DataError(f"{title} in {folder} is corrupt: a label lies outside the {len(names)} classes of "
                        f"{cls.meta['filename']}.")
    return ImageArrays(np.asarray(train.data), y_train, np.asarray(test.data), y_test, names)



def load_cifar10(spec: DatasetSpec) -> DataBundle:
    """CIFAR-10: 50,000 train and 10,000 test 32x32 RGB images, 10 classes."""
    return images_to_bundle(read_cifar(data_root(spec), CIFAR10, "CIFAR-10", spec.download), spec)


def load_cifar100(spec: DatasetSpec) -> DataBundle:
    """CIFAR-100: 50,000 train and 10,000 test 32x32 RGB images, the 100 fine labels with their names."""
    return images_to_bundle(read_cifar(data_root(spec), CIFAR100, "CIFAR-100", spec.download), spec)
