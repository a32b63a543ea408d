"""MC-Dropout inference: batched, streaming, with the deterministic trunk computed once per input.

The central generator :func:`mc_prob_chunks` yields probabilities [B, C, T] chunk by chunk; the
helpers reduce them on the fly (mean predictive, per-item scores) so nothing of size [N, C, T]
is held unless a caller asks for it (:func:`mc_probs`, for batch methods).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from alrun.core.devices import amp_precision
from alrun.core.errors import ModelError
from alrun.model.builders import (
    SeededDropout,
    dropout_layers,
    fold_for_inference,
    mc_mode,
    set_dropout_generator,
    split_at_first_dropout,
)
from alrun.model.custom import mc_head

log = logging.getLogger("alrun")


@dataclass
class InferenceBatch:
    """A job's inference batch size (items per chunk): halved when the GPU runs out of memory, and
    kept halved, so one job shares it across all its inference calls and says so once."""

    size: int
    halved: bool = False

    def halve(self) -> None:
        """Halve the size after an out-of-memory error; one log line the first time."""
        if self.size <= 1:
            raise ModelError(
                "The GPU ran out of memory during inference even with a batch of 1 item; "
                "use a smaller model or image size, amp=true, or device=cpu."
            )
        self.size = max(1, self.size // 2)
        if not self.halved:
            log.warning("The GPU ran out of memory during MC-Dropout inference, so the inference batch is halved "
                        "to %d items (again if needed) and the job goes on.", self.size)
        self.halved = True


def amp_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    """The autocast dtype: on CUDA when enabled, by the job's own GPU's compute capability
    (:func:`alrun.core.devices.amp_precision`: bfloat16 where native, else float16 as on V100 and T4);
    None (full precision) on the CPU or when disabled."""
    if enabled and device.type == "cuda":
        return amp_precision(torch.cuda.get_device_capability(device))[0]
    return None


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """Mixed precision in :func:`amp_dtype`'s dtype; a no-op when that is None (the CPU)."""
    dtype = amp_dtype(device, enabled)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device: torch.device, enabled: bool) -> torch.amp.GradScaler:
    """Loss scaling for training under :func:`autocast`: on with float16, whose gradients below 6e-8
    underflow to zero unless the loss is scaled up first; off (a pass-through) with bfloat16, which
    has float32's exponent range, and in full precision."""
    return torch.amp.GradScaler(device.type, enabled=amp_dtype(device, enabled) == torch.float16)


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move a batch to `device`; pinned memory makes the copy asynchronous on CUDA."""
    if x.device == device:
        return x
    if device.type == "cuda":
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)


def mc_prob_chunks(
    model: nn.Sequential,
    x: torch.Tensor,
    n_samples: int,
    *,
    batch_size: int | InferenceBatch = 512,
    generator: torch.Generator | None = None,
    consistent: bool = False,
    amp: bool = False,
    split: bool = True,
) -> Iterator[torch.Tensor]:
    """Yield MC-Dropout probabilities [B, C, T] for consecutive chunks of x: [N, ...].

    The trunk (layers before the first dropout) runs once per input, the head T times on the
    repeated trunk output. Exact: the same masks give the same probabilities as T full passes.
    `consistent` shares one dropout mask per sample t across all N items (BatchBALD needs it).
    `split=False` runs the whole network T times (the reference the split is tested against).
    A CUDA out-of-memory error halves `batch_size` (pass an InferenceBatch to keep the halved
    size for later calls) and retries the chunk from the same generator state, so the result
    equals a run started with the smaller batch.
    """
    device = next(model.parameters()).device
    # a custom model with `model.head`: its own forward, the head's input repeated T times (exact)
    repeat_head = mc_head(model) if split else None
    if repeat_head is None and not isinstance(model, nn.Sequential):
        split = False  # any other non-Sequential module: T full passes (exact, slower)
    trunk, head = split_at_first_dropout(model) if split and repeat_head is None else (torch.nn.Sequential(), model)
    mc_mode(model)
    set_dropout_generator(model, generator)
    layers = dropout_layers(head)
    for layer in layers:
        layer.shared_mask_samples = n_samples if consistent else None
        layer.reset_shared_masks()
    batch = batch_size if isinstance(batch_size, InferenceBatch) else InferenceBatch(batch_size)
    trunk = fold_for_inference(trunk)  # VGG-16 on small images: its 25088-input layer folded to 512 inputs
    # a head that starts with dropout repeats its input itself, without a [B * T, ...] copy
    first_dropout = head[0] if isinstance(head, nn.Sequential) and len(head) and isinstance(head[0], SeededDropout) \
        else None
    rest = head[1:] if first_dropout is not None else head
    reusable: dict[str, torch.Tensor] = {}

    def output_buffer(features: torch.Tensor) -> torch.Tensor | None:
        """One buffer for the first dropout's [B * T, ...] output, reused by every chunk on the CPU,
        where a fresh block of that size (40 MB for the Gal CNN) costs page faults each time."""
        numel = features.numel() * n_samples
        if features.device.type != "cpu":
            return None
        held = reusable.get("out")
        if held is None or held.numel() < numel or held.dtype != features.dtype:
            held = reusable["out"] = torch.empty(numel, dtype=features.dtype)
        return held

    def chunk_probs(start: int, step: int) -> torch.Tensor:
        xb = to_device(x[start : start + step], device)
        features = trunk(xb) if len(trunk) else xb
        b = features.shape[0]
        # [B, ...] -> [B * T, ...], T consecutive rows per item
        if repeat_head is not None:
            logits = model(xb)  # the pre-hook repeats the head's input
        elif first_dropout is not None:
            logits = rest(first_dropout.forward_repeated(features, n_samples, out=output_buffer(features)))
        else:
            repeated = features.unsqueeze(1).expand(b, n_samples, *features.shape[1:])
            logits = head(repeated.reshape(b * n_samples, *features.shape[1:]))
        probs_btc = logits.float().softmax(dim=-1).view(b, n_samples, -1)
        return probs_btc.permute(0, 2, 1)

    handle = None
    try:
        if repeat_head is not None:
            from alrun.model.custom import repeat_at

            handle = repeat_at(repeat_head, n_samples)
        with torch.inference_mode(), autocast(device, amp):
            start = 0
            while start < x.shape[0]:
                # with an empty trunk the whole network runs T times per item: keep the rows per call bounded
                step = batch.size if len(trunk) or repeat_head is not None else max(1, batch.size // n_samples)
                rng_state = generator.get_state() if generator is not None else None
                try:
                    probs_bct = chunk_probs(start, step)
                except torch.cuda.OutOfMemoryError:
                    probs_bct = None  # handled below, once the failed chunk's tensors are released
                if probs_bct is None:
                    # retry the same items with half the batch, drawing the same masks again
                    if rng_state is not None:
                        generator.set_state(rng_state)
                    if start == 0:  # consistent masks are drawn with the first chunk
                        for layer in layers:
                            layer.reset_shared_masks()
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                    batch.halve()
                    continue
                yield probs_bct
                start += probs_bct.shape[0]
    finally:
        if handle is not None:
            handle.remove()
        for layer in layers:
            layer.shared_mask_samples = None
            layer.reset_shared_masks()
        set_dropout_generator(model, None)


def mc_probs(model: nn.Sequential, x: torch.Tensor, n_samples: int, **kwargs) -> torch.Tensor:
    """All MC probabilities at once: [N, C, T] (for batch methods that need the samples)."""
    return torch.cat(list(mc_prob_chunks(model, x, n_samples, **kwargs)), dim=0)


def predictive_mean(model: nn.Sequential, x: torch.Tensor, n_samples: int, **kwargs) -> torch.Tensor:
    """The MC-averaged predictive p(y|x) = mean_t p(y|x, w_t): [N, C], on the CPU."""
    return torch.cat([p.mean(dim=2).cpu() for p in mc_prob_chunks(model, x, n_samples, **kwargs)], dim=0)


def streamed_scores(
    model: nn.Sequential,
    x: torch.Tensor,
    n_samples: int,
    score_fn: Callable[[torch.Tensor], torch.Tensor],
    **kwargs,
) -> torch.Tensor:
    """Per-item scores [N] computed chunk by chunk (score_fn: [B, C, T] -> [B]); memory O(N)."""
    return torch.cat([score_fn(p).cpu() for p in mc_prob_chunks(model, x, n_samples, **kwargs)], dim=0)
