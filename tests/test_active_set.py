import numpy as np
import pytest
import torch

from alrun.loop.active_set import ActiveSet


def test_label_moves_items_and_keeps_order():
    active = ActiveSet(np.arange(10), 10)
    active.label(np.array([7, 2]))
    active.label(np.array([5]))
    assert active.labelled_indices.tolist() == [7, 2, 5]
    assert active.pool_indices().tolist() == [0, 1, 3, 4, 6, 8, 9]
    assert active.n_pool + active.n_labelled == 10


def test_nothing_labelled_twice_and_only_pool_items():
    active = ActiveSet(np.array([0, 2, 4, 6]), 8)
    active.label(np.array([2]))
    with pytest.raises(ValueError):
        active.label(np.array([2]))
    with pytest.raises(ValueError):
        active.label(np.array([3]))  # not eligible (removed by a pathology)
    with pytest.raises(ValueError):
        active.label(np.array([4, 4]))


def test_positions_are_converted_to_dataset_indices():
    active = ActiveSet(np.arange(100), 100)
    active.label(np.arange(0, 100, 2))
    candidates = active.sample_pool(0.3, torch.Generator().manual_seed(0))
    assert len(candidates) == 15 and np.all(candidates % 2 == 1)
    chosen = ActiveSet.positions_to_indices(candidates, torch.tensor([3, 0]))
    assert chosen.tolist() == [candidates[3], candidates[0]]
    active.label(chosen)
    assert set(active.labelled_indices[-2:]) == set(chosen)


def test_random_labelling_loses_nothing():
    rng = torch.Generator().manual_seed(1)
    active = ActiveSet(np.arange(57), 57)
    while active.n_pool:
        pool = active.sample_pool(0.5, rng)
        pos = torch.randperm(len(pool), generator=rng)[:5]
        active.label(ActiveSet.positions_to_indices(pool, pos))
    assert sorted(active.labelled_indices.tolist()) == list(range(57))


def test_sample_pool_is_seeded():
    active = ActiveSet(np.arange(1000), 1000)
    a = active.sample_pool(0.25, torch.Generator().manual_seed(3))
    b = active.sample_pool(0.25, torch.Generator().manual_seed(3))
    assert np.array_equal(a, b) and len(a) == 250
