"""Which device a job runs on, with a fake number of visible GPUs."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from alrun.cli import job_index
from alrun.core.devices import choose_device
from alrun.core.errors import ConfigError

pytestmark = pytest.mark.usefixtures("test_deadline")  # no test here can hang a run (conftest)


def test_auto_without_gpu_is_cpu():
    assert [choose_device("auto", k, device_count=0) for k in range(3)] == ["cpu"] * 3


def test_auto_spreads_jobs_over_local_gpus():
    assert [choose_device("auto", k, device_count=4) for k in range(6)] == [
        "cuda:0", "cuda:1", "cuda:2", "cuda:3", "cuda:0", "cuda:1"]
    # as many jobs as GPUs: one job per GPU
    assert {choose_device("auto", k, device_count=3) for k in range(3)} == {"cuda:0", "cuda:1", "cuda:2"}
    assert [choose_device("cuda", k, device_count=2) for k in range(3)] == ["cuda:0", "cuda:1", "cuda:0"]


def test_one_visible_gpu_per_job_under_slurm():
    # SLURM sets CUDA_VISIBLE_DEVICES to the job's GPU, so the job sees exactly one: cuda:0
    assert {choose_device("auto", k, device_count=1) for k in (0, 7, 31)} == {"cuda:0"}


def test_explicit_choices_are_kept():
    assert choose_device("cpu", 5, device_count=4) == "cpu"
    assert choose_device("cuda:2", 5, device_count=4) == "cuda:2"


@pytest.mark.parametrize("name,count,fragment", [
    ("cuda:4", 4, "sees 4 CUDA device(s)"),
    ("cuda:x", 2, "sees 2 CUDA device(s)"),
    ("cuda:0", 0, "no CUDA device"),
    ("cuda", 0, "no CUDA device"),
    ("tpu", 1, "use auto, cpu, cuda or cuda:N"),
])
def test_bad_device_is_one_sentence(name, count, fragment):
    with pytest.raises(ConfigError) as info:
        choose_device(name, 0, device_count=count)
    assert fragment in str(info.value) and f"`device={name}`" in str(info.value)


def test_job_index_reads_hydra_job_num():
    assert job_index(OmegaConf.create({"job": {"num": 3}})) == 3
    assert job_index(OmegaConf.create({"job": {"num": "???"}})) == 0  # a single run (hydra.mode=RUN)
    assert job_index(OmegaConf.create({"job": {}})) == 0
