"""What the four selectors share: their inputs checked, squared distances in blocks within max_memory_mb,
k-means++ seeding and k-means labels (scikit-learn, seeded from the generator)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

# Bytes a distance block costs per entry: the float32 (or float64) squared distances and one
# temporary of the same size (a comparison mask, or the minimum's workspace).
BYTES_PER_ENTRY = 16

# TypiClust's k-means: exact KMeans up to this many clusters, MiniBatchKMeans above (the authors' rule).
MAX_EXACT_KMEANS_CLUSTERS = 50
MINIBATCH_SIZE = 5000
INIT_SIZE = 3 * MINIBATCH_SIZE  # k-means++ seeds are drawn from this many points at most

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


def _kmeans_labels(x: Tensor, n_clusters: int, generator: torch.Generator, fit_sample: bool = False) -> np.ndarray:
    """k-means cluster labels [M] of x [M, D]: exact KMeans for few clusters, MiniBatchKMeans for many.

    The seeds are k-means++ in torch on at most INIT_SIZE points drawn by ``generator`` (the sample size
    MiniBatchKMeans itself would seed from); scikit-learn's own k-means++ tries 2 + log(k) candidates per
    seed and takes minutes for 500 clusters of 1,280 dimensions on 2 cores. The rest is scikit-learn's,
    with a seed drawn from ``generator``. ``fit_sample``: k-means is fitted on that sample only and
    every point then takes its nearest centre (for ProbCover's purity rule, which needs the clusters'
    shape, not every point's pass through Lloyd's iterations).
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
    if fit_sample and m > INIT_SIZE:
        return km.fit(data[sample.cpu().numpy()]).predict(data)
    return km.fit_predict(data)


# ProbCover's pair blocks: at most this many rows and columns (see pair_block_shape).
PAIR_BLOCK_ROWS, PAIR_BLOCK_COLS = 1024, 4096


def pair_block_shape(n_rows: int, n_cols: int, max_memory_mb: float) -> tuple[int, int]:
    """(rows, cols) of ProbCover's pair blocks: block_shape's budget, and at most PAIR_BLOCK_ROWS x PAIR_BLOCK_COLS.

    Small blocks keep the product and its temporaries in cache: on AMX a bfloat16 product of
    1,024 x 4,096 rows of 1,280 runs at about 2.4 TFLOPS on 2 cores, one of 655 x 51,000 at 0.3.
    """
    budget = int(max_memory_mb * 2**20)
    cols = max(1, min(n_cols, PAIR_BLOCK_COLS, budget // BYTES_PER_ENTRY))
    rows = max(1, min(n_rows, PAIR_BLOCK_ROWS, budget // (BYTES_PER_ENTRY * cols)))
    return rows, cols
