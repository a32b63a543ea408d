"""One whole active-learning step (train, evaluate, score, label): alrun's loop vs BaaL's.

Same configuration on both sides: MNIST-shaped data (scikit-learn's digits upsampled to 28x28
and tiled with pixel noise to the pool size), the Gal et al. CNN from the same initial weights
(reset before training, as in the paper), Adam lr 1e-3, batch 32, the same epochs, evaluation
with the MC-averaged predictive (T = 20) on the same test set, BALD with T = 20 over the whole
pool, the same query size, inference batch 128 items.

alrun: `ActiveLearningJob.run` (the real loop, with its checkpoint and CSV writes), stopped
after its first step through the `on_step` callback. BaaL: `ModelWrapper.train_on_dataset` on an
`ActiveLearningDataset`, `test_on_dataset(average_predictions=20)`, `ActiveLearningLoop.step()`
with `predict_on_dataset` (a second ModelWrapper on the same module carries the inference batch size).
"""

from __future__ import annotations

import copy
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from alrun.config.schema import ModelSpec, RunSpec, TrainSpec
from alrun.data.bundle import DataBundle
from alrun.loop.job import ActiveLearningJob, prepare_data
from alrun.model.builders import build_model
from benchmarks.common import interleaved_best, require_baal, row

T = 20
INFER_BATCH = 128


def mnist_shaped(n_train: int, n_test: int, seed: int = 0) -> DataBundle:
    """Digits (8x8, 10 classes) upsampled to 28x28x1, repeated with pixel noise to n_train + n_test."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = torch.nn.functional.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(len(x), (n_train + n_test,), generator=g)
    x = x[idx] + 0.1 * torch.randn(len(idx), 1, 28, 28, generator=g)
    x = ((x - x.mean()) / x.std()).contiguous()
    y = np.asarray(digits.target)[idx.numpy()].astype(np.int64)
    return DataBundle(x[:n_train], y[:n_train], x[n_train:], y[n_train:], [str(c) for c in range(10)])


class _FirstStepDone(Exception):
    pass


def _stop_after_first_step(row_: dict, n_total: int) -> None:
    raise _FirstStepDone


def step_config(quick: bool) -> tuple[RunSpec, DataBundle, str]:
    """The alrun spec, the data and a one-line description of the step both libraries run."""
    n_pool, n_test, initial, query, epochs = (1500, 500, 100, 100, 10) if quick else (5000, 1000, 100, 100, 20)
    spec = RunSpec(
        seed=0, heuristic="bald", query_size=query, initial_labelled=initial, max_labelled=initial + query,
        mc_samples=T, model=ModelSpec(name="gal_cnn", hidden=128, dropout=0.5),
        train=TrainSpec(epochs=epochs, batch_size=32, optimizer="adam", lr=1e-3), device="cpu",
        inference_batch_size=INFER_BATCH,
    )
    config = (f"Gal CNN, pool {n_pool} x 28x28x1, test {n_test}, labelled {initial} + query {query}, "
              f"{epochs} epochs, T={T}, BALD")
    return spec, mnist_shaped(n_pool, n_test), config


def run(quick: bool) -> list[dict]:
    require_baal()
    from baal.active import ActiveLearningDataset, ActiveLearningLoop
    from baal.active.heuristics import BALD
    from baal.bayesian.dropout import patch_module
    from baal.modelwrapper import ModelWrapper, TrainingArgs
    from baal.utils.metrics import Accuracy

    spec, bundle, config = step_config(quick)
    n_pool, initial, query, epochs = len(bundle.y_train), spec.initial_labelled, spec.query_size, spec.train.epochs
    repeats = 2 if quick else 3
    data = prepare_data(spec, bundle)
    timings: dict[str, float] = {}

    def alrun_step() -> None:
        def record(row_: dict, n_total: int) -> None:
            timings.update({k: row_[k] for k in ("time_train", "time_infer", "time_acquire")})
            _stop_after_first_step(row_, n_total)

        with tempfile.TemporaryDirectory() as tmp:
            try:
                ActiveLearningJob(spec, Path(tmp), data=data).run(on_step=record)
            except _FirstStepDone:
                return
        raise AssertionError("the alrun job ended before its first step")

    # BaaL: the same module and initial weights, its dropout layers patched
    model = patch_module(copy.deepcopy(build_model(spec.model, bundle.input_shape, 10, spec.seed)), inplace=False)
    initial_weights = copy.deepcopy(model.state_dict())
    train_set = torch.utils.data.TensorDataset(bundle.x_train, torch.as_tensor(bundle.y_train))
    test_set = torch.utils.data.TensorDataset(bundle.x_test, torch.as_tensor(bundle.y_test))
    criterion = nn.CrossEntropyLoss()
    # workers=0: with in-memory tensors, DataLoader worker processes only add start-up time on 2 cores
    trainer = ModelWrapper(model, TrainingArgs(criterion=criterion, batch_size=32, epoch=epochs, use_cuda=False,
                                               workers=0))
    predictor = ModelWrapper(model, TrainingArgs(criterion=criterion, batch_size=INFER_BATCH, use_cuda=False,
                                                 workers=0))
    predictor.add_metric("accuracy", lambda: Accuracy())
    first = np.random.default_rng(0).choice(n_pool, initial, replace=False)

    def baal_step() -> None:
        active = ActiveLearningDataset(train_set)
        active.label(first.tolist())
        loop = ActiveLearningLoop(active, predictor.predict_on_dataset, heuristic=BALD(), query_size=query,
                                  iterations=T, verbose=False)
        model.load_state_dict(initial_weights)
        trainer.args.optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        trainer.train_on_dataset(active)
        predictor.test_on_dataset(test_set, average_predictions=T)
        if not loop.step() or len(active) != initial + query:
            raise AssertionError("BaaL's step did not label the query")

    best = interleaved_best({"alrun": alrun_step, "baal": baal_step}, repeats, warmup=False)
    tic = time.perf_counter()
    alrun_step()  # once more, for the phase times the loop records (evaluation and set-up are the rest)
    evaluate_s = max(0.0, time.perf_counter() - tic - sum(timings.values()))
    return [row(
        "al_step_gal_cnn", best["alrun"], best["baal"],
        **{
            "alrun train / evaluate+other / infer+score / select s": " / ".join(
                f"{v:.2f}" for v in (timings["time_train"], evaluate_s, timings["time_infer"], timings["time_acquire"])
            ),
            "config": f"{config}, best of {repeats}",
        },
    )]
