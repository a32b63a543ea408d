"""One acquisition: score candidate pool items and choose the positions to label."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from alrun import batch, heuristics
from alrun.inference import InferenceBatch, mc_probs, streamed_scores


@dataclass(frozen=True)
class Acquisition:
    """Chosen positions into the candidate array (selection order) and how long it took."""

    positions: torch.Tensor  # [Q] int64
    time_infer: float  # MC inference and scoring of the candidates (seconds)
    time_select: float  # choosing the batch from the scores (seconds)


def acquire(
    model: nn.Sequential,
    x_candidates: torch.Tensor,
    heuristic: str,
    query_size: int,
    n_samples: int,
    *,
    mc_generator: torch.Generator | None,
    acquisition_generator: torch.Generator,
    batch_size: int | InferenceBatch = 512,
    amp: bool = False,
    heuristic_params: dict[str, Any] | None = None,
) -> Acquisition:
    """Top-`query_size` candidates by `heuristic`, scored from `n_samples` MC-Dropout samples.

    x_candidates: [M, ...]. Model-free heuristics (random) skip inference entirely. Batch-aware
    heuristics (alrun.batch): `batchbald` holds the candidates' probabilities [M, C, T] drawn with
    consistent masks; the stochastic ones stream their base scores as the per-item heuristics do,
    then draw the batch. `heuristic_params` are the heuristic's settings (beta, num_samples, ...).
    """
    params = dict(heuristic_params or {})
    if heuristic == "custom":
        return _acquire_custom(model, x_candidates, query_size, n_samples, params, mc_generator=mc_generator,
                               acquisition_generator=acquisition_generator, batch_size=batch_size, amp=amp)
    if heuristic == "batchbald":
        return _acquire_batchbald(model, x_candidates, query_size, n_samples, params, mc_generator=mc_generator,
                                  acquisition_generator=acquisition_generator, batch_size=batch_size, amp=amp)
    rule = batch.STOCHASTIC.get(heuristic)
    score_fn = heuristics.get(rule.base if rule else heuristic)
    tic = time.perf_counter()
    if heuristic in heuristics.MODEL_FREE:
        scores = score_fn(torch.empty(x_candidates.shape[0], 1, 1), generator=acquisition_generator)
    else:
        scores = streamed_scores(
            model, x_candidates, n_samples, lambda p: score_fn(p, generator=acquisition_generator),
            batch_size=batch_size, generator=mc_generator, amp=amp,
        )
    time_infer = time.perf_counter() - tic
    tic = time.perf_counter()
    if rule:
        chosen = batch.stochastic_batch(heuristic, scores, query_size, generator=acquisition_generator, **params)
        return Acquisition(chosen.indices, time_infer, time.perf_counter() - tic)
    # ties (variation_ratios takes T + 1 values, BALD is clamped at 0) are broken at random: by the lowest
    # position they would follow the data's storage order, which for image trees is class by class
    positions = top_positions(scores, query_size, generator=acquisition_generator)
    return Acquisition(positions, time_infer, time.perf_counter() - tic)


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


def _acquire_batchbald(model: nn.Sequential, x_candidates: torch.Tensor, query_size: int, n_samples: int,
                       params: dict[str, Any], *, mc_generator: torch.Generator | None,
                       acquisition_generator: torch.Generator, batch_size: int | InferenceBatch,
                       amp: bool) -> Acquisition:
    """BatchBALD needs every candidate's T samples from the same T models: consistent masks, [M, C, T]."""
    tic = time.perf_counter()
    probs = mc_probs(model, x_candidates, n_samples, consistent=True, generator=mc_generator,
                     batch_size=batch_size, amp=amp)
    time_infer = time.perf_counter() - tic
    tic = time.perf_counter()
    options = {"num_samples": int(params["num_samples"])} if "num_samples" in params else {}
    if "max_memory_mb" in params:
        options["max_memory_bytes"] = int(params["max_memory_mb"] * 2**20)
    chosen = batch.batchbald(probs, query_size, generator=acquisition_generator, **options)
    return Acquisition(chosen.indices, time_infer, time.perf_counter() - tic)


def _acquire_custom(model: nn.Module, x_candidates: torch.Tensor, query_size: int, n_samples: int,
                    params: dict[str, Any], *, mc_generator: torch.Generator | None,
                    acquisition_generator: torch.Generator, batch_size: int | InferenceBatch,
                    amp: bool) -> Acquisition:
    """The user's heuristic (alrun.custom_heuristic) on the candidates' probabilities [M, C, T]: a scorer
    gets independent masks, a batch selector (heuristic.batch=true) consistent ones, as BatchBALD."""
    from alrun.custom_heuristic import run_custom

    tic = time.perf_counter()
    probs = mc_probs(model, x_candidates, n_samples, consistent=bool(params.get("batch", False)),
                     generator=mc_generator, batch_size=batch_size, amp=amp).cpu()
    time_infer = time.perf_counter() - tic
    tic = time.perf_counter()
    positions = run_custom(probs, query_size, params, acquisition_generator)
    return Acquisition(positions, time_infer, time.perf_counter() - tic)
