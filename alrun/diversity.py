"""Acquisition that reads the data's geometry: CoreSet, BADGE, TypiClust and ProbCover.

Pure functions over tensors. Each takes the pool candidates' embeddings ``embeddings: [N, D]``
(the input of the model's last linear layer) and returns ``k`` distinct positions into the N
candidates, int64 ``[k]``, in selection order. Randomness comes only from the ``generator`` passed
in. Distances are computed block by block so that no block of the distance matrix is larger than
``max_memory_mb``; nothing holds an ``N x N`` or ``N x L`` matrix.

- :func:`coreset`: k-center greedy (Sener & Savarese, 2018).
- :func:`badge`: k-means++ seeding on gradient embeddings (Ash et al., 2020).
- :func:`typiclust`: the most typical point of the least labelled clusters (Hacohen et al., 2022, TPC-RP).
- :func:`probcover`: greedy max coverage of delta-balls (Yehuda et al., 2022).

TypiClust and ProbCover work on L2-normalised embeddings, as the authors' implementation does (it
normalises its self-supervised features): ProbCover's radius is then a distance on the unit sphere
(0 to 2). CoreSet and BADGE use the embeddings as they are, as their papers do.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

# Bytes a distance block costs per entry: the float32 (or float64) squared distances and one
# temporary of the same size (a comparison mask, or the minimum's workspace).
BYTES_PER_ENTRY = 16
# TypiClust: clusters of at most this many points (pool and labelled) are skipped, as the authors'
# implementation does (it keeps clusters of more than 5 points).
MIN_CLUSTER_SIZE = 5
# TypiClust's k-means: exact KMeans up to this many clusters, MiniBatchKMeans above (the authors' rule).
MAX_EXACT_KMEANS_CLUSTERS = 50
MINIBATCH_SIZE = 5000
INIT_SIZE = 3 * MINIBATCH_SIZE  # k-means++ seeds are drawn from this many points at most
# ProbCover's purity rule: the fraction of pure balls is measured on at most this many random centres.
PURITY_CENTRES = 2_000
FIRST_REFRESH = 16  # ProbCover: stale candidates re-counted in the first batch of each lazy greedy step
_TYPICALITY_EPS = 1e-5  # as the authors' typicality: 1 / (mean distance + 1e-5)
# ProbCover's balls on unit vectors: a first pass in bfloat16 where the hardware multiplies it fast
# (Intel AMX, CUDA), then float32 for the entries it cannot decide. For unit vectors the bfloat16
# dot product is within about 2 * 2^-8 of the exact one (each factor rounded by at most 2^-8
# relative, sum |a_i b_i| <= 1, float32 accumulation), so the squared distance 2 - 2 a.b within
# about 0.016: SCREEN_MARGIN leaves room over that. None: automatic; True / False force it (tests).
BF16_SCREEN: bool | None = None
SCREEN_MARGIN = 0.02
UNDECIDED_COST = 32  # a gathered float32 dot product costs about this many entries of a block product


# --- inputs ---------------------------------------------------------------------------------------


def _check_embeddings(name: str, x: Tensor) -> Tensor:
    if not isinstance(x, Tensor) or x.dim() != 2 or not x.is_floating_point():
        raise ValueError(f"{name} must be a 2-D floating-point tensor [rows, D], got "
                         f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}.")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values; check the model's embeddings.")
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _check_common(embeddings: Tensor, k: int, labelled: Tensor | None, max_memory_mb: float,
                  generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Validated (pool [N, D], labelled [L, D]) in one dtype; L may be 0."""
    x = _check_embeddings("embeddings", embeddings)
    n = x.shape[0]
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= n:
        raise ValueError(f"k must be an integer between 0 and the {n} pool candidates, got {k!r}.")
    if isinstance(max_memory_mb, bool) or not isinstance(max_memory_mb, (int, float)) or not max_memory_mb > 0:
        raise ValueError(f"max_memory_mb must be a positive number, got {max_memory_mb!r}.")
    if not isinstance(generator, torch.Generator):
        raise ValueError("generator must be a torch.Generator (the acquisition's seeded generator).")
    if labelled is None:
        lab = x.new_zeros((0, x.shape[1]))
    else:
        lab = _check_embeddings("labelled_embeddings", labelled)
        if lab.shape[1] != x.shape[1]:
            raise ValueError(f"labelled_embeddings have {lab.shape[1]} dimensions but embeddings have "
                             f"{x.shape[1]}; both must come from the same layer.")
    dtype = torch.promote_types(x.dtype, lab.dtype)
    return x.to(dtype), lab.to(device=x.device, dtype=dtype)


# --- distances in blocks --------------------------------------------------------------------------


def block_shape(n_rows: int, n_cols: int, max_memory_mb: float) -> tuple[int, int]:
    """(rows, cols) of the distance blocks: rows * cols * BYTES_PER_ENTRY <= the budget (at least 1 x 1).

    Whole rows when one fits, so that most work is one matrix product per block of rows.
    """
    budget = int(max_memory_mb * 2**20)
    cols = max(1, min(n_cols, budget // BYTES_PER_ENTRY))
    rows = max(1, min(n_rows, budget // (BYTES_PER_ENTRY * cols)))
    return rows, cols


def _sq_norms(x: Tensor) -> Tensor:
    return (x * x).sum(dim=1)


def sq_distances(a: Tensor, b: Tensor, a_sq: Tensor, b_sq: Tensor) -> Tensor:
    """Squared Euclidean distances [n, m] between rows of a [n, D] and b [m, D] (norms given: [n], [m]).

    One matrix product (||a||^2 + ||b||^2 - 2 a.b), clamped at 0 against rounding. Every distance
    block of this module goes through here (tests count the blocks).
    """
    d2 = torch.addmm(a_sq.unsqueeze(1), a, b.T, alpha=-2.0)
    return d2.add_(b_sq).clamp_min_(0.0)


def _min_sq_distances(x: Tensor, y: Tensor, max_memory_mb: float) -> Tensor:
    """min_j ||x_i - y_j||^2: [n] (inf where y has no rows), block by block."""
    out = torch.full((x.shape[0],), math.inf, dtype=x.dtype, device=x.device)
    if y.shape[0] == 0:
        return out
    x_sq, y_sq = _sq_norms(x), _sq_norms(y)
    rows, cols = block_shape(x.shape[0], y.shape[0], max_memory_mb)
    for i in range(0, x.shape[0], rows):
        for j in range(0, y.shape[0], cols):
            block = sq_distances(x[i : i + rows], y[j : j + cols], x_sq[i : i + rows], y_sq[j : j + cols])
            torch.minimum(out[i : i + rows], block.min(dim=1).values, out=out[i : i + rows])
    return out


def _normalised(x: Tensor) -> Tensor:
    return torch.nn.functional.normalize(x, dim=1)


def _draw_int(high: int, generator: torch.Generator) -> int:
    """A uniform integer in [0, high) from the generator."""
    return int(torch.randint(high, (1,), generator=generator, device=generator.device).item())


def _sklearn_seed(generator: torch.Generator) -> int:
    """A seed for scikit-learn drawn from the generator, so that the run stays reproducible."""
    return _draw_int(2**31 - 1, generator)


# --- CoreSet ----------------------------------------------------------------------------------------


def coreset(embeddings: Tensor, k: int, *, generator: torch.Generator, labelled_embeddings: Tensor | None = None,
            max_memory_mb: float = 512.0) -> Tensor:
    """k-center greedy (Sener & Savarese, 2018): each pick is the candidate farthest from every
    labelled point and every earlier pick.

    embeddings [N, D], labelled_embeddings [L, D] (or None) -> LongTensor [k] in selection order.
    The distance of each candidate to its nearest labelled point is computed in blocks within
    ``max_memory_mb``; each pick then costs one [N] distance update. With no labelled point the
    first pick is drawn uniformly by ``generator``. Ties go to the lowest position.
    """
    x, lab = _check_common(embeddings, k, labelled_embeddings, max_memory_mb, generator)
    n = x.shape[0]
    chosen = torch.empty(k, dtype=torch.int64)
    if k == 0:
        return chosen
    min_d2 = _min_sq_distances(x, lab, max_memory_mb)  # [N], inf without labelled points
    x_sq = _sq_norms(x)
    taken = torch.zeros(n, dtype=torch.bool, device=x.device)
    for step in range(k):
        if step == 0 and lab.shape[0] == 0:
            pick = _draw_int(n, generator)
        else:
            pick = int(torch.where(taken, -1.0, min_d2).argmax())  # argmax: the first of equal maxima
        chosen[step] = pick
        taken[pick] = True
        d2 = sq_distances(x, x[pick : pick + 1], x_sq, x_sq[pick : pick + 1]).squeeze(1)
        torch.minimum(min_d2, d2, out=min_d2)
    return chosen


# --- BADGE ------------------------------------------------------------------------------------------


def badge(embeddings: Tensor, probs: Tensor, k: int, *, generator: torch.Generator,
          max_memory_mb: float = 512.0) -> Tensor:
    """BADGE (Ash et al., 2020): k-means++ seeding on the gradient embeddings of the last layer.

    embeddings h [N, D], probs p [N, C] (predictive probabilities) -> LongTensor [k].
    The gradient of the cross-entropy at the predicted label with respect to the last layer's
    weights is g_i = (onehot(argmax p_i) - p_i) ⊗ h_i (C * D numbers). It is never built:
    ||g_i||^2 = ||a_i||^2 ||h_i||^2 and <g_i, g_j> = <a_i, a_j> <h_i, h_j> with a_i = onehot - p_i,
    so each pick costs O(N (C + D)). As the authors' implementation does, the first pick is the
    largest gradient norm (the first of equal ones), and each later pick is drawn with probability
    proportional to its squared distance to the nearest pick. Candidates at distance 0 from a pick
    (duplicates) are never drawn while others remain; when only such ones remain, the draw is
    uniform among them (the reference stops there). The memory is O(N (C + D)); ``max_memory_mb``
    is accepted for a uniform signature.
    """
    h, _ = _check_common(embeddings, k, None, max_memory_mb, generator)
    p = _check_embeddings("probs", probs).to(device=h.device, dtype=h.dtype)
    n = h.shape[0]
    if p.shape[0] != n:
        raise ValueError(f"probs has {p.shape[0]} rows but embeddings has {n}; give one row per candidate.")
    chosen = torch.empty(k, dtype=torch.int64)
    if k == 0:
        return chosen
    a = -p
    a[torch.arange(n), p.argmax(dim=1)] += 1.0  # [N, C]: onehot(argmax p) - p
    a_sq, h_sq = _sq_norms(a), _sq_norms(h)
    g_sq = a_sq * h_sq  # [N] squared gradient norms
    # below this, a squared distance is rounding noise of the expansion ||g_i||^2 + ||g_j||^2 - 2<g_i, g_j>
    tol = 64 * torch.finfo(h.dtype).eps
    min_d2 = torch.full((n,), math.inf, dtype=h.dtype, device=h.device)
    taken = torch.zeros(n, dtype=torch.bool, device=h.device)
    for step in range(k):
        if step == 0:
            pick = int(g_sq.argmax())
        else:
            weights = torch.where(taken, 0.0, min_d2)
            if not bool((weights > 0).any()):
                weights = (~taken).to(h.dtype)
            pick = int(torch.multinomial(weights.to(generator.device), 1, generator=generator))
        chosen[step] = pick
        taken[pick] = True
        dot = (a @ a[pick]) * (h @ h[pick])  # [N] <g_i, g_pick>
        d2 = (g_sq + g_sq[pick] - 2 * dot).clamp_min_(0.0)
        d2[d2 <= tol * (g_sq + g_sq[pick])] = 0.0
        torch.minimum(min_d2, d2, out=min_d2)
    return chosen


# --- TypiClust --------------------------------------------------------------------------------------


def _kmeans_plus_plus(x: Tensor, n_clusters: int, generator: torch.Generator) -> Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii, 2007) of x [m, D]: n_clusters row positions, int64.

    The first uniformly, each next one with probability proportional to its squared distance to the
    nearest seed so far (uniform among the rest once every distance is 0). One [m] update per seed.
    """
    m = x.shape[0]
    x_sq = _sq_norms(x)
    min_d2 = torch.full((m,), math.inf, dtype=x.dtype, device=x.device)
    taken = torch.zeros(m, dtype=torch.bool, device=x.device)
    seeds = torch.empty(n_clusters, dtype=torch.int64)
    for step in range(n_clusters):
        if step == 0:
            pick = _draw_int(m, generator)
        else:
            weights = torch.where(taken, 0.0, min_d2)
            if not bool((weights > 0).any()):
                weights = (~taken).to(x.dtype)
            pick = int(torch.multinomial(weights.to(generator.device), 1, generator=generator))
        seeds[step] = pick
        taken[pick] = True
        torch.minimum(min_d2, sq_distances(x, x[pick : pick + 1], x_sq, x_sq[pick : pick + 1]).squeeze(1), out=min_d2)
    return seeds


def _kmeans_labels(x: Tensor, n_clusters: int, generator: torch.Generator) -> np.ndarray:
    """k-means cluster labels [M] of x [M, D]: exact KMeans for few clusters, MiniBatchKMeans for many.

    The seeds are k-means++ in torch on at most INIT_SIZE points drawn by ``generator`` (the sample size
    MiniBatchKMeans itself would seed from); scikit-learn's own k-means++ tries 2 + log(k) candidates per
    seed and takes minutes for 500 clusters of 1,280 dimensions on 2 cores. The rest is scikit-learn's,
    with a seed drawn from ``generator``.
    """
    from sklearn.cluster import KMeans, MiniBatchKMeans

    m = x.shape[0]
    sample = torch.randperm(m, generator=generator, device=generator.device)[:INIT_SIZE].to(x.device)
    sample = sample.sort().values if m > INIT_SIZE else torch.arange(m, device=x.device)
    init = x[sample[_kmeans_plus_plus(x[sample], n_clusters, generator).to(x.device)]].detach().cpu().numpy()
    data = x.detach().cpu().numpy()
    seed = _sklearn_seed(generator)
    if n_clusters <= MAX_EXACT_KMEANS_CLUSTERS:
        km = KMeans(n_clusters=n_clusters, init=init, n_init=1, random_state=seed)
    else:
        km = MiniBatchKMeans(n_clusters=n_clusters, init=init, batch_size=MINIBATCH_SIZE, n_init=1, random_state=seed)
    return km.fit_predict(data)


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


# --- ProbCover --------------------------------------------------------------------------------------


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
    m = points.shape[0]
    labels = torch.from_numpy(_kmeans_labels(points, n_classes, generator).astype(np.int64))
    if m > PURITY_CENTRES:
        centres = torch.randperm(m, generator=generator, device=generator.device)[:PURITY_CENTRES].cpu()
    else:
        centres = torch.arange(m)
    c = points[centres.to(points.device)]
    c_sq, p_sq = _sq_norms(c), _sq_norms(points)
    c_lab, p_lab = labels[centres].to(points.device), labels.to(points.device)
    r2 = torch.full((c.shape[0],), math.inf, dtype=points.dtype, device=points.device)
    rows, cols = block_shape(c.shape[0], m, max_memory_mb)
    for i in range(0, c.shape[0], rows):
        for j in range(0, m, cols):
            d2 = sq_distances(c[i : i + rows], points[j : j + cols], c_sq[i : i + rows], p_sq[j : j + cols])
            d2.masked_fill_(c_lab[i : i + rows, None] == p_lab[None, j : j + cols], math.inf)
            torch.minimum(r2[i : i + rows], d2.min(dim=1).values, out=r2[i : i + rows])
    r = r2.sqrt().sort().values
    need = math.ceil(purity * r.shape[0] - 1e-9)  # pure balls needed; purity <= 1 so need <= len(r)
    return float(r[r.shape[0] - need]) if need > 0 else math.inf


def _ball_counts(points: Tensor, p_sq: Tensor, lo: Tensor | None, r2: float, uncovered: Tensor,
                 max_memory_mb: float) -> Tensor:
    """For every point, how many uncovered points lie in its ball (||x - y||^2 < r2): int64 [M].

    Distances are symmetric, so each block of rows is compared with itself and the rows after it only
    (half the work): a block's rows count their columns, and the columns past the rows' own square
    count the rows. The blocks stay within ``max_memory_mb``.
    """
    m = points.shape[0]
    counts = torch.zeros(m, dtype=torch.int64, device=points.device)
    rows, cols = block_shape(m, m, max_memory_mb)
    for i in range(0, m, rows):
        i_end = min(i + rows, m)
        for j in range(i, m, cols):
            j_end = min(j + cols, m)
            inside = inside_ball(points[i:i_end], points[j:j_end], p_sq[i:i_end], p_sq[j:j_end], r2,
                                 *((lo[i:i_end], lo[j:j_end]) if lo is not None else ()))
            counts[i:i_end] += (inside & uncovered[j:j_end]).sum(dim=1)
            past = max(j, i_end)  # columns beyond the rows' own square: the reverse pairs
            if past < j_end:
                counts[past:j_end] += (inside[:, past - j :] & uncovered[i:i_end, None]).sum(dim=0)
    return counts


def _gains(points: Tensor, p_sq: Tensor, lo: Tensor | None, which: Tensor, r2: float, uncovered: Tensor,
           max_memory_mb: float) -> Tensor:
    """How many uncovered points lie in the balls of points[which]: int64 [len(which)], in blocks."""
    m = points.shape[0]
    out = torch.zeros(which.shape[0], dtype=torch.int64, device=points.device)
    rows, cols = block_shape(which.shape[0], m, max_memory_mb)
    for i in range(0, which.shape[0], rows):
        w = which[i : i + rows]
        for j in range(0, m, cols):
            inside = inside_ball(points[w], points[j : j + cols], p_sq[w], p_sq[j : j + cols], r2,
                                 *((lo[w], lo[j : j + cols]) if lo is not None else ()))
            out[i : i + rows] += (inside & uncovered[j : j + cols]).sum(dim=1)
    return out


def _cover(points: Tensor, p_sq: Tensor, centres: Tensor, r2: float, uncovered: Tensor, max_memory_mb: float) -> None:
    """Marks as covered (in place) every point within the radius of one of points[centres]."""
    m = points.shape[0]
    rows, cols = block_shape(centres.shape[0], m, max_memory_mb)
    for i in range(0, centres.shape[0], rows):
        c = centres[i : i + rows]
        for j in range(0, m, cols):
            inside = inside_ball(points[c], points[j : j + cols], p_sq[c], p_sq[j : j + cols], r2)
            uncovered[j : j + cols] &= ~inside.any(dim=0)


def _screen_in_bf16(x: Tensor) -> bool:
    if BF16_SCREEN is not None:
        return BF16_SCREEN and x.dtype == torch.float32
    if x.dtype != torch.float32:
        return False
    if x.device.type == "cuda":
        return True
    try:
        return x.device.type == "cpu" and bool(torch.cpu._is_amx_tile_supported())
    except AttributeError:  # a torch without the probe: float32 throughout
        return False


def inside_ball(a: Tensor, b: Tensor, a_sq: Tensor, b_sq: Tensor, r2: float, a_lo: Tensor | None = None,
                b_lo: Tensor | None = None) -> Tensor:
    """||a_i - b_j||^2 < r2 as a bool block [n, m], for rows of norm <= 1 a [n, D], b [m, D] (norms^2 given).

    With a_lo / b_lo (the same rows in bfloat16) the block is decided in bfloat16 where the estimate is
    farther than SCREEN_MARGIN from r2 and in float32 elsewhere: the same answer as float32 throughout.
    """
    if a_lo is None or b_lo is None:
        return sq_distances(a, b, a_sq, b_sq) < r2
    # ||a||^2 + ||b||^2 - 2 a.b with the norms exact (a zero row normalises to 0, not to a unit vector)
    approx = torch.mm(a_lo, b_lo.T).float().mul_(-2.0).add_(a_sq[:, None]).add_(b_sq)
    inside = approx < r2
    rows, cols = (approx.sub_(r2).abs_() <= SCREEN_MARGIN).nonzero(as_tuple=True)
    # a gathered exact dot product costs about as much as UNDECIDED_COST entries of a block product
    if rows.numel() * UNDECIDED_COST > approx.numel():
        return sq_distances(a, b, a_sq, b_sq) < r2
    piece = max(1, approx.numel() // a.shape[1])  # gathered rows no larger than the block itself
    for p in range(0, rows.numel(), piece):
        r, c = rows[p : p + piece], cols[p : p + piece]
        exact = a_sq[r] + b_sq[c] - 2.0 * (a[r] * b[c]).sum(dim=1)
        inside[r, c] = exact.clamp_min_(0.0) < r2
    return inside



def probcover(embeddings: Tensor, k: int, *, generator: torch.Generator, labelled_embeddings: Tensor | None = None,
              radius: float | None = None, n_classes: int | None = None, purity: float = 0.95,
              max_memory_mb: float = 512.0) -> Tensor:
    """ProbCover (Yehuda et al., 2022): greedy max coverage of delta-balls around the picks.

    embeddings [N, D], labelled_embeddings [L, D] (or None) -> LongTensor [k].
    Over the L2-normalised pool and labelled points, a point's ball holds the points at distance
    < radius. Points in a labelled point's ball are covered from the start; each pick is then the
    candidate whose ball holds the most uncovered points (the first of equal ones, as the authors'
    argmax), and those become covered. Once every point is covered, the remaining picks are drawn
    uniformly by ``generator`` among the candidates not chosen (the authors' code would pick an
    arbitrary one there). ``radius=None`` chooses it by the paper's purity rule with ``n_classes``
    k-means clusters (see :func:`purity_radius`).

    The authors keep the graph as an edge list, which grows as N^2 when balls are large; here no
    edge is stored. One pass (half the pairs, by symmetry) counts each ball's uncovered points;
    then the greedy is lazy: a count only falls as points get covered, so the stale counts are upper
    bounds, and only the candidates whose bound could still win are re-counted, a batch at a time
    (the same picks as the eager greedy). Memory: O(N + L) beyond the ``max_memory_mb`` blocks.
    """
    x, lab = _check_common(embeddings, k, labelled_embeddings, max_memory_mb, generator)
    if radius is not None and (isinstance(radius, bool) or not isinstance(radius, (int, float)) or not radius > 0):
        raise ValueError(f"radius must be a positive number (a distance between normalised embeddings, "
                         f"0 to 2) or None for the purity rule, got {radius!r}.")
    if radius is None:
        if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
            raise ValueError(f"radius=None chooses the radius by the purity rule, which needs n_classes, "
                             f"an integer of at least 2, got {n_classes!r}.")
        if isinstance(purity, bool) or not isinstance(purity, (int, float)) or not 0 < purity <= 1:
            raise ValueError(f"purity must be a number in (0, 1], got {purity!r}.")
    n = x.shape[0]
    chosen = torch.empty(k, dtype=torch.int64)
    if k == 0:
        return chosen
    points = _normalised(torch.cat([x, lab]))  # [M = N + L, D]: pool first
    m = points.shape[0]
    if radius is None:
        n_clusters = min(n_classes, m)
        radius = (purity_radius(points, n_clusters, purity, generator=generator, max_memory_mb=max_memory_mb)
                  if n_clusters >= 2 else math.inf)
    r2 = float(radius) ** 2
    p_sq = _sq_norms(points)
    uncovered = torch.ones(m, dtype=torch.bool, device=points.device)
    if m > n:
        _cover(points, p_sq, torch.arange(n, m, device=points.device), r2, uncovered, max_memory_mb)
    lo = points.bfloat16() if _screen_in_bf16(points) else None  # [M, D] bfloat16 copy for the screening
    bound = _ball_counts(points, p_sq, lo, r2, uncovered, max_memory_mb)[:n]  # [N], exact now
    fresh = torch.ones(n, dtype=torch.bool, device=points.device)
    taken = torch.zeros(n, dtype=torch.bool, device=points.device)
    max_batch = block_shape(n, m, max_memory_mb)[0]
    for step in range(k):
        batch = FIRST_REFRESH
        while True:
            # candidates by bound, highest first, ties to the lower position (a stable sort)
            order = torch.sort(torch.where(taken, -1, bound), descending=True, stable=True).indices
            best = int(order[0])
            if fresh[best]:
                break
            stale = order[~fresh[order] & ~taken[order]][:batch]
            bound[stale] = _gains(points, p_sq, lo, stale, r2, uncovered, max_memory_mb)
            fresh[stale] = True
            batch = min(2 * batch, max_batch)
        if int(bound[best]) == 0:  # everything is covered: the rest uniformly among the candidates not chosen
            free = (~taken).nonzero().squeeze(1).cpu()
            rest = free[torch.randperm(free.shape[0], generator=generator, device=generator.device).cpu()]
            chosen[step:] = rest[: k - step]
            break
        chosen[step] = best
        taken[best] = True
        _cover(points, p_sq, torch.tensor([best], device=points.device), r2, uncovered, max_memory_mb)
        fresh[:] = False
    return chosen
