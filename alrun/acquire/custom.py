"""The user's own acquisition function (`heuristic=custom heuristic._target_=pkg.module.score`).

A scorer maps MC probabilities [N, C, T] to scores [N] (the highest are labelled first) and gets
`generator` when its signature takes it; with `heuristic.batch=true` a selector maps
(probs [N, C, T], k, generator) to k distinct indices into the N candidates, and its samples are
drawn with one dropout mask per sample shared by all items (as BatchBALD's). Extra keys
(`++heuristic.key=value`) are passed to it. Either kind may also name, as parameters, `embeddings`
[N, D] (the candidates' input to the model's last nn.Linear, from one pass with dropout off; see
alrun.acquire.embeddings), `labelled_embeddings` [L, D] and `labelled_targets` [L] (the labelled set's
embeddings and the oracle's labels): alrun reads the signature and computes them only when named.
Scores and indices are checked (type, shape, dtype, NaN / inf, range, duplicates): a bad one stops
the job with one sentence naming the heuristic.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from alrun.acquire.embeddings import INPUTS
from alrun.acquire.ranking import top_positions
from alrun.config import components
from alrun.core.errors import HeuristicError

KEY = "heuristic._target_"
_PROBE_DIM, _PROBE_LABELLED = 16, 8  # the preflight's random embeddings: [k + 8, 16] and a labelled set [8, 16]


def _as_tensor(value: Any, what: str, path: str) -> torch.Tensor:
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return torch.from_numpy(value)
    if not isinstance(value, torch.Tensor):
        raise HeuristicError(f"`{KEY}={path}` returned a {type(value).__name__}, but {what} as a tensor was expected.")
    return value.detach().cpu()


def check_scores(value: Any, n: int, path: str, about: str = "") -> torch.Tensor:
    """Scores [N] of a real dtype without NaN or infinities, as float64 on the CPU.

    about: what the N candidates are, for the sentence (e.g. alrun's check before training and the pool size).
    """
    scores = _as_tensor(value, f"a tensor of {n} scores", path)
    if tuple(scores.shape) != (n,):
        raise HeuristicError(f"`{KEY}={path}` returned scores of shape {list(scores.shape)} for {n} candidates"
                             f"{about}, but [{n}] (one score per candidate) was expected.")
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


def check_kind(fn: Any, path: str, batch: bool, extra: Mapping[str, Any]) -> None:
    """A selector (probs, k, generator) given as a scorer, or a scorer (probs) given with `heuristic.batch=true`,
    is one sentence naming `heuristic.batch=true` (not the TypeError the call would raise)."""
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # no signature to read: the call's own error will do
        return
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if batch:
        takes = len(positional) >= 3 or any(p.kind == p.VAR_POSITIONAL for p in parameters)
        if not takes:
            raise HeuristicError(f"`{KEY}={path}` takes {len(positional)} positional argument(s), a scorer probs -> "
                                 "scores, but `heuristic.batch=true` calls a selector with (probs, k, generator): "
                                 "drop `heuristic.batch=true` to use it as a scorer.")
        return
    missing = [p.name for p in positional[1:]
               if p.default is p.empty and p.name not in extra and p.name not in ("generator", *INPUTS)]
    if missing:
        raise HeuristicError(f"`{KEY}={path}` needs the argument(s) {', '.join(missing)} besides probs, but it is "
                             "called as a scorer probs -> scores: a batch selector (probs, k, generator) -> k indices "
                             "needs `heuristic.batch=true`, and a scorer's own settings are given as "
                             "`++heuristic.NAME=VALUE`.")


def inputs_read(params: Mapping[str, Any]) -> frozenset[str]:
    """The inputs beside probs (`embeddings`, `labelled_embeddings`, `labelled_targets`) that the user's
    heuristic names as parameters (a `**kwargs` catch-all names none)."""
    path, extra, _ = components.heuristic_parts(components.CUSTOM, params)
    fn = components.locate(KEY, path)
    return frozenset(k for k in components.accepted(fn, dict.fromkeys(INPUTS)) if k not in extra)


def run_custom(probs: torch.Tensor, k: int, params: Mapping[str, Any], generator: torch.Generator,
               about: str = "", inputs: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
    """The positions [k] the user's heuristic chooses from probs [N, C, T] (scorer: its top k, ties to the
    lowest position; selector: its own k, in its order). about: what the N candidates are, for the sentences.
    inputs: the embeddings and labelled set it reads (:func:`inputs_read`), passed by name."""

    path, extra, batch = components.heuristic_parts(components.CUSTOM, params)
    fn = components.locate(KEY, path)
    check_kind(fn, path, batch, extra)
    n = probs.shape[0]
    inputs = dict(inputs or {})
    if batch:
        out = components.call(KEY, path, fn, extra, inputs, error=HeuristicError, positional=(probs, k, generator))
        return check_indices(out, k, n, path)
    out = components.call(KEY, path, fn, extra, {"generator": generator, **inputs}, error=HeuristicError,
                          positional=(probs,))
    return top_positions(check_scores(out, n, path, about), k)


def preflight(params: Mapping[str, Any], n_classes: int, n_samples: int, k: int, pool_size: int | None = None) -> None:
    """Call the user's heuristic once on random probabilities [k + 8, C, T], before any training, so a wrong
    signature or return value stops the job at once rather than after the first training round.

    pool_size: the user's pool (unlabelled items at the start), named in the sentences beside the probe's size.
    """
    gen = torch.Generator().manual_seed(0)
    n = k + 8
    probs = torch.rand(n, n_classes, n_samples, generator=gen).softmax(dim=1)
    # the embeddings and labelled set it reads: random too, D = 16 and L = 8 (the run's are the model's)
    wanted = inputs_read(params)
    inputs = {"embeddings": torch.randn(n, _PROBE_DIM, generator=gen),
              "labelled_embeddings": torch.randn(_PROBE_LABELLED, _PROBE_DIM, generator=gen),
              "labelled_targets": torch.randint(n_classes, (_PROBE_LABELLED,), generator=gen)}
    pool = f"; in the run N is the candidates drawn from your pool of {pool_size} items" if pool_size else ""
    about = (f" (alrun's check before training, on random probabilities [{n}, {n_classes}, {n_samples}] "
             f"[N, C, T]{pool})")
    run_custom(probs, k, params, torch.Generator().manual_seed(1), about,
               inputs={key: v for key, v in inputs.items() if key in wanted})
