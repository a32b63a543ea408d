import numpy as np
import torch

from alrun.data.pathologies import corrupt_labels, imbalance_indices, stratified_split


def g(seed=0):
    return torch.Generator().manual_seed(seed)


def test_noise_changes_exactly_round_share_n_labels():
    labels = np.arange(1000) % 10
    for share in (0.0, 0.05, 0.1, 0.333):
        noisy = corrupt_labels(labels, share, 10, g())
        assert (noisy != labels).sum() == round(share * 1000)
        assert noisy.min() >= 0 and noisy.max() < 10
    assert np.array_equal(corrupt_labels(labels, 0.1, 10, g(4)), corrupt_labels(labels, 0.1, 10, g(4)))
    assert not np.array_equal(corrupt_labels(labels, 0.1, 10, g(4)), corrupt_labels(labels, 0.1, 10, g(5)))


def test_noise_does_not_modify_input():
    labels = np.zeros(50, dtype=np.int64)
    corrupt_labels(labels, 0.5, 3, g())
    assert (labels == 0).all()


def test_imbalance_keeps_share_of_reduced_classes_only():
    labels = np.repeat(np.arange(10), 100)
    kept, reduced = imbalance_indices(labels, 3, 0.25, 10, g(2))
    assert len(reduced) == 3 and len(set(reduced)) == 3
    counts = np.bincount(labels[kept], minlength=10)
    assert all(counts[c] == 25 for c in reduced)
    assert all(counts[c] == 100 for c in range(10) if c not in reduced)
    kept2, reduced2 = imbalance_indices(labels, 3, 0.25, 10, g(2))
    assert np.array_equal(kept, kept2) and np.array_equal(reduced, reduced2)


def test_stratified_split_is_disjoint_and_stratified():
    labels = np.repeat(np.arange(4), 40)
    train, test = stratified_split(labels, 0.25, g())
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == 160
    assert (np.bincount(labels[test]) == 10).all()
