"""Fit a model on the labelled set and evaluate it with the MC-averaged predictive."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score, f1_score
from torch import nn

from alrun.config.schema import TrainSpec
from alrun.core.errors import TrainingDiverged
from alrun.model.builders import set_dropout_generator
from alrun.model.inference import InferenceBatch, autocast, grad_scaler, predictive_mean, to_device


def epoch_length(spec: TrainSpec, n_labelled: int) -> int:
    """Samples in one epoch: `train.epoch_samples`, or one pass over the labelled set when it is unset."""
    return spec.epoch_samples if spec.epoch_samples is not None else n_labelled


def steps_per_epoch(spec: TrainSpec, n_labelled: int) -> int:
    """Gradient steps in one epoch (mini-batches of `batch_size`, the last one possibly smaller)."""
    return math.ceil(epoch_length(spec, n_labelled) / spec.batch_size)


def passes_before(spec: TrainSpec, n_labelled: int, updates: int) -> float:
    """Passes over the labelled set made by the first `updates` gradient steps: the labelled samples they drew
    / `n_labelled` (an epoch of `epoch_length` samples in batches of `batch_size`, its last batch possibly
    smaller; NaN for an empty labelled set)."""
    if n_labelled <= 0:
        return float("nan")
    length, per_epoch = epoch_length(spec, n_labelled), steps_per_epoch(spec, n_labelled)
    whole, rest = divmod(updates, per_epoch)
    return (whole * length + min(rest * spec.batch_size, length)) / n_labelled


def epoch_order(spec: TrainSpec, n_labelled: int, generator: torch.Generator) -> torch.Tensor:
    """The positions in the labelled set of one epoch's samples, in training order: [epoch_length].

    Unset `epoch_samples`: a permutation (each item once); set: `epoch_samples` positions drawn uniformly
    with replacement. Both come from `generator`, so the same seed gives the same order."""
    if spec.epoch_samples is None:
        return torch.randperm(n_labelled, generator=generator)
    return torch.randint(n_labelled, (spec.epoch_samples,), generator=generator)


def epochs_for(spec: TrainSpec, n_labelled: int) -> int:
    """The epoch schedule: `epochs`, or enough epochs for `min_updates` gradient steps.

    With early stopping this is the most that are run (see :class:`EarlyStopping`)."""
    if spec.schedule in ("min_updates", "early_stopping") and spec.min_updates > 0:
        return max(spec.epochs, math.ceil(spec.min_updates / steps_per_epoch(spec, n_labelled)))
    return spec.epochs


@torch.no_grad()
def fit_on_labels(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512,
                  amp: bool = False) -> tuple[float, torch.Tensor]:
    """(mean cross-entropy, predicted classes [L] int64 on the CPU) of `model` in eval mode (dropout off:
    deterministic) on x: [L, ...] against y: [L], the labels it was trained on; the model's mode is kept."""
    if x.shape[0] == 0:
        return float("nan"), torch.empty(0, dtype=torch.int64)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    loss, predicted = 0.0, []
    for start in range(0, x.shape[0], batch_size):
        xb = to_device(x[start : start + batch_size], device)
        yb = to_device(y[start : start + batch_size], device)
        with autocast(device, amp):
            logits = model(xb).float()
        loss += float(nn.functional.cross_entropy(logits, yb, reduction="sum"))
        predicted.append(logits.argmax(dim=1).cpu())
    model.train(was_training)
    return loss / x.shape[0], torch.cat(predicted)


def training_fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512,
                 amp: bool = False) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of `model` in eval mode (dropout off: deterministic) on x: [L, ...] against
    y: [L], the labels it was trained on; the model's mode is kept."""
    loss, predicted = fit_on_labels(model, x, y, batch_size, amp)
    if predicted.numel() == 0:
        return loss, float("nan")
    return loss, float((predicted == y.cpu()).double().mean())


def memorisation(predicted: torch.Tensor, given: torch.Tensor, true: torch.Tensor) -> dict[str, float]:
    """How far a model fits the noisy labels it was given (the paper's "memorises the noise", in numbers).

    predicted, given (the oracle's, maybe corrupted) and true labels: [L] int64 of the labelled set. Returns
    `noisy_labelled` (how many given labels are wrong), `noisy_fit_acc` (share of those the model predicts as
    given: 1.0 = the noise is memorised) and `noisy_true_acc` (share it predicts as the true class); NaN shares
    when no label is wrong.
    """
    noisy = given != true
    n = int(noisy.sum())
    if n == 0:
        return {"noisy_labelled": 0, "noisy_fit_acc": float("nan"), "noisy_true_acc": float("nan")}
    return {"noisy_labelled": n,
            "noisy_fit_acc": float((predicted[noisy] == given[noisy]).double().mean()),
            "noisy_true_acc": float((predicted[noisy] == true[noisy]).double().mean())}


def _optimizer(model: nn.Module, spec: TrainSpec) -> torch.optim.Optimizer:
    params = list(model.parameters())
    # one fused kernel per step instead of ~10 small ops per parameter: much cheaper steps for small models on CPU
    # (fused Adam and SGD run on the CPU since torch 2.4, on CUDA since 2.0)
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params) or None

    def make(fused: bool | None) -> torch.optim.Optimizer:
        if spec.optimizer == "sgd":
            return torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay,
                                   fused=fused)
        return torch.optim.Adam(params, lr=spec.lr, weight_decay=spec.weight_decay, fused=fused)

    try:
        return make(fused)
    except RuntimeError:
        # a torch without the fused kernel for these parameters' device or dtype refuses `fused=True` when
        # the optimizer is built: the default implementation computes the same update
        if not fused:
            raise
        return make(None)


class EarlyStopping:
    """Early stopping on a labelled validation set: x_val [V, ...], y_val [V].

    After every epoch :func:`fit` calls :meth:`after_epoch`, which scores the deterministic network on the
    validation set (dropout off: the weight-scaling approximation of the MC predictive, one pass instead of
    T) and keeps a copy of the best epoch's weights; training stops `patience` epochs after the best, and
    :meth:`restore` puts the best weights back. `stop_on`: "nll", the validation NLL (lower is better), or
    "accuracy", the validation accuracy (higher is better; the BatchBALD code's choice). Only a strict
    improvement counts, so among equal scores the earliest epoch is kept.
    """

    def __init__(self, x_val: torch.Tensor, y_val: torch.Tensor, patience: int, batch_size: int = 512,
                 stop_on: str = "nll") -> None:
        self.x_val, self.y_val = x_val, y_val
        self.patience = patience
        self.batch_size = batch_size
        self.stop_on = stop_on
        self.best_nll = math.inf  # the validation NLL of the best epoch (by `stop_on`)
        self.best_score = math.inf  # the score compared: the NLL, or minus the accuracy
        self.best_epoch = 0  # 1-based; 0: no epoch has been scored yet
        self.epochs_run = 0  # epochs scored so far
        self._best_state: dict[str, torch.Tensor] | None = None

    @torch.no_grad()
    def validation_scores(self, model: nn.Module, amp: bool = False) -> tuple[float, float]:
        """(mean NLL, accuracy) of the validation labels under `model` in eval mode (the model's mode is kept)."""
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        total, right = 0.0, 0
        for start in range(0, self.x_val.shape[0], self.batch_size):
            x = to_device(self.x_val[start : start + self.batch_size], device)
            y = to_device(self.y_val[start : start + self.batch_size], device)
            with autocast(device, amp):
                logits = model(x)
            total += float(nn.functional.cross_entropy(logits.float(), y, reduction="sum"))
            right += int((logits.argmax(dim=1) == y).sum())
        model.train(was_training)
        n = max(self.x_val.shape[0], 1)
        return total / n, right / n

    def validation_nll(self, model: nn.Module, amp: bool = False) -> float:
        """Mean NLL of the validation labels under `model` in eval mode (the model's mode is kept)."""
        return self.validation_scores(model, amp)[0]

    def after_epoch(self, model: nn.Module, epoch: int, amp: bool = False, eligible: bool = True) -> bool:
        """Score epoch `epoch` (1-based); True when training should stop. An epoch that is not `eligible`
        (before `train.min_updates` gradient steps) is counted but never kept."""
        if not eligible:
            self.epochs_run = epoch
            return False
        if self.stop_on == "accuracy":
            nll, accuracy = self.validation_scores(model, amp)
            score = -accuracy
        else:
            nll = score = self.validation_nll(model, amp)
        self.epochs_run = epoch
        if score < self.best_score:  # NaN never counts as better
            self.best_score, self.best_nll, self.best_epoch = score, nll, epoch
            if self._best_state is None:
                self._best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:  # copied into the same buffers: no new allocation per improvement (a VGG-16 is 0.5 GB)
                for k, v in model.state_dict().items():
                    self._best_state[k].copy_(v)
        return epoch - self.best_epoch >= self.patience

    def restore(self, model: nn.Module) -> None:
        """Load the best epoch's weights into `model` (nothing to do when no epoch was better than NaN)."""
        if self._best_state is not None:
            model.load_state_dict(self._best_state)


MAX_NONFINITE_STEPS = 5  # consecutive non-finite losses under float16 loss scaling before training is diverged


class LossTally:
    """An epoch's training loss and its non-finite steps, tallied without a host sync per step on a GPU.

    Per step: the loss times the batch size summed in float64 over the finite steps (as Python floats summed
    it before), their sample count, the current and the longest run of consecutive non-finite losses (the
    current run carries over into the next epoch) and the last non-finite loss. On a GPU these stay on the
    device until :meth:`read`, once per epoch; on the CPU, where reading a loss costs nothing, they are
    Python numbers (the same values, without a few small tensor operations per step).
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.on_host = device.type == "cpu"
        self.run: float | torch.Tensor = 0.0 if self.on_host else self._zero()
        self.new_epoch()

    def _zero(self) -> torch.Tensor:
        return torch.zeros((), dtype=torch.float64, device=self.device)

    def new_epoch(self) -> None:
        """Start an epoch's sums (the current run of non-finite losses goes on)."""
        if self.on_host:
            self.total, self.count, self.worst, self.bad = 0.0, 0.0, 0.0, 0.0
        else:
            self.total, self.count, self.worst, self.bad = (self._zero() for _ in range(4))
        self.steps = 0

    def add(self, loss: torch.Tensor, n: int) -> None:
        """One step's mean loss over its `n` samples."""
        self.steps += 1
        if self.on_host:
            value = float(loss.detach())
            if math.isfinite(value):
                self.total += value * n
                self.count += n
                self.run = 0.0
            else:
                self.run, self.bad = self.run + 1, value
                self.worst = max(self.worst, self.run)
            return
        value = loss.detach().double()
        finite = value.isfinite()
        self.total += torch.where(finite, value * n, 0.0)
        self.count += finite * n
        self.run = (self.run + 1) * ~finite
        torch.maximum(self.worst, self.run, out=self.worst)
        torch.where(finite, self.bad, value, out=self.bad)

    def read(self) -> tuple[float, float, float, float]:
        """(loss sum, finite samples, longest run of non-finite losses, last non-finite loss): one sync."""
        if self.on_host:
            return self.total, self.count, self.worst, self.bad
        total, count, worst, bad = torch.stack([self.total, self.count, self.worst, self.bad]).tolist()
        return total, count, worst, bad


def _check_finite(tally: LossTally, limit: int, epoch: int, spec: TrainSpec) -> float:
    """The epoch's mean loss over its finite steps (0.0 for an epoch of no steps); raises TrainingDiverged
    when `limit` consecutive losses were non-finite or that mean is not finite."""
    total, count, worst, bad = tally.read()
    if not tally.steps:
        return 0.0
    mean = total / count if count else float("nan")
    if worst >= limit or (count and not math.isfinite(mean)):  # a diverged model would only fill tables with NaN
        raise TrainingDiverged(f"The training loss became {bad if worst >= limit else mean} in epoch {epoch}: try a "
                               f"lower `train.lr` (now {spec.lr}) or check the data for extreme or unscaled values.")
    return mean


def fit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    spec: TrainSpec,
    generator: torch.Generator,
    dropout_generator: torch.Generator | None = None,
    amp: bool = False,
    early_stopping: EarlyStopping | None = None,
) -> float:
    """Train `model` in place on x: [L, ...], y: [L]; returns the last epoch's mean loss.

    An epoch is one pass over the labelled set, or `spec.epoch_samples` samples drawn with replacement
    (:func:`epoch_order`). Mini-batch order comes from `generator` (CPU); dropout masks from `dropout_generator`
    (on the model's device). With `early_stopping`, the epochs stop at its patience and the
    model ends with the best epoch's weights; with `spec.eval_every` it scores every that many gradient steps
    instead of after every epoch (patience then counts those checks).
    """
    device = next(model.parameters()).device
    model.train()
    set_dropout_generator(model, dropout_generator)
    optimizer = _optimizer(model, spec)
    loss_fn = nn.CrossEntropyLoss()
    scaler = grad_scaler(device, amp)
    n = x.shape[0]
    x_dev, y_dev = to_device(x, device), to_device(y, device)
    last = float("nan")
    # early stopping waits for `min_updates` gradient steps, and keeps no weights from before them: at 20 labels
    # an epoch is one step, and the validation NLL of a barely trained network can stay the best (over-confident
    # later networks score worse), so the weights of step 3 were kept with a training accuracy of 0.35
    min_epochs = math.ceil(spec.min_updates / steps_per_epoch(spec, n)) if n else 0
    # with `eval_every`, early stopping scores every that many gradient steps (check k is its "epoch" k)
    every = spec.eval_every if early_stopping is not None else None
    updates, stop = 0, False
    # a non-finite loss is skipped by the float16 scaler (its step is not taken), so only a run of them is fatal;
    # without a scaler the step would be taken and spoil the weights, so one is. Read once per epoch.
    limit = MAX_NONFINITE_STEPS if scaler.is_enabled() else 1
    tally = LossTally(device)
    for epoch in range(1, epochs_for(spec, n) + 1):
        order = epoch_order(spec, n, generator).to(device)
        tally.new_epoch()
        for start in range(0, order.shape[0], spec.batch_size):
            batch = order[start : start + spec.batch_size]
            with autocast(device, amp):
                loss = loss_fn(model(x_dev[batch]).float(), y_dev[batch])
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()  # float16: the loss scaled up so small gradients do not underflow
            scaler.step(optimizer)  # unscales; skips the step when a gradient overflowed
            scaler.update()
            tally.add(loss, len(batch))
            updates += 1
            if every and updates % every == 0:
                _check_finite(tally, limit, epoch, spec)
                stop = early_stopping.after_epoch(model, updates // every, amp, updates >= spec.min_updates)
                if stop:
                    break
        last = _check_finite(tally, limit, epoch, spec)
        if stop:
            break
        if early_stopping is not None and not every and early_stopping.after_epoch(model, epoch, amp,
                                                                                  epoch >= min_epochs):
            break
    if early_stopping is not None:
        early_stopping.restore(model)
    set_dropout_generator(model, None)
    return last


@dataclass(frozen=True)
class Evaluation:
    """Test metrics of the MC-averaged predictive."""

    nll: float
    accuracy: float
    f1_macro: float
    f1_per_class: np.ndarray  # [C]; NaN for a class without test items
    balanced_accuracy: float = float("nan")  # mean recall over the classes present in the labels


def classification_metrics(mean_probs_nc: torch.Tensor, labels: np.ndarray) -> Evaluation:
    """NLL, accuracy and F1 (macro and per class) of predictive probabilities [N, C] against labels [N].

    Macro F1 averages over the classes present in `labels`; the per-class F1 of a class with no test item is NaN.
    """
    probs = mean_probs_nc.double()
    target = torch.as_tensor(labels, dtype=torch.long)
    nll = float(-torch.log(probs.gather(1, target[:, None]).clamp_min(1e-12)).mean())
    predicted = probs.argmax(dim=1).numpy()
    # F1 of the classes the test labels hold: a class without test items has no F1 (NaN, not 0), and macro F1
    # is sklearn's f1_score(labels, predicted, labels=<the classes in labels>, average="macro")
    present = np.unique(labels)
    per_class = np.full(probs.shape[1], np.nan)
    per_class[present] = f1_score(labels, predicted, labels=present, average=None, zero_division=0)
    return Evaluation(
        nll=nll,
        accuracy=float((predicted == labels).mean()),
        f1_macro=float(per_class[present].mean()),
        f1_per_class=per_class,
        balanced_accuracy=_balanced_accuracy(labels, predicted),
    )


def _balanced_accuracy(labels: np.ndarray, predicted: np.ndarray) -> float:
    with warnings.catch_warnings():  # a test set of one class: sklearn warns, the value is still right
        warnings.simplefilter("ignore", UserWarning)
        return float(balanced_accuracy_score(labels, predicted))


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
