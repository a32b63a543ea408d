"""Acquisition heuristics: pure functions of MC probabilities ``probs: [N, C, T]`` -> ``scores: [N]``.

Higher scores are more informative. Every per-item heuristic here is a function of one item's
samples only, so scoring a pool chunk by chunk gives exactly the scores of the whole pool at once
(that is how the loop streams them and never holds [N, C, T] for the pool).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Heuristic = Callable[..., torch.Tensor]

_EPS = 1e-12


def _entropy_nc(probs_nc: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) over the class axis of [N, C] -> [N]."""
    return -(probs_nc * torch.log(probs_nc.clamp_min(_EPS))).sum(dim=1)


def entropy(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Predictive entropy H[mean_t p(y|x, w_t)]; log C for a uniform predictive."""
    return _entropy_nc(probs.double().mean(dim=2)).to(probs.dtype)


def bald(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """BALD mutual information: H[mean_t p_t] - mean_t H[p_t]; 0 when all T samples agree."""
    p = probs.double()
    expected_entropy = -(p * torch.log(p.clamp_min(_EPS))).sum(dim=1).mean(dim=1)
    mi = _entropy_nc(p.mean(dim=2)) - expected_entropy
    return mi.clamp_min(0.0).to(probs.dtype)


def margin(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Negative margin between the two most probable classes of the mean predictive."""
    top2 = probs.mean(dim=2).topk(2, dim=1).values
    return -(top2[:, 0] - top2[:, 1])


def least_confidence(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """1 - max_c mean_t p(c|x, w_t)."""
    return 1.0 - probs.mean(dim=2).max(dim=1).values


def variation_ratios(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """1 - (count of the modal predicted class over T samples) / T."""
    votes_nt = probs.argmax(dim=1)  # [N, T]
    n_classes = probs.shape[1]
    counts_nc = torch.zeros(probs.shape[0], n_classes, dtype=torch.long, device=probs.device)
    counts_nc.scatter_add_(1, votes_nt, torch.ones_like(votes_nt))
    return 1.0 - counts_nc.max(dim=1).values.to(probs.dtype) / probs.shape[2]


def mean_std(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mean over classes of the standard deviation over T samples (Kampffmeyer et al. 2016)."""
    return probs.std(dim=2, unbiased=False).mean(dim=1)


def random(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform random scores from `generator` (the baseline); ignores the probabilities."""
    return torch.rand(probs.shape[0], generator=generator, device=probs.device, dtype=torch.float64).to(
        probs.dtype if probs.is_floating_point() else torch.float32
    )


REGISTRY: dict[str, Heuristic] = {
    "random": random,
    "entropy": entropy,
    "bald": bald,
    "margin": margin,
    "least_confidence": least_confidence,
    "variation_ratios": variation_ratios,
    "mean_std": mean_std,
}

# heuristics whose scores do not depend on the model: the loop skips MC inference for them
MODEL_FREE = frozenset({"random"})


def get(name: str) -> Heuristic:
    """The heuristic registered under `name`."""
    return REGISTRY[name]
