"""The paper's data pathologies as pure, seeded functions of label arrays."""

from __future__ import annotations

import numpy as np
import torch


def corrupt_labels(labels: np.ndarray, share: float, n_classes: int, generator: torch.Generator) -> np.ndarray:
    """Label noise (the paper's lambda): exactly round(share * N) labels replaced by another class.

    labels: [N] ints in [0, n_classes). Returns a new [N] array; the chosen items get a class
    drawn uniformly from the n_classes - 1 wrong ones, so every chosen label really changes.
    """
    noisy = np.array(labels, dtype=np.int64, copy=True)
    n = len(noisy)
    k = int(round(share * n))
    if k == 0 or n_classes < 2:
        return noisy
    chosen = torch.randperm(n, generator=generator)[:k].numpy()
    offsets = torch.randint(1, n_classes, (k,), generator=generator).numpy()
    noisy[chosen] = (noisy[chosen] + offsets) % n_classes
    return noisy


def imbalance_indices(
    labels: np.ndarray, n_reduced: int, keep: float, n_classes: int, generator: torch.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Class imbalance (the paper's Delta): `n_reduced` seeded classes keep `keep` of their items.

    Returns (kept dataset indices ascending [M], reduced class ids ascending [n_reduced]).
    Each reduced class keeps round(keep * count) items (at least one), chosen at random.
    """
    labels = np.asarray(labels, dtype=np.int64)
    reduced = np.sort(torch.randperm(n_classes, generator=generator)[:n_reduced].numpy())
    kept = [np.flatnonzero(~np.isin(labels, reduced))]
    for cls in reduced:
        members = np.flatnonzero(labels == cls)
        k = max(1, int(round(keep * len(members)))) if len(members) else 0
        perm = torch.randperm(len(members), generator=generator)[:k].numpy()
        kept.append(members[perm])
    return np.sort(np.concatenate(kept)), reduced


def stratified_split(
    labels: np.ndarray, test_fraction: float, generator: torch.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split: (train indices, test indices), each ascending."""
    labels = np.asarray(labels)
    train, test = [], []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        perm = members[torch.randperm(len(members), generator=generator).numpy()]
        n_test = int(round(test_fraction * len(members)))
        if len(members) > 1:
            n_test = min(max(n_test, 1), len(members) - 1)
        test.append(perm[:n_test])
        train.append(perm[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def subsample(n: int, k: int | None, generator: torch.Generator) -> np.ndarray:
    """k random indices out of n (ascending), or all of them when k is None or >= n."""
    if k is None or k >= n:
        return np.arange(n)
    return np.sort(torch.randperm(n, generator=generator)[:k].numpy())
