import math

import pytest
import torch

from alrun.acquire import heuristics


def _probs(seed: int, n: int = 7, c: int = 4, t: int = 5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, t, generator=g, dtype=torch.float64).softmax(dim=1)


def test_entropy_of_uniform_is_log_c():
    probs = torch.full((3, 5, 4), 0.2, dtype=torch.float64)
    assert torch.allclose(heuristics.entropy(probs), torch.full((3,), math.log(5), dtype=torch.float64))


def test_entropy_hand_computed():
    probs = torch.tensor([[0.5, 0.25, 0.25]], dtype=torch.float64)[:, :, None].expand(1, 3, 2)
    expected = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    assert heuristics.entropy(probs).item() == pytest.approx(expected)


def test_bald_zero_when_samples_agree():
    probs = _probs(0)[:, :, :1].expand(7, 4, 6).contiguous()
    assert torch.allclose(heuristics.bald(probs), torch.zeros(7, dtype=torch.float64), atol=1e-12)


def test_bald_hand_computed_two_confident_disagreeing_samples():
    # two samples, each certain of a different class: mutual information = log 2
    probs = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]], dtype=torch.float64)
    assert heuristics.bald(probs).item() == pytest.approx(math.log(2))


def test_bald_bounded_by_entropy_and_non_negative():
    probs = _probs(1, n=50)
    b, h = heuristics.bald(probs), heuristics.entropy(probs)
    assert (b >= 0).all() and (b <= h + 1e-12).all()


def test_margin_least_confidence_variation_ratios_mean_std_hand_computed():
    # item 0: samples [0.7, 0.2, 0.1] and [0.5, 0.1, 0.4]
    probs = torch.tensor([[[0.7, 0.5], [0.2, 0.1], [0.1, 0.4]]], dtype=torch.float64)
    mean = torch.tensor([0.6, 0.15, 0.25], dtype=torch.float64)
    assert heuristics.margin(probs).item() == pytest.approx(-(0.6 - 0.25))
    assert heuristics.least_confidence(probs).item() == pytest.approx(1 - 0.6)
    assert heuristics.variation_ratios(probs).item() == pytest.approx(0.0)  # both samples vote class 0
    std = torch.tensor([0.1, 0.05, 0.15], dtype=torch.float64)
    assert heuristics.mean_std(probs).item() == pytest.approx(std.mean().item())
    assert mean.sum().item() == pytest.approx(1.0)


def test_variation_ratios_split_vote():
    probs = torch.tensor([[[0.9, 0.1, 0.8, 0.2], [0.1, 0.9, 0.2, 0.8]]], dtype=torch.float64)
    assert heuristics.variation_ratios(probs).item() == pytest.approx(0.5)


@pytest.mark.parametrize("name", sorted(set(heuristics.REGISTRY) - heuristics.MODEL_FREE))
def test_chunked_scores_equal_whole_pool_scores(name):
    probs = _probs(2, n=40)
    fn = heuristics.get(name)
    chunked = torch.cat([fn(chunk) for chunk in probs.split(7)])
    assert torch.allclose(chunked, fn(probs))


@pytest.mark.parametrize("name", sorted(set(heuristics.REGISTRY) - heuristics.MODEL_FREE))
def test_scores_invariant_to_class_and_sample_order(name):
    probs = _probs(3, n=20)
    fn = heuristics.get(name)
    permuted = probs[:, torch.randperm(4, generator=torch.Generator().manual_seed(0))]
    permuted = permuted[:, :, torch.randperm(5, generator=torch.Generator().manual_seed(1))]
    assert torch.allclose(fn(permuted), fn(probs), atol=1e-12)


def test_random_is_seeded_and_ignores_probabilities():
    a = heuristics.random(_probs(0), generator=torch.Generator().manual_seed(5))
    b = heuristics.random(_probs(9), generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and a.shape == (7,)
