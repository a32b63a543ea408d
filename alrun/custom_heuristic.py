"""The user's own acquisition function (`heuristic=custom heuristic._target_=pkg.module.score`).

A scorer maps MC probabilities [N, C, T] to scores [N] (the highest are labelled first) and gets
`generator` when its signature takes it; with `heuristic.batch=true` a selector maps
(probs [N, C, T], k, generator) to k distinct indices into the N candidates, and its samples are
drawn with one dropout mask per sample shared by all items (as BatchBALD's). Extra keys
(`++heuristic.key=value`) are passed to it. Scores and indices are checked (type, shape, dtype,
NaN / inf, range, duplicates): a bad one stops the job with one sentence naming the heuristic.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from alrun import components
from alrun.errors import HeuristicError

KEY = "heuristic._target_"


def _as_tensor(value: Any, what: str, path: str) -> torch.Tensor:
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return torch.from_numpy(value)
    if not isinstance(value, torch.Tensor):
        raise HeuristicError(f"`{KEY}={path}` returned a {type(value).__name__}, but {what} as a tensor was expected.")
    return value.detach().cpu()


def check_scores(value: Any, n: int, path: str) -> torch.Tensor:
    """Scores [N] of a real dtype without NaN or infinities, as float64 on the CPU."""
    scores = _as_tensor(value, f"a tensor of {n} scores", path)
    if tuple(scores.shape) != (n,):
        raise HeuristicError(f"`{KEY}={path}` returned scores of shape {list(scores.shape)} for {n} candidates, "
                             f"but [{n}] (one score per candidate) was expected.")
    if scores.dtype == torch.bool or scores.is_complex():
        raise HeuristicError(f"`{KEY}={path}` returned {scores.dtype} scores, but real numbers were expected.")
    bad = ~torch.isfinite(scores.double())
    if bad.any():
        raise HeuristicError(f"`{KEY}={path}` returned NaN or infinite scores for {int(bad.sum())} of {n} candidates "
                             f"(the first at position {int(bad.nonzero()[0, 0])}).")
    return scores.double()


def check_indices(value: Any, k: int, n: int, path: str) -> torch.Tensor:
    """k distinct integer positions in [0, n), as int64 on the CPU."""
    indices = _as_tensor(value, f"{k} indices", path)
    if tuple(indices.shape) != (k,):
        raise HeuristicError(f"`{KEY}={path}` returned indices of shape {list(indices.shape)}, but [{k}] "
                             f"(the query size) was expected.")
    if indices.is_floating_point() or indices.is_complex() or indices.dtype == torch.bool:
        raise HeuristicError(f"`{KEY}={path}` returned {indices.dtype} indices, but integers were expected.")
    indices = indices.long()
    if k and (int(indices.min()) < 0 or int(indices.max()) >= n):
        bad = int(indices.min()) if int(indices.min()) < 0 else int(indices.max())
        raise HeuristicError(f"`{KEY}={path}` returned the index {bad}, outside [0, {n}) for {n} candidates.")
    if indices.unique().numel() != k:
        raise HeuristicError(f"`{KEY}={path}` returned {k - indices.unique().numel()} duplicate indices, but {k} "
                             "distinct candidates were expected.")
    return indices


def run_custom(probs: torch.Tensor, k: int, params: Mapping[str, Any], generator: torch.Generator) -> torch.Tensor:
    """The positions [k] the user's heuristic chooses from probs [N, C, T] (scorer: its top k, ties to the
    lowest position; selector: its own k, in its order)."""
    from alrun.acquisition import top_positions

    path, extra, batch = components.heuristic_parts(components.CUSTOM, params)
    fn = components.locate(KEY, path)
    n = probs.shape[0]
    if batch:
        out = components.call(KEY, path, fn, extra, {}, error=HeuristicError, positional=(probs, k, generator))
        return check_indices(out, k, n, path)
    out = components.call(KEY, path, fn, extra, {"generator": generator}, error=HeuristicError, positional=(probs,))
    return top_positions(check_scores(out, n, path), k)


def preflight(params: Mapping[str, Any], n_classes: int, n_samples: int, k: int) -> None:
    """Call the user's heuristic once on random probabilities [k + 8, C, T], before any training, so a wrong
    signature or return value stops the job at once rather than after the first training round."""
    gen = torch.Generator().manual_seed(0)
    probs = torch.rand(k + 8, n_classes, n_samples, generator=gen).softmax(dim=1)
    run_custom(probs, k, params, torch.Generator().manual_seed(1))
