"""An npz-backed data function, and a command that writes an example npz offline.

    python -m mypkg.data data/parts.npz    # scikit-learn's 8x8 digits as uint8 images, no download

alrun calls `load(path=...)` (`++dataset.path=...`) and reads the arrays it returns as it reads
`dataset=npz`: x_train / x_test uint8 images [N, H, W] (or [N, H, W, C], or feature vectors),
y_train / y_test integer labels, optional class_names.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def load(path: str) -> dict[str, np.ndarray]:
    """The arrays of the npz file at `path`."""
    with np.load(Path(path).expanduser(), allow_pickle=False) as f:
        return {name: f[name] for name in f.files}


def write_digits(path: str, test_fraction: float = 0.25, seed: int = 0) -> Path:
    """scikit-learn's digits (1,797 8x8 images, shipped with it) as uint8 images in an npz file."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)  # [N, 8, 8], 0..16 -> 0..255
    order = np.random.default_rng(seed).permutation(len(images))
    n_test = int(len(images) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, x_train=images[train], y_train=digits.target[train], x_test=images[test],
             y_test=digits.target[test], class_names=np.array([str(c) for c in digits.target_names]))
    return out


if __name__ == "__main__":
    target = write_digits(sys.argv[1] if len(sys.argv) > 1 else "data/parts.npz")
    print(f"wrote {target}")
