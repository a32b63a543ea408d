"""Sweeps on a real SLURM cluster (`hydra/launcher=slurm`), at scale=smoke: the same results as the basic launcher,
and a job requeued (preemption, time limit), cancelled, or left running by a launching process that was killed.

They run where `sinfo` answers (`bash .ci/slurm-up.sh` starts a single-node cluster; .ci/run does) and skip
with a reason elsewhere. Jobs are held at a chosen step by tests/slurm_gate.py (a heuristic with BALD's scores),
so every fault hits a job that has finished steps and still has steps to run, without any timing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import REPO, THREADS, run_alrun, steps_without_timings


def _cluster_answers() -> str | None:
    """None when a SLURM cluster answers here, else why the tests skip."""
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return "no SLURM here (sbatch not found); `bash .ci/slurm-up.sh` starts a single-node cluster"
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"sinfo does not answer ({exc})"
    states = proc.stdout.split()
    if proc.returncode != 0 or not any(s.rstrip("*") in ("idle", "mix", "alloc") for s in states):
        return f"no SLURM node up (sinfo: {proc.stdout.strip() or proc.stderr.strip()})"
    try:
        import hydra_plugins.hydra_submitit_launcher  # noqa: F401
    except ImportError:
        return "hydra-submitit-launcher is not installed (the `cluster` extra)"
    return None


REASON = _cluster_answers()
pytestmark = [pytest.mark.slurm, pytest.mark.skipif(REASON is not None, reason=REASON or "")]

# the documented SLURM command (docs/how-to/clusters.md) with this cluster's partition and no GPU; 1 CPU and 1 GB
# per job so two jobs run at once on a 2-core machine
SLURM = ["hydra/launcher=slurm", "hydra.launcher.partition=debug", "hydra.launcher.gpus_per_node=0",
         "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1"]
GATED = ["scale=smoke", "heuristic=custom", "heuristic._target_=tests.slurm_gate.score"]
WAIT_S = 240  # the longest any wait below polls before the test fails (a job that never comes)
ENV = {**THREADS, "PYTHONPATH": str(REPO)}  # the jobs import tests.slurm_gate


def gated(gate: Path, seeds: str) -> list[str]:
    return [*GATED, f"++heuristic.gate={gate}", f"seed={seeds}"]


def folder(seed: int) -> str:
    return f"heuristic=custom,seed={seed}"


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    """`alrun ARGS` in the background (its output in cwd/alrun.log)."""
    env = {"OMP_NUM_THREADS": "1", **os.environ, "PYTHONUNBUFFERED": "1", "ALRUN_DATA_DIR": str(cwd / "data"), **ENV}
    log = open(cwd / "alrun.log", "w")  # noqa: SIM115 - closed with the process by finish()
    return subprocess.Popen([sys.executable, "-m", "alrun", *args], cwd=cwd, env=env, stdout=log,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def finish(proc: subprocess.Popen, cwd: Path) -> str:
    """Wait for a background alrun; its output."""
    proc.wait(timeout=600)
    return (cwd / "alrun.log").read_text()


def wait_for(what: str, check, seconds: float = WAIT_S):
    """Poll CHECK until it returns something true; fail naming WHAT after SECONDS."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"waited {seconds:.0f} s for {what}")


def read(path: Path) -> str | None:
    return path.read_text() if path.exists() and path.read_text() else None


def hold(gate: Path, *seeds: int) -> None:
    gate.mkdir(parents=True, exist_ok=True)
    (gate / "hold").write_text("".join(f"{folder(s)}\n" for s in seeds))


def slurm_state(job_id: str) -> str:
    """The job's state as squeue shows it ("" once it has left the queue)."""
    proc = subprocess.run(["squeue", "-h", "-o", "%T", "-j", job_id], capture_output=True, text=True)
    return proc.stdout.strip()


def same_steps(sweep: Path, reference: Path, seeds) -> None:
    """The gated jobs' steps equal the basic launcher's `heuristic=bald` jobs' (tests/slurm_gate.py scores as BALD)."""
    for seed in seeds:
        pd.testing.assert_frame_equal(steps_without_timings(sweep / folder(seed) / "steps.csv"),
                                      steps_without_timings(reference / f"heuristic=bald,seed={seed}" / "steps.csv"))


def same_table(sweep: Path, reference: Path) -> None:
    """The sweep's table equals the reference's (the heuristic's name aside: BALD as a custom heuristic here)."""
    def table(path: Path) -> pd.DataFrame:
        return pd.read_csv(path / "table.csv").drop(columns=["heuristic"])
    pd.testing.assert_frame_equal(table(sweep), table(reference))


def array_tasks(sweep: Path) -> list[str]:
    """The SLURM array tasks submitit ran for the sweep (its folders .submitit/<array>_<task>)."""
    return sorted(p.name for p in (sweep / ".submitit").iterdir() if re.fullmatch(r"\d+_\d+", p.name))


def job_log(sweep: Path, job_id: str) -> str:
    """A SLURM job's stderr, as submitit names it (all its attempts: a requeued job appends to it)."""
    return (sweep / ".submitit" / job_id / f"{job_id}_0_log.err").read_text()


def each_step_logged_once(sweep: Path, jobs: list[str]) -> None:
    """The sweep's MLflow store holds one finished child run per job whose test accuracy has each step of the
    job's steps.csv once."""
    from mlflow.tracking import MlflowClient

    known = json.loads((sweep / "mlflow_sweep.json").read_text())
    client = MlflowClient(tracking_uri=known["uri"])
    runs = client.search_runs([known["experiment_id"]], filter_string=f"tags.mlflow.parentRunId = '{known['run_id']}'")
    assert sorted(r.info.run_name for r in runs) == sorted(jobs)
    for run in runs:
        assert run.info.status == "FINISHED"
        steps = pd.read_csv(sweep / run.info.run_name / "steps.csv")
        logged = sorted(m.step for m in client.get_metric_history(run.info.run_id, "test_acc"))
        assert logged == sorted(steps["labelled"].astype(int))


def test_slurm_sweep_equals_the_basic_launcher(tmp_path, smoke_reference):
    sweep = tmp_path / "sweep"
    args = ["scale=smoke", "heuristic=bald", "seed=0,1", *SLURM, f"hydra.sweep.dir={sweep}"]
    proc = run_alrun(args, tmp_path, env=THREADS)
    assert "Submitit 'slurm' sweep output dir" in proc.stdout + proc.stderr
    array = array_tasks(sweep)
    assert len(array) == 2 and len({name.split("_")[0] for name in array}) == 1  # one job array of two tasks
    for job in ("heuristic=bald,seed=0", "heuristic=bald,seed=1"):
        assert (sweep / job / "done").exists()
        pd.testing.assert_frame_equal(steps_without_timings(sweep / job / "steps.csv"),
                                      steps_without_timings(smoke_reference / job / "steps.csv"))
    pd.testing.assert_frame_equal(pd.read_csv(sweep / "table.csv"), pd.read_csv(smoke_reference / "table.csv"))
    # the same command again: every job has finished, none is submitted
    again = run_alrun(args, tmp_path, env=THREADS)
    assert "2 of 2 jobs finished earlier" in again.stdout + again.stderr
    assert array_tasks(sweep) == array


def test_requeued_and_timed_out_jobs_resume_and_the_report_is_written_once(tmp_path, smoke_reference):
    """Two held jobs given 2 minutes each. Seed 0: `scontrol requeue` (what preemption does). Seed 1: left to its
    time limit: SLURM signals it (USR2, `signal_delay_s` ahead give or take SLURM's 60 s resolution, hence not a
    1-minute limit) and submitit requeues it. Both run again, resume after their last finished step, and end with
    the steps of uninterrupted jobs; the launching process waits for them and writes the report once. Tracked in
    MLflow (when installed): one child run per job, each step logged once despite the requeues."""
    gate, sweep = tmp_path / "gate", tmp_path / "sweep"
    hold(gate, 0, 1)
    limit = ["hydra.launcher.timeout_min=2", "hydra.launcher.signal_delay_s=30"]
    tracked = ["tracker=mlflow"] if importlib.util.find_spec("mlflow") else []
    proc = start([*gated(gate, "0,1"), *SLURM, *limit, *tracked, f"hydra.sweep.dir={sweep}"], tmp_path)
    preempted = wait_for("job seed=0 to reach its held step", lambda: read(gate / f"{folder(0)}.waiting"))
    steps_before = len(pd.read_csv(sweep / folder(0) / "steps.csv"))
    assert steps_before >= 1  # it has finished steps to resume after
    subprocess.run(["scontrol", "requeue", preempted], check=True)
    timed_out = wait_for("job seed=1 to reach its held step", lambda: read(gate / f"{folder(1)}.waiting"))
    out = finish(proc, tmp_path)
    assert proc.returncode == 0, out
    resumed = f"resuming {sweep / folder(0)} after {steps_before} finished steps"
    assert resumed in (sweep / folder(0) / "cli.log").read_text()
    assert "this job is timed-out" in job_log(sweep, timed_out)  # submitit caught SLURM's signal and requeued it
    assert "resuming" in (sweep / folder(1) / "cli.log").read_text()
    same_steps(sweep, smoke_reference, [0, 1])
    assert out.count("Results in") == 1
    same_table(sweep, smoke_reference)
    if tracked:
        each_step_logged_once(sweep, [folder(0), folder(1)])


def test_cancelled_job_is_reported_and_the_rerun_submits_only_it(tmp_path, smoke_reference):
    """`scancel` of one job of a 4-job sweep: the other three finish, the report names the cancelled one, exit 1;
    the same command again submits only that job, which resumes."""
    gate, sweep = tmp_path / "gate", tmp_path / "sweep"
    hold(gate, 1)
    args = [*gated(gate, "0,1,2,3"), *SLURM, f"hydra.sweep.dir={sweep}"]
    proc = start(args, tmp_path)
    job_id = wait_for("job seed=1 to reach its held step", lambda: read(gate / f"{folder(1)}.waiting"))
    subprocess.run(["scancel", job_id], check=True)
    out = finish(proc, tmp_path)
    assert proc.returncode == 1, out
    for seed in (0, 2, 3):
        assert (sweep / folder(seed) / "done").exists()
    assert not (sweep / folder(1) / "done").exists() and (sweep / folder(1) / "failed").exists()
    error = (sweep / folder(1) / "error.txt").read_text()
    assert f"SLURM job {job_id} ended without finishing (CANCELLED" in error
    assert folder(1) in out.split("Results in")[0]  # the report names it
    (gate / "hold").write_text("")
    again = start(args, tmp_path)
    out = finish(again, tmp_path)
    assert again.returncode == 0, out
    assert "3 of 4 jobs finished earlier" in out and "#1 : " in out
    assert "#0 : " not in out and "#2 : " not in out and "#3 : " not in out
    assert "resuming" in (sweep / folder(1) / "cli.log").read_text()
    assert not (sweep / folder(1) / "failed").exists()
    same_steps(sweep, smoke_reference, [0, 1])
    assert (pd.read_csv(sweep / "table.csv")["n"] == 4).all()


def test_killed_launcher_leaves_the_jobs_running_and_the_rerun_waits_for_them(tmp_path, smoke_reference):
    """The launching process SIGKILLed mid-sweep: its jobs go on; `python -m alrun.report` aggregates what
    finished; the same command again waits for the job still in SLURM (not a second copy of it) and reports."""
    gate, sweep = tmp_path / "gate", tmp_path / "sweep"
    hold(gate, 1)
    args = [*gated(gate, "0,1"), *SLURM, f"hydra.sweep.dir={sweep}"]
    proc = start(args, tmp_path)
    job_id = wait_for("job seed=1 to reach its held step", lambda: read(gate / f"{folder(1)}.waiting"))
    os.killpg(proc.pid, signal.SIGKILL)
    finish(proc, tmp_path)
    wait_for("job seed=0 to finish after the launcher was killed", lambda: (sweep / folder(0) / "done").exists())
    assert slurm_state(job_id) == "RUNNING"  # the held job goes on
    report = subprocess.run([sys.executable, "-m", "alrun.report", str(sweep)], capture_output=True, text=True,
                            env={**os.environ, **ENV}, cwd=tmp_path)
    assert report.returncode == 0, report.stdout + report.stderr  # unfinished is not failed: it may still run
    unfinished = report.stdout.split("unfinished")[1]
    assert folder(1) in unfinished and folder(0) not in unfinished  # the report names the job still running
    assert (sweep / "table.csv").exists()
    again = start(args, tmp_path)
    wait_for("the re-run to find the running job",
             lambda: f"still in SLURM as job {job_id}" in (tmp_path / "alrun.log").read_text())
    (gate / "hold").write_text("")  # the held job finishes now
    out = finish(again, tmp_path)
    assert again.returncode == 0, out
    assert "1 of 2 jobs finished earlier" in out
    assert len({task.split("_")[0] for task in array_tasks(sweep)}) == 1  # the re-run submitted nothing
    same_steps(sweep, smoke_reference, [0, 1])
    same_table(sweep, smoke_reference)


def test_a_finished_folder_of_another_config_is_never_reused(tmp_path):
    """Extending in reverse (a setting only the earlier job set) gets a folder of its own, which SLURM runs; a
    finished folder whose config differs where the overrides do not show it (its checkpoint's fingerprint, as
    other code defaults give) stops the sweep with one sentence before any submission, where `done` alone once
    made it count as this job's."""
    from alrun.loop.checkpoint import read_checkpoint, save_checkpoint

    sweep = tmp_path / "sweep"
    base = ["scale=smoke", "heuristic=random", "seed=0", "max_labelled=30", *SLURM, f"hydra.sweep.dir={sweep}"]
    run_alrun([*base, "train.lr=0.01"], tmp_path, env=THREADS)
    old = sweep / "heuristic=random,seed=0"

    def files(folder: Path) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}

    before = files(old)
    run_alrun(base, tmp_path, env=THREADS)
    new = sweep / "heuristic=random,seed=0,train.lr=0.001"
    assert (new / "done").exists() and files(old) == before
    assert json.loads((new / "job.json").read_text())["config"]["train.lr"] == 0.001
    state = read_checkpoint(new / "checkpoint.json")
    save_checkpoint(new / "checkpoint.json", {**state, "fingerprint": "0" * 16})
    tasks, kept = array_tasks(sweep), files(new)
    proc = run_alrun(base, tmp_path, check=False, env=THREADS)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"alrun: error: The folder {new} holds a job with a different config" in proc.stderr
    assert array_tasks(sweep) == tasks and files(new) == kept  # nothing submitted, nothing written
