"""ProbCover's radius (Yehuda et al., 2022): the largest delta whose balls are pure often enough, measured
against k-means clusters of the embeddings."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from alrun.acquire.diversity.geometry import _kmeans_labels, _sq_norms, pair_block_shape, sq_distances

# ProbCover's purity rule: the fraction of pure balls is measured on at most this many random centres.
PURITY_CENTRES = 2_000


def _purity_radius_and_labels(points: Tensor, n_classes: int, purity: float, generator: torch.Generator,
                              max_memory_mb: float) -> tuple[float, Tensor]:
    """purity_radius's radius, and the k-means labels [M] (int64) it was measured with."""
    m = points.shape[0]
    labels = torch.from_numpy(_kmeans_labels(points, n_classes, generator, fit_sample=True).astype(np.int64))
    if m > PURITY_CENTRES:
        centres = torch.randperm(m, generator=generator, device=generator.device)[:PURITY_CENTRES].cpu()
    else:
        centres = torch.arange(m)
    c = points[centres.to(points.device)]
    c_sq, p_sq = _sq_norms(c), _sq_norms(points)
    c_lab, p_lab = labels[centres].to(points.device), labels.to(points.device)
    r2 = torch.full((c.shape[0],), math.inf, dtype=points.dtype, device=points.device)
    rows, cols = pair_block_shape(c.shape[0], m, max_memory_mb)
    for i in range(0, c.shape[0], rows):
        for j in range(0, m, cols):
            d2 = sq_distances(c[i : i + rows], points[j : j + cols], c_sq[i : i + rows], p_sq[j : j + cols])
            d2.masked_fill_(c_lab[i : i + rows, None] == p_lab[None, j : j + cols], math.inf)
            torch.minimum(r2[i : i + rows], d2.min(dim=1).values, out=r2[i : i + rows])
    r = r2.sqrt().sort().values
    need = math.ceil(purity * r.shape[0] - 1e-9)  # pure balls needed; purity <= 1 so need <= len(r)
    return (float(r[r.shape[0] - need]) if need > 0 else math.inf), labels


def purity_radius(points: Tensor, n_classes: int, purity: float, *, generator: torch.Generator,
                  max_memory_mb: float = 512.0) -> float:
    """ProbCover's radius rule (Yehuda et al., 2022): the largest delta whose balls are pure often enough.

    points [M, D] (already normalised) are clustered by k-means into ``n_classes`` clusters; the open
    ball B(x, delta) is pure when every point in it shares x's cluster, that is when delta <= r(x), the
    distance from x to the nearest point of another cluster. The largest delta with
    P(ball pure) >= ``purity`` is then an order statistic of r, found exactly rather than on a grid.
    With more than PURITY_CENTRES points, r is measured on that many centres drawn by ``generator``
    (the fraction's standard error is then 0.5 percentage points at a purity of 0.95).
    """
    return _purity_radius_and_labels(points, n_classes, purity, generator, max_memory_mb)[0]
