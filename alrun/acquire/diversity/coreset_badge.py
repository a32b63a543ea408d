"""CoreSet: k-center greedy (Sener & Savarese, 2018); BADGE: k-means++ seeding on gradient embeddings
(Ash et al., 2020)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from alrun.acquire.diversity.geometry import (
    _check_common,
    _check_embeddings,
    _draw_int,
    _min_sq_distances,
    _sq_norms,
    sq_distances,
)

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
