"""Acquisition heuristics: pure functions of MC probabilities ``probs: [N, C, T]`` -> ``scores: [N]``.

Higher scores are more informative. Every per-item heuristic here is a function of one item's
samples only, so scoring a pool chunk by chunk gives exactly the scores of the whole pool at once
(that is how the loop streams them and never holds [N, C, T] for the pool).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from alrun.config import components

Heuristic = Callable[..., torch.Tensor]

_EPS = 1e-12
# entropy and BALD run over items in chunks of about this many entries: the temporaries stay in
# the CPU cache and the extra memory is O(chunk) + O(N), never another [N, C, T]
_CHUNK_ENTRIES = 1 << 18
# entropy keeps no [chunk, C, T] temporary: larger chunks, fewer parallel regions (each one can
# stall for a scheduler time slice when another process holds the other core)
_ENTROPY_CHUNK_ENTRIES = 1 << 22


def _entropy_nc(probs_nc: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) over the class axis of [N, C] -> [N] (one [N, C] temporary)."""
    return probs_nc.clamp_min(_EPS).log_().mul_(probs_nc).sum(dim=1).neg_()


def _compute_dtype(probs: torch.Tensor) -> torch.dtype:
    """float64 stays float64; float32 (what inference yields) is computed in float32, which is
    several times faster and within ~1e-6 of float64 (sums of C * T terms of at most 1/e each);
    half precision is lifted to float32."""
    return torch.float64 if probs.dtype == torch.float64 else torch.float32


def _item_slices(probs: torch.Tensor, entries: int | None = None) -> list[slice]:
    n, c, t = probs.shape
    step = max(1, (entries or _CHUNK_ENTRIES) // max(1, c * t))
    return [slice(start, start + step) for start in range(0, n, step)]


def _sample_means(probs: torch.Tensor, dtype: torch.dtype, entries: int) -> torch.Tensor:
    """mean_t p[n, c, t] -> [N, C], chunk by chunk, each as a matrix-vector product (faster than a
    reduction over a short last axis)."""
    n, c, t = probs.shape
    weights = torch.full((t,), 1.0 / t, dtype=dtype, device=probs.device)
    means = torch.empty((n, c), dtype=dtype, device=probs.device)
    for rows in _item_slices(probs, entries):
        means[rows] = probs[rows].to(dtype) @ weights
    return means


def entropy(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Predictive entropy H[mean_t p(y|x, w_t)]; log C for a uniform predictive."""
    dtype = _compute_dtype(probs)
    return _entropy_nc(_sample_means(probs, dtype, _ENTROPY_CHUNK_ENTRIES)).to(probs.dtype)


def bald(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """BALD mutual information: H[mean_t p_t] - mean_t H[p_t]; 0 when all T samples agree."""
    dtype = _compute_dtype(probs)
    n, c, t = probs.shape
    sum_plogp = torch.empty(n, dtype=dtype, device=probs.device)
    means = torch.empty((n, c), dtype=dtype, device=probs.device)
    weights = torch.full((t,), 1.0 / t, dtype=dtype, device=probs.device)
    slices = _item_slices(probs)
    # one buffer for p log p, reused by every chunk: fresh allocations would cost page faults each time
    buffer = torch.empty((min(n, slices[0].stop), c, t), dtype=dtype, device=probs.device) if n else None
    for rows in slices:
        p = probs[rows].to(dtype)
        plogp = torch.clamp_min(p, _EPS, out=buffer[: p.shape[0]]).log_().mul_(p)
        sum_plogp[rows] = plogp.sum(dim=(1, 2))
        means[rows] = p @ weights  # while the chunk is in cache
    # the entropies of the [N, C] means in whole-pool operations: a few large calls, not a few per chunk
    mi = _entropy_nc(means).add_(sum_plogp, alpha=1.0 / t)
    return mi.clamp_min_(0.0).to(probs.dtype)


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


# name -> scorer, from the one registry (alrun.config.components): the per-item heuristics
REGISTRY: Mapping[str, Heuristic] = components.Builders("heuristic", role="scorer")

# heuristics whose scores do not depend on the model: the loop skips MC inference for them
MODEL_FREE = frozenset({"random"})


def get(name: str) -> Heuristic:
    """The heuristic registered under `name`."""
    return REGISTRY[name]
