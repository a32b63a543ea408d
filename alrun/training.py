"""Fit a model on the labelled set and evaluate it with the MC-averaged predictive."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import f1_score
from torch import nn

from alrun.config import TrainSpec
from alrun.errors import TrainingDiverged
from alrun.inference import InferenceBatch, autocast, predictive_mean, to_device
from alrun.models import set_dropout_generator


def epochs_for(spec: TrainSpec, n_labelled: int) -> int:
    """The epoch schedule: `epochs`, or enough epochs for `min_updates` gradient steps."""
    if spec.schedule == "min_updates" and spec.min_updates > 0:
        steps_per_epoch = math.ceil(n_labelled / spec.batch_size)
        return max(spec.epochs, math.ceil(spec.min_updates / steps_per_epoch))
    return spec.epochs


def _optimizer(model: nn.Module, spec: TrainSpec) -> torch.optim.Optimizer:
    params = list(model.parameters())
    # one fused kernel per step instead of ~10 small ops per parameter: much cheaper steps for small models on CPU
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params) or None
    if spec.optimizer == "sgd":
        return torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay, fused=fused)
    return torch.optim.Adam(params, lr=spec.lr, weight_decay=spec.weight_decay, fused=fused)


def fit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    spec: TrainSpec,
    generator: torch.Generator,
    dropout_generator: torch.Generator | None = None,
    amp: bool = False,
) -> float:
    """Train `model` in place on x: [L, ...], y: [L]; returns the last epoch's mean loss.

    Mini-batch order comes from `generator` (CPU); dropout masks from `dropout_generator`
    (on the model's device).
    """
    device = next(model.parameters()).device
    model.train()
    set_dropout_generator(model, dropout_generator)
    optimizer = _optimizer(model, spec)
    loss_fn = nn.CrossEntropyLoss()
    n = x.shape[0]
    x_dev, y_dev = to_device(x, device), to_device(y, device)
    last = float("nan")
    for epoch in range(epochs_for(spec, n)):
        order = torch.randperm(n, generator=generator).to(device)
        total, count = 0.0, 0
        for start in range(0, n, spec.batch_size):
            batch = order[start : start + spec.batch_size]
            with autocast(device, amp):
                loss = loss_fn(model(x_dev[batch]).float(), y_dev[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            value = float(loss.detach())
            if not math.isfinite(value):  # a diverged model would only fill the tables with NaN
                raise TrainingDiverged(f"The training loss became {value} in epoch {epoch + 1}: try a lower "
                                       f"`train.lr` (now {spec.lr}) or check the data for extreme or unscaled values.")
            total += value * len(batch)
            count += len(batch)
        last = total / max(count, 1)
    set_dropout_generator(model, None)
    return last


@dataclass(frozen=True)
class Evaluation:
    """Test metrics of the MC-averaged predictive."""

    nll: float
    accuracy: float
    f1_macro: float
    f1_per_class: np.ndarray  # [C]


def classification_metrics(mean_probs_nc: torch.Tensor, labels: np.ndarray) -> Evaluation:
    """NLL, accuracy and F1 (macro and per class) of predictive probabilities [N, C] against labels [N]."""
    probs = mean_probs_nc.double()
    target = torch.as_tensor(labels, dtype=torch.long)
    nll = float(-torch.log(probs.gather(1, target[:, None]).clamp_min(1e-12)).mean())
    predicted = probs.argmax(dim=1).numpy()
    n_classes = probs.shape[1]
    per_class = f1_score(labels, predicted, labels=np.arange(n_classes), average=None, zero_division=0)
    return Evaluation(
        nll=nll,
        accuracy=float((predicted == labels).mean()),
        f1_macro=float(per_class.mean()),
        f1_per_class=np.asarray(per_class, dtype=np.float64),
    )


def evaluate(
    model: nn.Sequential,
    x: torch.Tensor,
    labels: np.ndarray,
    n_samples: int,
    generator: torch.Generator | None,
    batch_size: int | InferenceBatch = 512,
    amp: bool = False,
) -> Evaluation:
    """Metrics of the MC-averaged predictive (T = n_samples dropout samples) on a test set."""
    mean = predictive_mean(model, x, n_samples, batch_size=batch_size, generator=generator, amp=amp)
    return classification_metrics(mean, labels)
