"""GPU claiming with a fake number of GPUs, and `deterministic=true` (issue 16).

Jobs are threads here: each opens its own lock file descriptor, and `flock` locks belong to the open
file, so threads contend for them exactly as the processes of a joblib sweep do (one test uses a
second process to show that too).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from alrun.config.schema import RunSpec, run_spec_from_dict
from alrun.core.devices import CUBLAS_DETERMINISTIC, claimed_device, job_determinism
from alrun.core.errors import ConfigError
from alrun.loop.job import spec_fingerprint

pytestmark = pytest.mark.usefixtures("test_deadline")  # no test here can hang a run (conftest)

LIVENESS_S = 30  # only a bound on how long a broken test may hang; no assertion depends on time


@pytest.fixture(autouse=True)
def polling_deadline(monkeypatch):
    """No claim polls forever: a claim that still waits after LIVENESS_S fails the test instead (on a CUDA
    host as here)."""
    import time
    import types

    import alrun.core.devices

    deadline = time.monotonic() + LIVENESS_S

    def sleep(seconds: float) -> None:
        if time.monotonic() > deadline:
            raise AssertionError(f"a GPU claim was still waiting after {LIVENESS_S} s")
        time.sleep(seconds)

    monkeypatch.setattr(alrun.core.devices, "time", types.SimpleNamespace(sleep=sleep, monotonic=time.monotonic))


def _names(i: int) -> str:
    return f"GPU-fake-{i}"


class Ledger:
    """Which job holds which GPU, checked at every claim: never two running jobs on one GPU."""

    def __init__(self, count: int) -> None:
        self.lock = threading.Lock()
        self.holders: dict[int, int | None] = dict.fromkeys(range(count))
        self.history: list[tuple[int, int]] = []  # (job, gpu) in claim order

    def enter(self, job: int, device: str) -> None:
        gpu = int(device.split(":")[1])
        with self.lock:
            assert self.holders[gpu] is None, f"job {job} got cuda:{gpu} while job {self.holders[gpu]} runs there"
            self.holders[gpu] = job
            self.history.append((job, gpu))

    def leave(self, job: int, device: str) -> None:
        with self.lock:
            self.holders[int(device.split(":")[1])] = None


def test_jobs_finishing_out_of_order_never_share_a_gpu_and_take_the_idle_one(tmp_path):
    """The issue's case: 2 GPUs, jobs 0 and 1 start; job 1 finishes first; job 2 must get cuda:1 (the idle
    one), not cuda:0 (2 mod 2) where job 0 still runs."""
    ledger = Ledger(2)
    release = {k: threading.Event() for k in range(3)}
    started = {k: threading.Event() for k in range(3)}

    def job(k: int) -> str:
        with claimed_device("auto", k, device_count=2, lock_dir=tmp_path, identity=_names, poll_s=0.01) as device:
            ledger.enter(k, device)
            started[k].set()
            assert release[k].wait(LIVENESS_S)
            ledger.leave(k, device)
            return device

    with ThreadPoolExecutor(3) as pool:
        first = [pool.submit(job, 0), pool.submit(job, 1)]
        assert started[0].wait(LIVENESS_S) and started[1].wait(LIVENESS_S)
        third = pool.submit(job, 2)  # both GPUs are held: job 2 waits
        release[1].set()  # job 1 finishes first, job 0 keeps running
        assert first[1].result(LIVENESS_S) == "cuda:1"
        assert started[2].wait(LIVENESS_S)
        assert ledger.holders == {0: 0, 1: 2}  # job 2 runs on the GPU job 1 left, beside job 0
        release[0].set()
        release[2].set()
        assert [first[0].result(LIVENESS_S), third.result(LIVENESS_S)] == ["cuda:0", "cuda:1"]


def test_a_sweep_with_as_many_workers_as_gpus_never_waits_and_never_shares(tmp_path, caplog):
    """Ten jobs of uneven length on 3 fake GPUs through 3 workers (joblib's n_jobs = number of GPUs):
    a worker starts a job only after its last one ended, so a GPU is always free for it, and no job
    ever waits, however the jobs finish."""
    count, ledger = 3, Ledger(3)
    # job k's length in scheduler turns: long jobs early, so later jobs overtake them
    turns = [5, 1, 1, 4, 1, 2, 1, 1, 3, 1]
    gates = [threading.Semaphore(0) for _ in turns]

    def job(k: int) -> str:
        with claimed_device("auto", k, device_count=count, lock_dir=tmp_path, identity=_names,
                            poll_s=0.01) as device:
            ledger.enter(k, device)
            for _ in range(turns[k]):
                assert gates[k].acquire(timeout=LIVENESS_S)
            ledger.leave(k, device)
            return device

    caplog.set_level("INFO", logger="alrun")
    with ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(job, k) for k in range(len(turns))]
        while not all(f.done() for f in futures):
            for gate in gates:  # one turn for every job, running or not yet started
                gate.release()
            threading.Event().wait(0.005)
        devices = [f.result(LIVENESS_S) for f in futures]
    assert len(ledger.history) == len(turns) and set(devices) <= {"cuda:0", "cuda:1", "cuda:2"}
    assert "waiting" not in caplog.text


def test_on_free_gpus_job_k_starts_on_its_numbered_gpu(tmp_path):
    """Nothing held: job k claims cuda:(k mod count), as the spreading did before the claiming. (The sweep
    above cannot check this: which worker thread reaches its claim first is up to the scheduler.)"""
    for k in range(5):
        with claimed_device("auto", k, device_count=3, lock_dir=tmp_path, identity=_names) as device:
            assert device == f"cuda:{k % 3}"


def test_more_jobs_than_gpus_wait_and_then_run_one_per_gpu(tmp_path, monkeypatch, caplog):
    """Six jobs at once on 2 fake GPUs: the first two hold theirs until another job is seen waiting, then
    every job runs, one per GPU at a time."""
    import alrun.core.devices

    count, ledger, n_jobs = 2, Ledger(2), 6
    someone_waits = threading.Event()
    real_sleep = alrun.core.devices.time.sleep

    def sleep(seconds):  # claimed_device sleeps only when every GPU is held
        someone_waits.set()
        real_sleep(seconds)

    monkeypatch.setattr(alrun.core.devices.time, "sleep", sleep)

    def job(k: int) -> str:
        with claimed_device("auto", k, device_count=count, lock_dir=tmp_path, identity=_names,
                            poll_s=0.005) as device:
            ledger.enter(k, device)
            assert someone_waits.wait(LIVENESS_S)
            ledger.leave(k, device)
            return device

    caplog.set_level("INFO", logger="alrun")
    with ThreadPoolExecutor(n_jobs) as pool:
        devices = [f.result(LIVENESS_S) for f in [pool.submit(job, k) for k in range(n_jobs)]]
    assert len(ledger.history) == n_jobs and set(devices) == {"cuda:0", "cuda:1"}
    assert "waiting for one to be released" in caplog.text


def test_a_gpu_held_by_another_process_is_skipped(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
         "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.readline()",
         str(tmp_path / "gpu-GPU-fake-0.lock")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with claimed_device("auto", 0, device_count=2, lock_dir=tmp_path, identity=_names) as device:
            assert device == "cuda:1"
    finally:
        holder.stdin.close()
        holder.wait(LIVENESS_S)
    # the process ended, so the kernel released its lock: cuda:0 is free again
    with claimed_device("auto", 0, device_count=2, lock_dir=tmp_path, identity=_names) as device:
        assert device == "cuda:0"


def test_the_claim_ends_with_the_job_even_when_it_fails(tmp_path):
    with pytest.raises(RuntimeError):
        with claimed_device("auto", 0, device_count=1, lock_dir=tmp_path, identity=_names) as device:
            assert device == "cuda:0"
            raise RuntimeError("the job crashed")
    with claimed_device("auto", 0, device_count=1, lock_dir=tmp_path, identity=_names) as device:
        assert device == "cuda:0"


@pytest.mark.parametrize("name,count", [("cpu", 2), ("cuda:1", 2), ("auto", 0), ("cuda", 0), ("tpu", 2)])
def test_nothing_is_claimed_where_the_job_names_its_device_or_has_no_gpu(tmp_path, name, count):
    with claimed_device(name, 0, device_count=count, lock_dir=tmp_path, identity=_names) as device:
        assert device is None
    assert not list(tmp_path.iterdir())


def test_jobs_that_each_see_one_gpu_as_cuda0_do_not_share_a_lock(tmp_path, monkeypatch):
    # SLURM: every job sees its own GPU as cuda:0; the lock is named after the physical GPU. Here by its
    # CUDA_VISIBLE_DEVICES entry, the name used where torch gives no UUID: forced, so that on a CUDA host
    # (where both claims would get the one real GPU's UUID) the test checks the same thing and cannot wait
    from alrun.core.devices import gpu_identity

    def no_uuid(index):
        raise RuntimeError("no CUDA device properties here")

    monkeypatch.setattr(torch.cuda, "get_device_properties", no_uuid)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    with claimed_device("auto", 0, device_count=1, lock_dir=tmp_path, identity=gpu_identity) as a:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5")
        with claimed_device("auto", 0, device_count=1, lock_dir=tmp_path, identity=gpu_identity) as b:
            assert a == b == "cuda:0"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu-3.lock", "gpu-5.lock"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device: the UUIDs of real GPUs")
def test_on_a_cuda_host_each_visible_gpu_has_its_own_uuid():
    from alrun.core.devices import gpu_identity

    names = [gpu_identity(i) for i in range(torch.cuda.device_count())]
    assert len(set(names)) == len(names) and all(len(n) >= 16 for n in names)


def test_the_lock_folder_is_one_path_per_machine_whatever_tmpdir(monkeypatch, tmp_path):
    import tempfile

    from alrun.core.devices import GPU_LOCK_DIR, gpu_lock_dir

    monkeypatch.delenv("ALRUN_GPU_LOCK_DIR", raising=False)
    paths = set()
    for job in ("job1", "job2"):  # SLURM sets a TMPDIR per job
        monkeypatch.setenv("TMPDIR", str(tmp_path / job))
        monkeypatch.setattr(tempfile, "tempdir", None)
        paths.add(gpu_lock_dir())
    assert paths == {GPU_LOCK_DIR} and GPU_LOCK_DIR == Path("/tmp/alrun-gpu-locks")
    monkeypatch.setenv("ALRUN_GPU_LOCK_DIR", str(tmp_path / "mine"))
    assert gpu_lock_dir() == tmp_path / "mine"


def test_the_lock_folder_is_made_for_every_user_and_another_users_lock_file_is_used(tmp_path):
    from alrun.core.devices import shared_folder

    folder = tmp_path / "locks"
    shared_folder(folder)
    assert folder.stat().st_mode & 0o7777 == 0o1777
    (folder / "gpu-GPU-fake-0.lock").touch(mode=0o444)  # made by another user: readable, not writable
    with claimed_device("auto", 0, device_count=1, lock_dir=folder, identity=_names) as device:
        assert device == "cuda:0"
        with claimed_device("auto", 0, device_count=2, lock_dir=folder, identity=_names) as other:
            assert other == "cuda:1"  # the read-only lock file still holds cuda:0 (flock needs no write access)


def test_cli_claims_the_gpu_around_the_job(monkeypatch, tmp_path):
    """`task` holds the claim while `run_job` runs, and passes the claimed device down."""
    from omegaconf import OmegaConf

    import alrun.cli
    import alrun.core.devices

    monkeypatch.setattr(alrun.core.devices.torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("ALRUN_GPU_LOCK_DIR", str(tmp_path))
    monkeypatch.setattr(alrun.core.devices, "gpu_identity", _names)
    monkeypatch.setattr(alrun.cli, "HydraConfig", type("H", (), {"get": staticmethod(
        lambda: OmegaConf.create({"job": {"num": 1}}))}))
    seen = {}

    def run_job(cfg, claimed):
        seen["claimed"] = claimed
        # while the job runs its GPU is held: another job is sent to the other one
        with claimed_device("auto", 1, device_count=2, identity=_names) as other:
            seen["other"] = other
        return {"status": "done"}

    monkeypatch.setattr(alrun.cli, "run_job", run_job)
    assert alrun.cli.task(OmegaConf.create({"device": "auto"})) == {"status": "done"}
    assert seen == {"claimed": "cuda:1", "other": "cuda:0"}


# --- deterministic=true -------------------------------------------------------------------------


@pytest.fixture
def restore_determinism(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    state = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    yield
    torch.use_deterministic_algorithms(state[0], warn_only=state[1])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = state[2], state[3]


def test_deterministic_composes_and_defaults_to_false():
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from alrun.cli import config_dir

    with initialize_config_dir(config_dir(), version_base="1.3"):
        plain = OmegaConf.to_container(compose("config"), resolve=True)
        on = OmegaConf.to_container(compose("config", overrides=["deterministic=true", "scale=paper"]), resolve=True)
    assert run_spec_from_dict(plain).deterministic is False
    spec = run_spec_from_dict(on)
    assert spec.deterministic is True and spec.model.name == "vgg16"
    # the setting changes how numbers are computed, not the study: a run may resume with it switched
    assert spec_fingerprint(spec) == spec_fingerprint(run_spec_from_dict({**on, "deterministic": False}))
    with pytest.raises(ConfigError, match="`deterministic=maybe`"):
        RunSpec(deterministic="maybe")


def _flags() -> tuple[bool, bool, bool]:
    return (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
            torch.backends.cudnn.benchmark)


def test_deterministic_sets_the_torch_flags_for_its_block_only(restore_determinism, monkeypatch):
    # CUDA not yet in use, as at a job's start on a fresh process (on a CUDA host an earlier test may have used it)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = False, True
    with job_determinism(False):  # leaves them alone
        assert _flags() == (False, False, True)
    with job_determinism(True):
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
        assert _flags() == (True, True, False)
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == CUBLAS_DETERMINISTIC
    assert _flags() == (False, False, True)  # restored: the next job of the process is not deterministic
    with pytest.raises(RuntimeError), job_determinism(True):
        raise RuntimeError("the job failed")
    assert _flags() == (False, False, True)  # restored after a failure too


def test_deterministic_keeps_a_users_cublas_setting(restore_determinism, monkeypatch):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    with job_determinism(True):
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_a_job_that_finds_cuda_in_use_without_the_cublas_setting_says_so(restore_determinism, monkeypatch, caplog):
    # cuBLAS reads CUBLAS_WORKSPACE_CONFIG once per process: set after CUDA is in use it may not take effect
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    caplog.set_level("WARNING", logger="alrun")
    with job_determinism(True):
        assert torch.are_deterministic_algorithms_enabled()
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    lines = [r.getMessage() for r in caplog.records if "CUBLAS_WORKSPACE_CONFIG" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0] and f"CUBLAS_WORKSPACE_CONFIG={CUBLAS_DETERMINISTIC}" in lines[0]


@pytest.mark.parametrize("argv,asks", [
    (["deterministic=true"], True), (["deterministic=false,true"], True), (["+deterministic=True"], True),
    (["deterministic=false"], False), ([], False), (["heuristic=bald", "seed=0,1"], False),
    (["study=deterministic=true"], False),
])
def test_the_entry_point_sees_determinism_on_the_command_line(argv, asks):
    from alrun.cli import asks_for_determinism

    assert asks_for_determinism(argv) is asks


def test_the_entry_points_cublas_setting_is_the_jobs():
    import inspect

    import alrun.cli

    assert f'"{CUBLAS_DETERMINISTIC}"' in inspect.getsource(alrun.cli.main)


def test_a_deterministic_job_sets_the_flags_for_its_work_and_restores_them(restore_determinism, tmp_path):
    from alrun.config.schema import DatasetSpec, ModelSpec, TrainSpec
    from alrun.loop.job import ActiveLearningJob

    torch.use_deterministic_algorithms(False)
    spec = RunSpec(device="cpu", deterministic=True, max_labelled=20, initial_labelled=20, mc_samples=2,
                   dataset=DatasetSpec(max_train=100, max_test=50), model=ModelSpec(hidden=8),
                   train=TrainSpec(epochs=1))
    seen = []
    rows = ActiveLearningJob(spec, Path(tmp_path)).run(lambda row, total: seen.append(
        torch.are_deterministic_algorithms_enabled()))
    assert seen == [True] and len(rows) == 1
    assert not torch.are_deterministic_algorithms_enabled()


RECORDING_NET = """
import os

import torch
from torch import nn


def net(n_classes, input_shape):
    with open(os.environ["RECORD"], "a") as f:
        f.write(f"{torch.are_deterministic_algorithms_enabled()} {os.environ.get('CUBLAS_WORKSPACE_CONFIG')}\\n")
    d = int(torch.tensor(input_shape).prod())
    return nn.Sequential(nn.Flatten(), nn.Linear(d, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, n_classes))
"""


def test_a_basic_sweep_deterministic_then_not_leaves_the_second_job_unaffected(restore_determinism, tmp_path):
    # the basic launcher runs both jobs in one process: what the second job sees is what the first left
    from tests.conftest import REPO, THREADS, run_alrun

    (tmp_path / "recnet.py").write_text(RECORDING_NET)
    record = tmp_path / "record.txt"
    env = {**THREADS, "PYTHONPATH": os.pathsep.join([str(REPO), str(tmp_path)]), "RECORD": str(record)}
    run_alrun(["scale=smoke", "max_labelled=30", "heuristic=random", "seed=0", "model=custom",
               "model._target_=recnet.net", "deterministic=true,false", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
              tmp_path, env=env)
    assert record.read_text().splitlines() == [f"True {CUBLAS_DETERMINISTIC}", f"False {CUBLAS_DETERMINISTIC}"]


def test_without_locks_the_job_runs_on_its_numbered_gpu_and_says_so(tmp_path, monkeypatch, caplog):
    import contextlib

    import alrun.core.devices

    @contextlib.contextmanager
    def unavailable(path):  # no fcntl (Windows), or a lock folder that cannot be written
        yield None

    monkeypatch.setattr(alrun.core.devices, "exclusive_nowait", unavailable)
    caplog.set_level("WARNING", logger="alrun")
    with claimed_device("auto", 3, device_count=2, lock_dir=tmp_path, identity=_names) as device:
        assert device == "cuda:1"
    assert "GPU locks cannot be used" in caplog.text
