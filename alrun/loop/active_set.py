"""Labelled / pool bookkeeping over dataset indices.

The dataset index (a row of the training tensors) is the only index stored anywhere. Positions
inside a candidate array (what `topk` returns) are turned into dataset indices here and nowhere
else, by :meth:`ActiveSet.positions_to_indices`.
"""

from __future__ import annotations

import numpy as np
import torch


class ActiveSet:
    """Which items of the training set are labelled, in the order they were labelled.

    `eligible` are the dataset indices that take part (after pathologies such as imbalance
    removed some); everything eligible and not labelled is the pool.
    """

    def __init__(self, eligible: np.ndarray, n_items: int) -> None:
        eligible = np.asarray(eligible, dtype=np.int64)
        if len(np.unique(eligible)) != len(eligible):
            raise ValueError("eligible indices must be unique")
        self._eligible = np.zeros(n_items, dtype=bool)
        self._eligible[eligible] = True
        self._labelled = np.zeros(n_items, dtype=bool)
        self._order: list[int] = []

    @property
    def labelled_indices(self) -> np.ndarray:
        """Dataset indices of the labelled items, in labelling order: [L]."""
        return np.asarray(self._order, dtype=np.int64)

    @property
    def n_labelled(self) -> int:
        return len(self._order)

    def pool_indices(self) -> np.ndarray:
        """Dataset indices of the unlabelled eligible items, ascending: [P]."""
        return np.flatnonzero(self._eligible & ~self._labelled)

    @property
    def n_pool(self) -> int:
        return int((self._eligible & ~self._labelled).sum())

    def label(self, dataset_indices: np.ndarray) -> None:
        """Move these dataset indices from the pool to the labelled set."""
        idx = np.asarray(dataset_indices, dtype=np.int64).ravel()
        if len(np.unique(idx)) != len(idx):
            raise ValueError("an item cannot be labelled twice in one query")
        if not self._eligible[idx].all():
            raise ValueError("only pool items can be labelled")
        if self._labelled[idx].any():
            raise ValueError("an item cannot be labelled twice")
        self._labelled[idx] = True
        self._order.extend(int(i) for i in idx)

    def sample_pool(self, fraction: float, generator: torch.Generator) -> np.ndarray:
        """A random subset (`fraction` of the pool, at least one item) of pool dataset indices."""
        pool = self.pool_indices()
        if fraction >= 1.0:
            return pool
        k = max(1, int(round(fraction * len(pool))))
        perm = torch.randperm(len(pool), generator=generator)[:k].numpy()
        return np.sort(pool[perm])

    @staticmethod
    def positions_to_indices(candidates: np.ndarray, positions: torch.Tensor | np.ndarray) -> np.ndarray:
        """Dataset indices of `positions` within the candidate array `candidates`."""
        pos = positions.cpu().numpy() if isinstance(positions, torch.Tensor) else np.asarray(positions)
        return np.asarray(candidates, dtype=np.int64)[pos.astype(np.int64)]
