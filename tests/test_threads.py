"""`threads` (alrun.launch.threads): auto gives each job its share of the cores (joblib's n_jobs, submitit's
cpus_per_task, Ray's num_cpus, else the process's affinity), OMP_NUM_THREADS caps it, a number is used as it is;
set once per job and recorded in job.json; at auto it stays out of the resume fingerprint."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from omegaconf import OmegaConf

from alrun.config.schema import RunSpec, run_spec_from_dict
from alrun.core.errors import ConfigError
from alrun.launch.threads import ThreadWatch, auto_threads, busy_elsewhere, busy_seconds, job_threads, thread_watch
from alrun.loop.job import spec_fingerprint
from tests.conftest import LAUNCHERS, THREADS, run_alrun

JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"


@pytest.mark.parametrize(("launcher", "cores", "expected"), [
    (None, 8, 8),  # the basic launcher: every core this process may use
    ({"_target_": JOBLIB, "n_jobs": 2}, 8, 4),
    ({"_target_": JOBLIB, "n_jobs": -1}, 8, 1),  # joblib's -1: one job per core
    ({"_target_": JOBLIB, "n_jobs": -2}, 8, 1),
    ({"_target_": JOBLIB, "n_jobs": 3}, 2, 1),  # never below one
    ({"_target_": "x.SlurmLauncher", "cpus_per_task": 6}, 64, 6),
    ({"_target_": "x.LocalLauncher", "cpus_per_task": 1}, 2, 1),
    ({"_target_": "x.RayLauncher", "num_cpus": 2}, 16, 2),
    ({"_target_": "x.RayLauncher", "num_cpus": 0.5}, 16, 1),
])
def test_auto_is_the_jobs_share_of_the_cores(launcher, cores, expected):
    assert auto_threads(launcher, {}, cores)[0] == expected


def test_omp_num_threads_caps_a_share_of_the_machine_not_an_allocation_and_a_number_is_taken_as_it_is():
    count, why = auto_threads({"_target_": JOBLIB, "n_jobs": 1}, {"OMP_NUM_THREADS": "1"}, 8)
    assert count == 1 and "OMP_NUM_THREADS=1" in why
    assert auto_threads(None, {"OMP_NUM_THREADS": "3"}, 8)[0] == 3
    # the submitting shell's OMP_NUM_THREADS does not shrink what SLURM (or Ray) allocated to the job
    assert auto_threads({"_target_": "x.SlurmLauncher", "cpus_per_task": 8}, {"OMP_NUM_THREADS": "1"}, 64)[0] == 8
    hydra_cfg = OmegaConf.create({"launcher": {"_target_": JOBLIB, "n_jobs": 1}})
    assert job_threads(3, hydra_cfg, {"OMP_NUM_THREADS": "1"}, 8)[0] == 3
    assert job_threads("auto", hydra_cfg, {}, 8)[0] == 8


def test_the_setting_is_validated_and_stays_out_of_the_fingerprint_at_auto():
    spec = RunSpec()
    assert spec.threads == "auto"
    assert spec_fingerprint(spec) != spec_fingerprint(replace(spec, threads=2))
    with pytest.raises(ConfigError, match="`threads=0` is not allowed"):
        run_spec_from_dict({"threads": 0})
    # at auto, the fingerprint of a spec is the one jobs written before the setting existed carry
    import hashlib
    from dataclasses import asdict

    from alrun.loop.job import _LATER_SETTINGS

    values = asdict(spec)
    for key in ("device", "deterministic", "threads"):
        values.pop(key)
    for section, later in _LATER_SETTINGS.items():
        scope = values[section] if section else values
        for key, default in later.items():
            if scope.get(key) == default:
                scope.pop(key)
    assert spec_fingerprint(spec) == hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()
                                                    ).hexdigest()[:16]


def test_the_job_records_its_threads(tmp_path):
    """joblib with n_jobs=2 on this machine's cores, OMP_NUM_THREADS=1 as the tests set it: 1 thread, in job.json
    and the job's log; threads=2 given: 2."""
    sweep = tmp_path / "sweep"
    run_alrun(["scale=smoke", "heuristic=random", "seed=0", "max_labelled=30", "threads=1,2",
               *LAUNCHERS["joblib"], f"hydra.sweep.dir={sweep}"], tmp_path, env=THREADS)
    for count in (1, 2):
        job = sweep / f"heuristic=random,seed=0,threads={count}"
        assert json.loads((job / "job.json").read_text())["threads"] == count
        assert f"torch threads: {count} (threads setting)" in (job / "cli.log").read_text()


STAT = """cpu  900 50 300 5000 20 10 5 7 0 0
cpu0 400 50 100 2500 10 5 5 3 0 0
cpu1 500 0 200 2500 10 5 0 4 0 0
cpu2 100 100 100 100 0 0 0 0 0 0
intr 12345
"""


def test_busy_seconds_count_user_system_irq_and_steal_of_the_given_cores_not_nice_idle_or_iowait():
    tick = __import__("os").sysconf("SC_CLK_TCK")
    assert busy_seconds([0], STAT) == pytest.approx((400 + 100 + 5 + 5 + 3) / tick)
    assert busy_seconds([0, 1], STAT) == pytest.approx((513 + 500 + 200 + 5 + 0 + 4) / tick)
    assert busy_seconds([7], STAT) is None  # a core /proc/stat does not name


@pytest.mark.parametrize(("launcher", "cores", "busy", "expected"), [
    (None, 2, 0.1, 2),  # a quiet machine: every core
    (None, 2, 2.0, 1),  # two busy loops on 2 cores: one thread, never none
    (None, 8, 3.0, 5),
    (None, 8, 2.6, 5),  # rounded: a core 60% busy with other work is not free
    ({"_target_": JOBLIB, "n_jobs": 2}, 16, 6.0, 8),  # a share of 8 fits in the 10 cores left
    ({"_target_": JOBLIB, "n_jobs": 2}, 16, 12.0, 4),
    ({"_target_": "x.SlurmLauncher", "cpus_per_task": 6}, 64, 63.0, 6),  # an allocation is the job's own
    ({"_target_": "x.RayLauncher", "num_cpus": 4}, 16, 16.0, 4),
])
def test_auto_leaves_the_cores_other_work_keeps_busy_on_a_shared_machine(launcher, cores, busy, expected):
    count, why = auto_threads(launcher, {}, cores, busy)
    assert count == expected
    assert ("busy with other work" in why) == (expected < auto_threads(launcher, {}, cores, 0.0)[0])


def test_busy_elsewhere_sees_a_busy_loop_and_not_its_own_work():
    """Measured on this machine: a spinning process beside it shows as about one busy core; this process's own
    work during the look does not count."""
    import os
    import subprocess
    import sys
    import threading
    import time

    if not os.path.exists("/proc/stat") or len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs Linux's /proc/stat and 2 cores")

    def spin(stop):  # this process's own work: left out
        while not stop.is_set():
            pass

    def looks() -> tuple[float, float, float]:
        """(quiet, with this process spinning, beside a busy loop), in busy cores of other work."""
        quiet, stop = busy_elsewhere(0.3), threading.Event()
        own = threading.Thread(target=spin, args=(stop,))
        own.start()
        try:
            with_own = busy_elsewhere(0.3)
        finally:
            stop.set()
            own.join()
        burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            time.sleep(0.2)
            beside = busy_elsewhere(0.3)
        finally:
            burner.kill()
            burner.wait()
        return quiet, with_own, beside

    # the suite's other workers (pytest-xdist) come and go beside this test: a look counts them too, so the three
    # looks are taken again (up to 5 times) until the other work held still over them; a look that counted this
    # process's own work or missed the busy loop fails every time
    tries = []
    for _ in range(5):
        quiet, with_own, beside = looks()
        tries.append((round(quiet, 2), round(with_own, 2), round(beside, 2)))
        if quiet <= 1.3 and with_own < quiet + 0.6 and beside > quiet + 0.5:
            break
    else:
        if all(q > 1.3 for q, _, _ in tries):
            pytest.skip(f"other work kept more than 1.3 cores busy at every look: {tries}")
        pytest.fail(f"(quiet, own work, beside a busy loop) never told them apart: {tries}")


class FakeMachine:
    """/proc/stat's busy seconds, this process's CPU seconds and the clock, moved by hand."""

    def __init__(self):
        self.busy, self.own, self.now = 0.0, 0.0, 0.0

    def step(self, seconds: float, others: float, own: float) -> None:
        """SECONDS pass with OTHERS cores busy with other work and OWN with this job."""
        self.now += seconds
        self.own += own * seconds
        self.busy += (others + own) * seconds

    def read(self):
        return self.busy, self.own, self.now


def test_the_watch_follows_load_that_starts_and_ends_mid_job_between_one_thread_and_the_share():
    machine, applied = FakeMachine(), []

    def apply(count):
        applied.append(count)
        return count

    watch = ThreadWatch(2, 2, cpus=[0, 1], read=machine.read, apply=apply)
    machine.step(3.0, others=0.0, own=2.0)  # a quiet step: the share stays
    watch.on_step({"step": 0}, 10)
    machine.step(3.0, others=1.8, own=0.2)  # two busy loops start: 2 threads wait for each other
    watch.on_step({"step": 1}, 10)
    assert applied == [1] and watch.count == 1 and watch.changes == [(2, 1)]
    machine.step(3.0, others=1.3, own=0.7)  # still there: one thread, no move (its own share is left out)
    watch.on_step({"step": 2}, 10)
    machine.step(0.1, others=0.0, own=1.0)  # a step too short to tell (a resumed job's replayed rows): no look
    watch.on_step({"step": 3}, 10)
    assert applied == [1]
    machine.step(3.0, others=0.0, own=1.0)  # the loops ended: back to the share, never above it
    watch.on_step({"step": 4}, 10)
    assert applied == [1, 2] and watch.changes == [(2, 1), (5, 2)]


def test_there_is_a_watch_only_where_auto_takes_a_share_of_this_machine_of_more_than_one_core():
    share = OmegaConf.create({"launcher": {"_target_": JOBLIB, "n_jobs": 1}})
    assert thread_watch(2, share, 2) is None  # a number: the user's
    assert thread_watch("auto", OmegaConf.create({"launcher": {"_target_": "x.SlurmLauncher",
                                                                 "cpus_per_task": 4}}), 4) is None
    assert thread_watch("auto", OmegaConf.create({"launcher": {"_target_": JOBLIB, "n_jobs": 64}}), 1) is None
    import os

    if len(os.sched_getaffinity(0)) > 1 and "OMP_NUM_THREADS" not in os.environ:
        watch = thread_watch("auto", share, 1)
        assert watch is not None and watch.ceiling == len(os.sched_getaffinity(0))
