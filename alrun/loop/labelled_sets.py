"""The labels a job holds before any acquisition: the initial labelled set and the validation set.

Both are seeded choices over the eligible pool (dataset indices after the pathologies), made
once per job from the root seed, so every heuristic of a seed starts from the same labels.
"""

from __future__ import annotations

import numpy as np
import torch


def validation_split(eligible: np.ndarray, size: int, generator: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(the pool without the validation set, the validation set): `size` seeded items out of `eligible`.

    eligible: [M] dataset indices. Both results are ascending dataset indices; the validation set is
    labelled by the oracle (so it carries the same noise as acquired labels) and never acquired.
    """
    eligible = np.asarray(eligible, dtype=np.int64)
    if size <= 0:
        return eligible, np.array([], dtype=np.int64)
    chosen = torch.randperm(len(eligible), generator=generator)[:size].numpy()
    validation = np.sort(eligible[chosen])
    return np.setdiff1d(eligible, validation, assume_unique=True), validation


def initial_positions(labels: np.ndarray, k: int, balanced: bool, generator: torch.Generator) -> np.ndarray:
    """Positions (into `labels` [M], the oracle's labels of the pool) of the k initial labels.

    Uniformly at random, or, when `balanced`, with equal counts per class as far as possible: every
    class gets k // C, one more goes to (k mod C) classes drawn at random, and a class with too few
    items gives its share to the others (Gal et al. 2017 start from 2 labels per class on MNIST).
    """
    perm = torch.randperm(len(labels), generator=generator).numpy()
    if not balanced:
        return perm[:k]
    permuted = np.asarray(labels, dtype=np.int64)[perm]
    classes, class_of = np.unique(permuted, return_inverse=True)
    # each item's rank among the items of its class, in the random order
    by_class = np.argsort(class_of, kind="stable")
    sorted_classes = class_of[by_class]
    rank = np.empty(len(permuted), dtype=np.int64)
    rank[by_class] = np.arange(len(permuted)) - np.searchsorted(sorted_classes, sorted_classes, side="left")
    # round robin over the classes (in a random class order): first everyone's 1st item, then the 2nd, ...
    class_order = torch.randperm(len(classes), generator=generator).numpy()
    key = rank * len(classes) + class_order[class_of]
    return perm[np.argsort(key, kind="stable")[:k]]
