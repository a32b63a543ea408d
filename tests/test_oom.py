"""GPU out of memory during MC inference: the batch is halved, the job goes on and says so once.

The out-of-memory error is faked by a layer that raises torch.cuda.OutOfMemoryError (the class
CUDA raises) when it is handed more rows than a limit, as a GPU with little memory would.
"""

from __future__ import annotations

import logging

import pandas as pd
import pytest
import torch
from torch import nn

import alrun.loop.job
from alrun.config.schema import DatasetSpec, RunSpec, TrainSpec
from alrun.core.errors import ModelError
from alrun.model.builders import SeededDropout
from alrun.model.inference import InferenceBatch, mc_probs

pytestmark = pytest.mark.usefixtures("test_deadline")  # no test here can hang a run (conftest)


class MemoryLimit(nn.Module):
    """Identity that raises CUDA's out-of-memory error above `max_rows` rows during inference."""

    def __init__(self, max_rows: int) -> None:
        super().__init__()
        self.max_rows = max_rows
        self.failures = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_inference_mode_enabled() and x.shape[0] > self.max_rows:
            self.failures += 1
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {x.numel() * 4} bytes (fake)")
        return x


def small_model(limit: MemoryLimit | None) -> nn.Sequential:
    """The same weights on every call (seeded in a forked RNG scope); `limit` after the first dropout."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        layers = [nn.Linear(6, 16), nn.ReLU(), SeededDropout(0.5), nn.Linear(16, 16), nn.ReLU()]
        return nn.Sequential(*layers[:3], *([limit] if limit else []), *layers[3:], SeededDropout(0.5),
                             nn.Linear(16, 3))


@pytest.mark.parametrize("consistent", [False, True])
def test_oom_halves_the_batch_and_gives_the_small_batch_result(caplog, consistent):
    x = torch.randn(50, 6, generator=torch.Generator().manual_seed(1))
    t = 5
    limit = MemoryLimit(max_rows=8 * t)  # 8 items x T samples fit, more do not
    batch = InferenceBatch(64)
    with caplog.at_level(logging.WARNING, logger="alrun"):
        got = mc_probs(small_model(limit), x, t, batch_size=batch, consistent=consistent,
                       generator=torch.Generator().manual_seed(7))
    expected = mc_probs(small_model(None), x, t, batch_size=8, consistent=consistent,
                        generator=torch.Generator().manual_seed(7))
    assert batch.size == 8 and limit.failures == 3  # 64 -> 32 -> 16 -> 8
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    [warning] = caplog.records
    assert "out of memory" in warning.getMessage() and "halved to 32" in warning.getMessage()


def test_halved_size_is_kept_for_later_calls(caplog):
    limit = MemoryLimit(max_rows=16 * 4)
    model, batch = small_model(limit), InferenceBatch(256)
    with caplog.at_level(logging.WARNING, logger="alrun"):
        for seed in range(3):
            x = torch.randn(40, 6, generator=torch.Generator().manual_seed(seed))
            mc_probs(model, x, 4, batch_size=batch, generator=torch.Generator().manual_seed(seed))
    assert batch.size == 16 and limit.failures == 4 and len(caplog.records) == 1


def test_oom_with_a_single_item_is_one_sentence():
    with pytest.raises(ModelError, match=r"^The GPU ran out of memory during inference even with a batch of 1 item"):
        mc_probs(small_model(MemoryLimit(max_rows=2)), torch.zeros(4, 6), 3, batch_size=4)


def test_job_with_oom_equals_job_with_small_batch(tmp_path, monkeypatch, caplog):
    """A whole job whose model runs out of memory above 16 items goes on: same steps as a job run with
    inference_batch_size=16, and one warning for the whole job."""
    real_build = alrun.loop.job.build_model
    limits: list[MemoryLimit] = []

    def build_with_limit(*args, **kwargs):
        model = real_build(*args, **kwargs)
        limits.append(MemoryLimit(max_rows=16 * 3))
        # right after the first dropout: the head runs on [B * T, ...] rows there
        first = next(i for i, m in enumerate(model) if isinstance(m, SeededDropout))
        return nn.Sequential(*model[: first + 1], limits[-1], *model[first + 1 :])

    def spec(batch_size: int) -> RunSpec:
        return RunSpec(seed=0, heuristic="bald", query_size=10, initial_labelled=20, max_labelled=40, mc_samples=3,
                       device="cpu", inference_batch_size=batch_size, dataset=DatasetSpec(max_train=200, max_test=100),
                       train=TrainSpec(epochs=1, schedule="fixed"))

    small = alrun.loop.job.ActiveLearningJob(spec(16), tmp_path / "small").run()
    monkeypatch.setattr(alrun.loop.job, "build_model", build_with_limit)
    with caplog.at_level(logging.WARNING, logger="alrun"):
        oom = alrun.loop.job.ActiveLearningJob(spec(512), tmp_path / "oom").run()
    assert limits and limits[0].failures == 5  # 512 -> 256 -> 128 -> 64 -> 32 -> 16, once for the job
    timings = [c for c in oom.columns if c.startswith("time_")]
    pd.testing.assert_frame_equal(oom.drop(columns=timings), small.drop(columns=timings))
    assert len([r for r in caplog.records if "out of memory" in r.getMessage()]) == 1
