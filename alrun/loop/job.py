"""The active-learning loop (the paper's Algorithm 1), with a checkpoint after every step.

Only this module holds state between steps, and only it writes the job's files:
``steps.csv`` (one row per step), ``checkpoint.json`` (labelled order and rows so far),
``spec.json`` (the resolved config) and ``done`` when the job has finished.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from alrun.acquire.acquisition import acquire, inputs_read
from alrun.acquire.embeddings import last_linear
from alrun.config.schema import RunSpec, check_against_data
from alrun.core.devices import channels_last, job_determinism, resolve_device
from alrun.core.errors import ConfigError, TrainingDiverged
from alrun.core.seeding import generator, seed_global
from alrun.data import DataBundle, load_dataset
from alrun.data.pathologies import corrupt_labels, imbalance_indices
from alrun.loop.active_set import ActiveSet
from alrun.loop.checkpoint import atomic_write_text, load_checkpoint, remove_stale_temporaries, save_checkpoint
from alrun.loop.labelled_sets import initial_positions, validation_split
from alrun.model.builders import build_model
from alrun.model.features import featurize
from alrun.model.inference import InferenceBatch
from alrun.model.mc_probe import probe_job_model
from alrun.train.fit import (
    EarlyStopping,
    epochs_for,
    evaluate,
    fit,
    fit_on_labels,
    memorisation,
    passes_before,
    steps_per_epoch,
)
from alrun.train.fit_guard import fit_flag

log = logging.getLogger("alrun")

StepCallback = Callable[[dict[str, Any], int], None]


def column_name(class_name: str) -> str:
    """A class name made safe for a CSV column."""
    return re.sub(r"[^0-9A-Za-z_]+", "_", str(class_name)).strip("_") or "class"


# settings added after jobs were first written to disk, by section of the spec ("" the top level), with
# their defaults: left out of the fingerprint at those defaults, so that those jobs still resume
_LATER_SETTINGS: dict[str, dict[str, Any]] = {
    "": {"initial_balanced": False, "threads": "auto"},
    "train": {"validation_size": 0, "patience": 10, "epoch_samples": None, "eval_every": None, "stop_on": "nll"},
    "dataset": {"target": None, "args": {}},
    "model": {"target": None, "args": {}, "trunk": None, "head": None},
    "heuristic_params": {"embedding": "head"},
}


def spec_fingerprint(spec: RunSpec) -> str:
    """A short hash of the resolved config (device aside): a resumed job must match it."""
    values = asdict(spec)
    values.pop("device", None)
    values.pop("deterministic", None)  # like the device: how the numbers are computed, not which study it is
    for section, later in _LATER_SETTINGS.items():
        scope = values[section] if section else values
        for key, default in later.items():
            if scope.get(key) == default:
                scope.pop(key)
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class PreparedData:
    """The data as the loop sees it: pathologies applied, the oracle's labels fixed."""

    bundle: DataBundle
    eligible: np.ndarray  # dataset indices that can be acquired (after imbalance, without validation): [M]
    oracle_labels: np.ndarray  # labels the oracle returns (after noise): [N]
    reduced_classes: np.ndarray  # class ids reduced by the imbalance pathology
    # labelled once per seed for early stopping, never acquired: [V] dataset indices
    validation: np.ndarray = field(default_factory=lambda: np.array([], dtype=np.int64))


def prepare_data(spec: RunSpec, bundle: DataBundle | None = None) -> PreparedData:
    """Load the data set and apply the seeded pathologies (imbalance, then label noise)."""
    bundle = bundle if bundle is not None else load_dataset(spec.dataset)
    n_classes = bundle.n_classes
    check_against_data(spec, len(bundle.y_train), n_classes)
    bundle = featurize(bundle, spec, resolve_device(spec.device))  # a frozen backbone: images -> cached features
    if spec.imbalance_classes:
        eligible, reduced = imbalance_indices(
            bundle.y_train, spec.imbalance_classes, spec.imbalance_keep, n_classes,
            generator(spec.seed, "pathology/imbalance"),
        )
    else:
        eligible, reduced = np.arange(len(bundle.y_train)), np.array([], dtype=np.int64)
    oracle = bundle.y_train.copy()
    if spec.label_noise:
        # noise is drawn over the eligible items only, so lambda is the share of the pool's labels
        oracle[eligible] = corrupt_labels(
            bundle.y_train[eligible], spec.label_noise, n_classes, generator(spec.seed, "pathology/noise")
        )
    check_against_data(spec, len(eligible), n_classes)
    # drawn from the seed alone, so every heuristic of a seed validates on the same labels
    eligible, validation = validation_split(eligible, spec.train.n_validation, generator(spec.seed, "validation"))
    return PreparedData(bundle, eligible, oracle, reduced, validation)


class ActiveLearningJob:
    """One job: a seeded run of train -> evaluate -> acquire until `max_labelled`."""

    def __init__(self, spec: RunSpec, out_dir: Path, data: PreparedData | None = None) -> None:
        self.spec = spec
        self.out_dir = Path(out_dir)
        self.device = resolve_device(spec.device)
        with job_determinism(spec.deterministic):  # for this job's work only (restored after it)
            self.data = data if data is not None else prepare_data(spec)
        self.class_columns = [column_name(c) for c in self.data.bundle.class_names]
        self.checkpoint_path = self.out_dir / "checkpoint.json"
        self.steps_path = self.out_dir / "steps.csv"
        self.done_path = self.out_dir / "done"

    @property
    def n_steps_total(self) -> int:
        s = self.spec
        reachable = min(s.max_labelled, len(self.data.eligible))
        return 1 + max(0, -(-(reachable - s.initial_labelled) // s.query_size))

    def check_folder(self) -> dict[str, Any] | None:
        """The folder's checkpoint (None when there is none), or one ConfigError sentence when it is another
        config's: called before anything is written there, so a refused job changes nothing of a finished one."""
        state = load_checkpoint(self.checkpoint_path)
        if state is not None and state.get("fingerprint") != spec_fingerprint(self.spec):
            raise ConfigError(f"The folder {self.out_dir} holds a job with a different config; "
                              "run in a new folder (hydra.sweep.dir=...) or delete that one.")
        return state

    def _initial_state(self) -> tuple[ActiveSet, list[dict[str, Any]], bool]:
        """(labelled set, rows so far, whether the last step was the final one) from the newest good
        checkpoint, or the seeded initial labels."""
        active = ActiveSet(self.data.eligible, len(self.data.bundle.y_train))
        state = self.check_folder()
        if state is not None:
            active.label(np.asarray(state["labelled"], dtype=np.int64))
            log.info("resuming %s after %d finished steps", self.out_dir, len(state["rows"]))
            return active, list(state["rows"]), bool(state.get("finished", False))
        eligible = self.data.eligible
        chosen = initial_positions(self.data.oracle_labels[eligible], self.spec.initial_labelled,
                                   self.spec.initial_balanced, generator(self.spec.seed, "initial"))
        active.label(eligible[chosen])
        return active, [], False

    def _save(self, active: ActiveSet, rows: list[dict[str, Any]], finished: bool) -> None:
        # the checkpoint first: steps.csv is always rebuilt from it, so a kill between the two is harmless
        save_checkpoint(
            self.checkpoint_path,
            {"fingerprint": spec_fingerprint(self.spec), "labelled": active.labelled_indices.tolist(), "rows": rows,
             "finished": finished},
        )
        atomic_write_text(self.steps_path, pd.DataFrame(rows).to_csv(index=False))

    def run(self, on_step: StepCallback | None = None) -> pd.DataFrame:
        """Run (or resume) the job to the end; returns the rows of steps.csv. `deterministic=true` holds for
        the run only: torch's settings are restored after it."""
        with job_determinism(self.spec.deterministic):
            return self._run(on_step)

    def _run(self, on_step: StepCallback | None) -> pd.DataFrame:
        spec, data, device = self.spec, self.data, self.device
        self.out_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.out_dir)
        atomic_write_text(self.out_dir / "spec.json", json.dumps(asdict(spec), indent=2, default=str))
        active, rows, finished = self._initial_state()
        if self.done_path.exists():
            return pd.read_csv(self.steps_path) if self.steps_path.exists() else pd.DataFrame(rows)
        if finished:  # killed after the last checkpoint, before `done`: only the files are missing
            atomic_write_text(self.steps_path, pd.DataFrame(rows).to_csv(index=False))
            atomic_write_text(self.done_path, "")
            return pd.DataFrame(rows)
        bundle = data.bundle
        x_train = bundle.x_train.to(device) if device.type == "cuda" else bundle.x_train
        x_test = bundle.x_test.to(device) if device.type == "cuda" else bundle.x_test
        oracle = torch.as_tensor(data.oracle_labels)
        true_labels = torch.as_tensor(bundle.y_train)
        model = build_model(spec.model, bundle.input_shape, bundle.n_classes, spec.seed, bundle.pixel_stats).to(device)
        if device.type == "cuda":  # only where every weight and the input are 4-D
            channels_last(model, x_train.ndim)
        initial_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        amp = spec.amp and device.type == "cuda"
        # MC samples that repeat and vary, proven on a few real inputs; T = 1 for a model without active
        # dropout under a heuristic that needs no MC samples
        n_samples = probe_job_model(model, spec, bundle.input_shape, x_train)
        inference_batch = InferenceBatch(spec.inference_batch_size)  # halved for the whole job on GPU out-of-memory
        validation = torch.as_tensor(data.validation)
        x_val, y_val = x_train[validation.to(x_train.device)], oracle[validation]
        # a heuristic that reads the labelled set's embeddings or labels gets its inputs at every step
        reads = inputs_read(spec.heuristic, spec.heuristic_params)
        reads_labelled = bool(reads & {"labelled_embeddings", "labelled_targets"})
        if reads & {"embeddings", "labelled_embeddings"}:
            last_linear(model, spec.heuristic)  # a model without an nn.Linear layer stops here, before any training
        for row in rows:
            if on_step:
                on_step(row, self.n_steps_total)

        while True:
            step = len(rows)
            labelled = active.labelled_indices
            # the paper resets the weights before every training round (Gal et al. 2017)
            model.load_state_dict(initial_weights)
            tic = time.perf_counter()
            idx = torch.as_tensor(labelled)
            stopper = (EarlyStopping(x_val, y_val, spec.train.patience, spec.inference_batch_size,
                                     spec.train.stop_on)
                       if spec.train.schedule == "early_stopping" else None)
            seed_global(spec.seed, f"train/{step}")  # randomness of a user's model that alrun does not own
            try:
                fit(model, x_train[idx.to(x_train.device)], oracle[idx], spec.train,
                    generator(spec.seed, f"train/{step}"), generator(spec.seed, f"dropout/{step}", device), amp,
                    early_stopping=stopper)
            except TrainingDiverged as exc:  # say which step
                message = str(exc)
                raise TrainingDiverged(f"At step {step} ({len(labelled)} labelled), {message[:1].lower()}{message[1:]}"
                                       ) from None
            time_train = time.perf_counter() - tic
            # the under-fitting guard: how well the weights kept fit the labels they were trained on
            train_loss, predicted = fit_on_labels(model, x_train[idx.to(x_train.device)], oracle[idx],
                                                  spec.inference_batch_size, amp)
            train_acc = float((predicted == oracle[idx]).double().mean()) if len(idx) else float("nan")
            seed_global(spec.seed, f"eval/{step}")
            metrics = evaluate(model, x_test, bundle.y_test, n_samples,
                               generator(spec.seed, f"eval/{step}", device), inference_batch, amp)
            row: dict[str, Any] = {
                "step": step,
                "labelled": len(labelled),
                "test_nll": metrics.nll,
                "test_acc": metrics.accuracy,
                "test_balanced_acc": metrics.balanced_accuracy,
                "test_f1_macro": metrics.f1_macro,
            }
            # labels spent beside the acquired ones, and the epoch whose weights were evaluated
            epochs_run = stopper.epochs_run if stopper else epochs_for(spec.train, len(labelled))
            # gradient steps per epoch (per validation check with train.eval_every), and the passes over the labelled
            # set the kept weights were trained for (the guard's measure of how long they trained)
            per_check = (spec.train.eval_every if stopper and spec.train.eval_every
                         else steps_per_epoch(spec.train, len(labelled)))
            kept_epoch = stopper.best_epoch if stopper else epochs_run
            row.update({"validation_labels": len(data.validation), "epochs_trained": kept_epoch})
            # epochs_trained is the epoch whose weights were kept; epochs_run those that ran (more under early
            # stopping); fit_flag: "" or why the step's model is not to be trusted (alrun.train.fit_guard.fit_flag)
            if spec.label_noise:  # the oracle knows both labels: how far the model fits the wrong ones
                row.update(memorisation(predicted, oracle[idx], true_labels[idx]))
            row.update({"epochs_run": epochs_run, "train_loss": train_loss, "train_acc": train_acc,
                        "fit_flag": fit_flag(train_acc, kept_epoch, epochs_run, metrics.accuracy, bundle.n_classes,
                                             spec.label_noise,
                                             passes_before(spec.train, len(labelled), kept_epoch * per_check))})
            # the T this step's evaluation and acquisition used: mc_samples, or 1 where the probe found no dropout
            # and the heuristic needs no MC samples (job.json keeps the configured value)
            row["mc_samples_used"] = n_samples
            row.update({f"f1_{c}": float(v) for c, v in zip(self.class_columns, metrics.f1_per_class, strict=True)})
            counts = np.bincount(bundle.y_train[labelled], minlength=bundle.n_classes)
            row.update({f"count_{c}": int(v) for c, v in zip(self.class_columns, counts, strict=True)})
            room = min(spec.max_labelled - len(labelled), active.n_pool)
            time_infer = time_acquire = 0.0
            if room > 0:
                candidates = active.sample_pool(spec.pool_fraction, generator(spec.seed, f"pool/{step}"))
                seed_global(spec.seed, f"acquire/{step}")
                chosen = acquire(
                    model, x_train[torch.as_tensor(candidates).to(x_train.device)], spec.heuristic,
                    min(spec.query_size, room, len(candidates)), n_samples,
                    mc_generator=generator(spec.seed, f"mc/{step}", device),
                    acquisition_generator=generator(spec.seed, f"acquire/{step}"),
                    batch_size=inference_batch, amp=amp, heuristic_params=spec.heuristic_params,
                    labelled=(x_train[idx.to(x_train.device)], oracle[idx]) if reads_labelled else None,
                )
                active.label(ActiveSet.positions_to_indices(candidates, chosen.positions))
                time_infer, time_acquire = chosen.time_infer, chosen.time_select
            row.update({"time_train": time_train, "time_infer": time_infer, "time_acquire": time_acquire})
            rows.append(row)
            self._save(active, rows, finished=room <= 0)
            if on_step:
                on_step(row, self.n_steps_total)
            if room <= 0:
                break
        atomic_write_text(self.done_path, "")
        return pd.DataFrame(rows)
