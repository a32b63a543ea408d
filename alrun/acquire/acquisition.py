"""One acquisition: score candidate pool items and choose the positions to label."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from alrun.acquire import batch, heuristics
from alrun.acquire.embeddings import INPUTS, embed
from alrun.acquire.ranking import top_positions
from alrun.config import components
from alrun.core.errors import HeuristicError
from alrun.model.inference import InferenceBatch, mc_probs, streamed_scores

# the built-in selectors that read the model's embeddings (alrun.acquire.diversity): no MC samples, one plain pass
SELECTORS = components.names("heuristic", role="selector")


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
    labelled: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> Acquisition:
    """Top-`query_size` candidates by `heuristic`, scored from `n_samples` MC-Dropout samples.

    x_candidates: [M, ...]. Model-free heuristics (random) skip inference entirely. Batch-aware
    heuristics (alrun.acquire.batch): `batchbald` holds the candidates' probabilities [M, C, T] drawn with
    consistent masks; the stochastic ones stream their base scores as the per-item heuristics do,
    then draw the batch. The selectors (coreset, badge, typiclust, probcover) read the embeddings
    of one deterministic pass (alrun.acquire.embeddings) instead of MC samples. `heuristic_params` are the
    heuristic's settings (beta, num_samples, ...). `labelled`: (inputs [L, ...], the oracle's labels
    [L]) of the labelled set, read by the heuristics that ask for it (:func:`inputs_read`); None: empty.
    """
    params = dict(heuristic_params or {})
    if heuristic == "custom":
        return _acquire_custom(model, x_candidates, query_size, n_samples, params, mc_generator=mc_generator,
                               acquisition_generator=acquisition_generator, batch_size=batch_size, amp=amp,
                               labelled=labelled)
    if heuristic in SELECTORS:
        return _acquire_selector(model, x_candidates, heuristic, query_size, params,
                                 acquisition_generator=acquisition_generator, batch_size=batch_size, amp=amp,
                                 labelled=labelled)
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
                    amp: bool, labelled: tuple[torch.Tensor, torch.Tensor] | None = None) -> Acquisition:
    """The user's heuristic (alrun.acquire.custom) on the candidates' probabilities [M, C, T]: a scorer
    gets independent masks, a batch selector (heuristic.batch=true) consistent ones, as BatchBALD; and the
    embeddings, labelled embeddings and labelled targets its signature names (one plain pass more)."""
    from alrun.acquire.custom import run_custom

    tic = time.perf_counter()
    probs = mc_probs(model, x_candidates, n_samples, consistent=bool(params.get("batch", False)),
                     generator=mc_generator, batch_size=batch_size, amp=amp).cpu()
    wanted = inputs_read("custom", params)
    inputs = embedding_inputs(model, x_candidates, wanted, labelled, batch_size=batch_size, amp=amp)[0] \
        if wanted else {}
    time_infer = time.perf_counter() - tic
    tic = time.perf_counter()
    positions = run_custom(probs, query_size, params, acquisition_generator, inputs=inputs)
    return Acquisition(positions, time_infer, time.perf_counter() - tic)


def inputs_read(heuristic: str, heuristic_params: dict[str, Any] | None = None) -> frozenset[str]:
    """Which of `embeddings`, `labelled_embeddings`, `labelled_targets` the heuristic reads, by the parameter
    names of its function (a built-in selector's, or the user's `_target_`); empty for the others."""
    if heuristic == "custom":
        from alrun.acquire.custom import inputs_read as custom_inputs

        return custom_inputs(dict(heuristic_params or {}))
    if heuristic in SELECTORS:
        return frozenset({"embeddings"}) | frozenset(
            components.accepted(components.builder("heuristic", heuristic), dict.fromkeys(INPUTS)))
    return frozenset()


def embedding_inputs(model: nn.Module, x_candidates: torch.Tensor, wanted: frozenset[str],
                     labelled: tuple[torch.Tensor, torch.Tensor] | None, *, batch_size: int | InferenceBatch,
                     amp: bool, source: str = "head") -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """({name: tensor} for the `wanted` inputs, the candidates' deterministic probs [M, C]).

    embeddings [M, D] and labelled_embeddings [L, D] (float32, CPU) come from one plain pass each
    (alrun.acquire.embeddings.embed), or with source="input" are the inputs themselves, flattened (on a frozen
    backbone the pretrained features, which the labels never moved: what TypiClust and ProbCover assume
    of their self-supervised features); labelled_targets [L] int64 are the oracle's labels of the labelled set.
    """
    x_labelled, y_labelled = labelled if labelled is not None else (x_candidates[:0], torch.empty(0, dtype=torch.long))
    pool = embed(model, x_candidates, batch_size=batch_size, amp=amp)

    def embedding_of(x: torch.Tensor) -> torch.Tensor:
        if source == "input":
            return x.reshape(x.shape[0], -1).float().cpu()
        return embed(model, x, batch_size=batch_size, amp=amp).embeddings

    out = {"embeddings": embedding_of(x_candidates) if source == "input" else pool.embeddings}
    if "labelled_embeddings" in wanted:
        out["labelled_embeddings"] = embedding_of(x_labelled)
    if "labelled_targets" in wanted:
        out["labelled_targets"] = torch.as_tensor(y_labelled).long().cpu()
    return {k: v for k, v in out.items() if k in wanted}, pool.probs


def _acquire_selector(model: nn.Module, x_candidates: torch.Tensor, heuristic: str, query_size: int,
                      params: dict[str, Any], *, acquisition_generator: torch.Generator,
                      batch_size: int | InferenceBatch, amp: bool,
                      labelled: tuple[torch.Tensor, torch.Tensor] | None) -> Acquisition:
    """A built-in selector (alrun.acquire.diversity) on the candidates' embeddings [M, D] (and BADGE on their
    deterministic probs [M, C]), the labelled set's embeddings [L, D] where it takes them; no MC samples.
    params["embedding"]: "head" (default: the last nn.Linear layer's input) or "input" (the inputs, flattened)."""
    tic = time.perf_counter()
    select = components.builder("heuristic", heuristic)
    params = dict(params)
    source = params.pop("embedding", "head")
    inputs, probs = embedding_inputs(model, x_candidates, inputs_read(heuristic), labelled, batch_size=batch_size,
                                     amp=amp, source=source)
    time_infer = time.perf_counter() - tic
    tic = time.perf_counter()
    embeddings = inputs.pop("embeddings")
    if "labelled_embeddings" in inputs and not len(inputs["labelled_embeddings"]):
        inputs["labelled_embeddings"] = None  # an empty labelled set: the selectors' own default
    offered = {**inputs, "probs": probs, "n_classes": probs.shape[1], "generator": acquisition_generator}
    try:
        chosen = select(embeddings, k=query_size, **components.accepted(select, offered), **params)
    except ValueError as exc:  # the selectors check their inputs with one sentence each
        raise HeuristicError(f"heuristic={heuristic}: {exc}") from None
    positions = torch.as_tensor(chosen, dtype=torch.int64).cpu()
    return Acquisition(positions, time_infer, time.perf_counter() - tic)
