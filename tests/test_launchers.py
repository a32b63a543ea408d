"""The same sweep through Hydra's joblib and submitit_local launchers, for real, at scale=smoke: the
per-job steps.csv (timings aside) and the table equal the basic launcher's (tests/conftest.py's
smoke_reference)."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.conftest import THREADS, run_alrun, steps_without_timings

JOBS = ["heuristic=bald,seed=0", "heuristic=bald,seed=1"]
LAUNCHERS = {
    # loky worker processes, two at a time
    "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
    # one process per job, started by submitit as on a cluster; the launcher waits for all of them
    "submitit_local": ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10",
                       "hydra.launcher.cpus_per_task=1"],
}


@pytest.fixture(scope="module", params=sorted(LAUNCHERS))
def launched(request, tmp_path_factory):
    cwd = tmp_path_factory.mktemp(request.param)
    sweep = cwd / "sweep"
    proc = run_alrun(["scale=smoke", "heuristic=bald", "seed=0,1", *LAUNCHERS[request.param],
                      f"hydra.sweep.dir={sweep}"], cwd, env=THREADS)
    return request.param, sweep, proc


def test_the_launcher_ran_the_jobs(launched):
    name, sweep, proc = launched
    log = proc.stdout + proc.stderr
    if name == "joblib":
        assert "Joblib.Parallel(n_jobs=2" in log
    else:
        assert "Submitit 'local' sweep output dir" in log
        assert len([p for p in (sweep / ".submitit").iterdir() if p.name.isdigit()]) == 2
    for job in JOBS:
        assert (sweep / job / "done").exists() and not (sweep / job / "failed").exists()


def test_steps_equal_the_basic_launcher(launched, smoke_reference):
    _, sweep, _ = launched
    for job in JOBS:
        pd.testing.assert_frame_equal(steps_without_timings(sweep / job / "steps.csv"),
                                      steps_without_timings(smoke_reference / job / "steps.csv"))


def test_table_equals_the_basic_launcher(launched, smoke_reference):
    _, sweep, _ = launched
    # written by the report callback on the launching process, after every job finished
    table = pd.read_csv(sweep / "table.csv")
    pd.testing.assert_frame_equal(table, pd.read_csv(smoke_reference / "table.csv"))
    assert (table["n"] == 2).all()
    assert "(2)" in (sweep / "table.md").read_text()
