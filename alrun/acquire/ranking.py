"""The top-k of a score vector with seeded tie-breaking: the last step of every scorer (built-in or a
user's). A leaf of alrun.acquire (torch only)."""

from __future__ import annotations

import torch


def top_positions(scores: torch.Tensor, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Positions of the k highest scores [M] -> [k], highest first.

    Ties are broken at random by `generator` (CPU; the same generator state gives the same picks),
    or by the lowest position when it is None. The same as a stable descending argsort cut at k
    (of the randomly permuted positions), but only the items that reach the k-th score (found by
    topk) are permuted and sorted, which matters on pools of a million candidates.
    """
    if 0 < k < scores.numel():
        top = scores.topk(k).values
        if not top.isnan().any():  # topk ranks NaN highest; NaN scores take the full sort below
            candidates = _shuffled((scores >= top[-1]).nonzero().squeeze(1), generator)
            order = torch.argsort(scores[candidates].double(), descending=True, stable=True)
            return candidates[order[:k]]
    candidates = _shuffled(torch.arange(scores.numel(), device=scores.device), generator)
    return candidates[torch.argsort(scores[candidates].double(), descending=True, stable=True)[:k]]


def _shuffled(positions: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """`positions` [n] in a random order drawn from `generator` (unchanged when it is None)."""
    if generator is None:
        return positions
    perm = torch.randperm(positions.numel(), generator=generator, device=generator.device)
    return positions[perm.to(positions.device)]
