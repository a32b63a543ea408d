"""TypiClust (Hacohen et al., 2022, TPC-RP): the most typical point of the least labelled clusters."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from alrun.acquire.diversity.geometry import (
    BYTES_PER_ENTRY,
    _check_common,
    _kmeans_labels,
    _normalised,
    _sq_norms,
    block_shape,
    sq_distances,
)

# TypiClust: clusters of at most this many points (pool and labelled) are skipped, as the authors'
# implementation does (it keeps clusters of more than 5 points).
MIN_CLUSTER_SIZE = 5
_TYPICALITY_EPS = 1e-5  # as the authors' typicality: 1 / (mean distance + 1e-5)

# --- TypiClust --------------------------------------------------------------------------------------



def _most_typical(x: Tensor, n_neighbours: int, max_memory_mb: float) -> int:
    """Position in x [m, D] of the highest typicality: 1 / (mean distance to its K nearest others + 1e-5).

    K = min(n_neighbours, m // 2), as the authors' implementation (half the points of a small cluster).
    Whole rows of the [m, m] distances when one fits in max_memory_mb; else blocks of fewer columns,
    keeping a running top-K of each row's smallest distances across them (the same K values).
    """
    m = x.shape[0]
    kk = min(n_neighbours, m // 2)
    if kk == 0:
        return 0
    x_sq = _sq_norms(x)
    mean_dist = torch.empty(m, dtype=x.dtype, device=x.device)
    rows, cols = block_shape(m, m, max_memory_mb)
    if cols < m:
        # a row does not fit: the running top-K [rows, K] and a block [rows, c] are concatenated before each
        # top-K, so c leaves room for the K (at least 1 column: a budget under K + 1 entries is not met)
        cols = max(1, cols - kk)
        rows = max(1, min(m, int(max_memory_mb * 2**20) // (BYTES_PER_ENTRY * (cols + kk))))
    for i in range(0, m, rows):
        r = min(rows, m - i)
        own = torch.arange(i, i + r)  # the column of each row's own point: not its own neighbour
        if cols >= m:  # whole rows: one top-K per block of rows
            d2 = sq_distances(x[i : i + r], x, x_sq[i : i + r], x_sq)  # [r, m]
            d2[torch.arange(r), own] = math.inf
            nearest = d2.topk(kk, dim=1, largest=False).values  # [r, K], ascending
        else:
            nearest = torch.full((r, kk), math.inf, dtype=x.dtype, device=x.device)  # running K smallest
            for j in range(0, m, cols):
                c = min(cols, m - j)
                d2 = sq_distances(x[i : i + r], x[j : j + c], x_sq[i : i + r], x_sq[j : j + c])  # [r, c]
                inside = (own >= j) & (own < j + c)  # rows whose own point is in this block
                d2[inside.nonzero().squeeze(1), own[inside] - j] = math.inf
                # the K smallest of (the K smallest so far, this block): the K smallest of the row so far
                nearest = torch.cat([nearest, d2], dim=1).topk(kk, dim=1, largest=False).values
        mean_dist[i : i + r] = nearest.sqrt_().mean(dim=1)
    typicality = 1.0 / (mean_dist + _TYPICALITY_EPS)
    return int(typicality.argmax())


def typiclust(embeddings: Tensor, k: int, *, generator: torch.Generator, labelled_embeddings: Tensor | None = None,
              n_neighbours: int = 20, max_clusters: int = 500, max_memory_mb: float = 512.0) -> Tensor:
    """TypiClust, TPC-RP (Hacohen et al., 2022): the most typical candidate of the least labelled clusters.

    embeddings [N, D], labelled_embeddings [L, D] (or None) -> LongTensor [k].
    Pool and labelled points (L2-normalised) are clustered by k-means into min(L + k, max_clusters)
    clusters (scikit-learn's KMeans up to 50 clusters, MiniBatchKMeans with batches of 5,000 above,
    as the authors do; seeded from ``generator``). Each pick takes the cluster with the fewest labelled
    and already chosen points, ties to the larger cluster, then the lower cluster id, skipping
    clusters of at most 5 points while a larger one still has candidates; in it, the candidate of
    highest typicality, 1 / (mean distance to its K nearest neighbours + 1e-5), with the neighbours
    among the cluster's candidates not yet chosen and K = min(n_neighbours, their number // 2) (the
    authors' rules). Unlike the authors' code, which visits the clusters in one order fixed before
    the first pick, the counts include the picks so far: the same order while uncovered clusters
    remain, and no cluster is revisited before the others have caught up.
    """
    x, lab = _check_common(embeddings, k, labelled_embeddings, max_memory_mb, generator)
    for name, value in (("n_neighbours", n_neighbours), ("max_clusters", max_clusters)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    n, n_lab = x.shape[0], lab.shape[0]
    chosen = torch.empty(k, dtype=torch.int64)
    if k == 0:
        return chosen
    points = _normalised(torch.cat([x, lab]))  # [N + L, D]: pool first
    n_clusters = min(n_lab + k, max_clusters, n + n_lab)
    labels = torch.from_numpy(_kmeans_labels(points, n_clusters, generator).astype(np.int64))  # [N + L]
    sizes = torch.bincount(labels, minlength=n_clusters)
    counts = torch.bincount(labels[n:], minlength=n_clusters)  # labelled points, then picks too
    pool_labels = labels[:n].clone()  # -1 once chosen
    available = torch.bincount(pool_labels, minlength=n_clusters)  # candidates left per cluster
    big = sizes > MIN_CLUSTER_SIZE
    for step in range(k):
        open_ = available > 0
        if bool((open_ & big).any()):
            open_ &= big
        # fewest labelled, then the largest, then the lowest id: one lexicographic key
        key = torch.where(open_, counts * (n + n_lab + 1) * n_clusters + (n + n_lab - sizes) * n_clusters
                          + torch.arange(n_clusters), torch.iinfo(torch.int64).max)
        cluster = int(key.argmin())
        members = (pool_labels == cluster).nonzero().squeeze(1)
        pick = int(members[_most_typical(points[members], n_neighbours, max_memory_mb)])
        chosen[step] = pick
        pool_labels[pick] = -1
        counts[cluster] += 1
        available[cluster] -= 1
    return chosen
