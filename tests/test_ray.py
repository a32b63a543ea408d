"""`hydra/launcher=ray` for real, at scale=smoke, on a Ray cluster this module starts on 127.0.0.1: the same
steps.csv (timings aside) and table as the basic launcher; a job whose Ray worker is killed mid-step is started
again by Ray and resumes step-exact, or, without retries, is named by the report and resumed by re-running the
command; tracker=mlflow gives one child run per job, no step twice; Ray's GPUs and alrun's GPU claim agree."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import REPO, THREADS, run_alrun, steps_without_timings

ray = pytest.importorskip("ray", reason="the `ray` extra is not installed (pip install -e '.[ray]')")
pytestmark = pytest.mark.ray

JOB = "heuristic=bald,seed=0"
# the documented commands (docs/how-to/clusters.md, section "Ray"), port and temp folder aside
HEAD_FLAGS = ["--head", "--node-ip-address=127.0.0.1", "--num-cpus=2"]
SWEEP = ["scale=smoke", "heuristic=bald", "seed=0,1"]
# Ray turns --node-ip-address=127.0.0.1 into the machine's routable address unless it is told the cluster is
# this machine alone (the switch it uses on macOS and Windows): set for the head and for alrun, so that every
# socket of the test cluster stays on loopback. Without it the same commands work, on the routable address.
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


@dataclass
class Head:
    address: str
    temp_dir: Path
    proc: subprocess.Popen


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def head():
    """`ray start --head --node-ip-address=127.0.0.1` (2 CPUs, 2 logical GPUs for the GPU test; no GPU is
    used by the sweeps, whose jobs ask for num_gpus=0), blocking in a process of its own session; stopped
    by signalling that process, which ends every Ray process it started."""
    port = free_port()
    # short: Ray's socket paths under it must fit in 107 bytes
    temp_dir = Path(tempfile.mkdtemp(prefix="alrun-ray-"))
    env = {**os.environ, **RAY_ENV, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO),
                                                                                 os.environ.get("PYTHONPATH")]))}
    log = temp_dir / "head.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ray.scripts.scripts", "start", *HEAD_FLAGS, "--block",
                                 f"--port={port}", "--num-gpus=2", "--include-dashboard=false",
                                 "--object-store-memory=100000000", f"--temp-dir={temp_dir}"],
                                env={**env, "PYTHONUNBUFFERED": "1"}, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    deadline = time.monotonic() + 180
    while "block forever" not in log.read_text():  # it says so once every process of the head is up
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_head(proc)
            pytest.fail("ray start --head did not come up:\n" + log.read_text()[-3000:])
        time.sleep(0.2)
    yield Head(f"127.0.0.1:{port}", temp_dir, proc)
    stop_head(proc)
    shutil.rmtree(temp_dir, ignore_errors=True)


def stop_head(proc: subprocess.Popen) -> None:
    """Signal `ray start --block`, which then ends every Ray process it started; its session killed if it hangs."""
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def ray_args(head: Head, *more: str) -> list[str]:
    return ["hydra/launcher=ray", f"hydra.launcher.address={head.address}", *more]


def run_on_ray(head: Head | None, args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    return run_alrun(args, cwd, check=check, env={**THREADS, **RAY_ENV})


def test_without_a_cluster_a_local_ray_is_started_and_the_log_says_so(tmp_path):
    """`hydra/launcher=ray` with the default address (auto) and no Ray running: a local Ray started for the sweep,
    as `ray.init()` and Hydra's Ray launcher do; with one running (another user's on this machine), that one is
    joined. Defined before the tests that start this module's head, so none of it runs yet."""
    from ray._private.services import find_gcs_addresses

    running = bool(find_gcs_addresses()) or bool(os.environ.get("RAY_ADDRESS"))
    token = Path.home() / ".ray" / "auth_token"
    had_token = token.exists()
    sweep = tmp_path / "sweep"
    proc = run_on_ray(None, ["scale=smoke", "heuristic=bald", "seed=0", "max_labelled=30", "hydra/launcher=ray",
                             f"hydra.sweep.dir={sweep}"], tmp_path)
    log = proc.stdout + proc.stderr
    if running:
        assert "Ray: joined the running Ray cluster at" in log
    else:
        assert "no running Ray cluster found (address=auto): started a local Ray on this machine" in log
    assert (sweep / JOB / "done").exists() and not (sweep / JOB / "failed").exists()
    # no token left behind (~/.ray/auth_token) that a later `ray start --head` would demand of joining clients
    assert running or had_token or not token.exists()


@pytest.fixture(scope="module")
def launched(head, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("ray")
    sweep = cwd / "sweep"
    proc = run_on_ray(head, [*SWEEP, *ray_args(head), f"hydra.sweep.dir={sweep}"], cwd)
    return sweep, proc


def test_one_ray_task_per_job(launched, head):
    sweep, proc = launched
    log = proc.stdout + proc.stderr
    assert f"Ray launcher: 2 jobs on the cluster at {head.address} (num_cpus=1, num_gpus=0 each)" in log
    assert "(alrun_job pid=" in log  # the jobs' output, relayed from their Ray workers
    for job in ("heuristic=bald,seed=0", "heuristic=bald,seed=1"):
        assert (sweep / job / "done").exists() and not (sweep / job / "failed").exists()
        assert "digits: held out" in (sweep / job / "cli.log").read_text()  # each job's log is in its folder


def test_steps_and_table_equal_the_basic_launcher(launched, smoke_reference):
    sweep, _ = launched
    for job in ("heuristic=bald,seed=0", "heuristic=bald,seed=1"):
        pd.testing.assert_frame_equal(steps_without_timings(sweep / job / "steps.csv"),
                                      steps_without_timings(smoke_reference / job / "steps.csv"))
    table = pd.read_csv(sweep / "table.csv")
    pd.testing.assert_frame_equal(table, pd.read_csv(smoke_reference / "table.csv"))
    assert (table["n"] == 2).all()


def test_the_docs_run_what_these_tests_run():
    """docs/how-to/clusters.md "Ray": the head started as the module's head, the sweep as `launched` (the port
    aside), with the variable that keeps Ray on loopback."""
    from tests.test_sweep_components import doc_section

    section = doc_section("how-to/clusters.md", "Ray")
    block = section[section.index("```bash\n") + len("```bash\n"):]
    lines = [line.split("#")[0].split() for line in block[:block.index("```")].splitlines()]
    [start] = [w for w in lines if w[:2] == ["ray", "start"]]
    [sweep] = [w for w in lines if w[:1] == ["alrun"]]
    assert [w for w in start[2:] if not w.startswith("--port=")] == HEAD_FLAGS
    port = next(w for w in start if w.startswith("--port=")).split("=")[1]
    assert sweep[1:] == [*SWEEP, *ray_args(Head(f"127.0.0.1:{port}", Path(), None))]
    assert ["export", *(f"{k}={v}" for k, v in RAY_ENV.items() if k != "RAY_USAGE_STATS_ENABLED")] in lines


def test_no_cluster_at_the_address_is_one_sentence_before_any_job(tmp_path):
    """A port no Ray head listens on: one sentence, exit 2, at once (Ray itself would retry for minutes);
    with tracker=mlflow the sweep's parent run ends FAILED with it."""
    mlflow = pytest.importorskip("mlflow", reason="the `tracking` extra is not installed")
    address = f"127.0.0.1:{free_port()}"
    proc = run_on_ray(None, ["scale=smoke", "heuristic=bald", "seed=0,1", "tracker=mlflow", "hydra/launcher=ray",
                             f"hydra.launcher.address={address}", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
                      tmp_path, check=False)
    assert proc.returncode == 2
    [line] = [x for x in proc.stderr.splitlines() if x.strip()]
    assert line.startswith(f"alrun: error: hydra/launcher=ray cannot join a Ray cluster at `{address}` (")
    assert line.endswith("start one with `ray start --head`, or set hydra.launcher.address=HOST:PORT of a "
                         "running head.")
    assert not list(tmp_path.rglob("job.json"))
    from tests.test_tracking import store_of

    client, known = store_of(tmp_path / "sweep")
    assert client.get_run(known["run_id"]).info.status == "FAILED"
    assert mlflow


def worker_running_a_job() -> int | None:
    """The pid of the Ray worker process now running an alrun job (its title is `ray::alrun_job`)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().startswith(b"ray::alrun_job"):
                    return int(entry.name)
            except OSError:
                continue
    return None


def finished_steps(job: Path) -> int:
    try:
        return max(0, len((job / "steps.csv").read_text().splitlines()) - 1)
    except OSError:
        return 0


def kill_mid_step(head: Head, args: list[str], cwd: Path, job: Path) -> tuple[subprocess.CompletedProcess, int]:
    """Run `alrun ARGS` (one job, JOB) and SIGKILL the Ray worker running it as soon as its first step is in
    steps.csv, while the next step runs; returns the finished command and the steps written before the kill."""
    env = {"OMP_NUM_THREADS": "1", **os.environ, **THREADS, **RAY_ENV, "PYTHONUNBUFFERED": "1",
           "ALRUN_DATA_DIR": str(cwd / "data")}
    with subprocess.Popen([sys.executable, "-m", "alrun", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as proc:
        pid, deadline = None, time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:
            pid = pid or worker_running_a_job()
            if pid and finished_steps(job) >= 1:
                break
            time.sleep(0.01)
        assert pid and not (job / "done").exists(), "the job was not caught while running"
        before = finished_steps(job)
        os.kill(pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, ""), before


def test_worker_killed_mid_step_is_restarted_by_ray_and_resumes_step_exact(head, tmp_path, smoke_reference):
    sweep = tmp_path / "sweep"
    proc, before = kill_mid_step(head, ["scale=smoke", "heuristic=bald", "seed=0", *ray_args(head),
                                        f"hydra.sweep.dir={sweep}"], tmp_path, sweep / JOB)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert 1 <= before < 4
    assert "resum" in (sweep / JOB / "cli.log").read_text().lower()  # the second attempt started from its checkpoint
    assert (sweep / JOB / "done").exists() and not (sweep / JOB / "failed").exists()
    pd.testing.assert_frame_equal(steps_without_timings(sweep / JOB / "steps.csv"),
                                  steps_without_timings(smoke_reference / JOB / "steps.csv"))


def test_worker_killed_without_retries_is_reported_and_a_rerun_resumes_it(head, tmp_path, smoke_reference):
    """max_retries=0, tracker=mlflow: the sweep names the job and exits 1; the same command again resumes it,
    and its MLflow child run (the only one) holds each step once."""
    mlflow = pytest.importorskip("mlflow", reason="the `tracking` extra is not installed")
    from tests.test_tracking import assert_histories_equal_steps, child_runs, store_of

    sweep = tmp_path / "sweep"
    args = ["scale=smoke", "heuristic=bald", "seed=0", "tracker=mlflow",
            *ray_args(head, "hydra.launcher.max_retries=0"), f"hydra.sweep.dir={sweep}"]
    proc, before = kill_mid_step(head, args, tmp_path, sweep / JOB)
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert 1 <= before < 4
    error = (sweep / JOB / "error.txt").read_text()
    assert "the Ray task running this job ended without finishing it, after 0 retries" in error
    assert f"- {JOB}: alrun: error: the Ray task running this job ended" in (sweep / "table.md").read_text()

    again = run_on_ray(head, args, tmp_path)
    assert (sweep / JOB / "done").exists() and not (sweep / JOB / "failed").exists()
    assert not (sweep / JOB / "error.txt").exists()
    steps = pd.read_csv(sweep / JOB / "steps.csv")
    pd.testing.assert_frame_equal(steps_without_timings(sweep / JOB / "steps.csv"),
                                  steps_without_timings(smoke_reference / JOB / "steps.csv"))
    client, known = store_of(sweep)
    children = child_runs(client, known)
    assert list(children) == [JOB]
    assert children[JOB].info.status == "FINISHED"
    assert_histories_equal_steps(client, children[JOB], steps)
    assert "Traceback" not in again.stdout + again.stderr
    assert mlflow  # the extra is what the child-run checks read with


# Run as its own driver (the test process imported ray without RAY_ENV): inside a Ray task, what a job run by
# the launcher sees, and the GPU alrun claims for it (a lock folder per task, so that the claims are told apart;
# on a GPU machine the count is torch's and the lock is named by the GPU's UUID).
GPU_PROBE = """
import json, os, sys
from pathlib import Path
import ray

@ray.remote
def probe(lock_root, num_gpus):
    from alrun.core.devices import claimed_device
    from alrun.launch.ray_launch import launching_context

    with launching_context(os.getcwd(), {}, num_gpus):
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        count = len([v for v in (visible or "").split(",") if v.strip()])
        lock_dir = Path(lock_root) / f"locks-{os.getpid()}"
        with claimed_device("auto", 0, device_count=count, lock_dir=lock_dir) as device:
            held = sorted(p.name for p in lock_dir.iterdir()) if lock_dir.exists() else []
    ids = [str(i) for i in ray.get_runtime_context().get_accelerator_ids().get("GPU", [])]
    return {"visible": visible, "ray_ids": ids, "device": device, "held": held}

ray.init(address=sys.argv[1], log_to_driver=False)
seen = ray.get([probe.options(num_gpus=1).remote(sys.argv[2], 1) for _ in range(2)])
none = ray.get(probe.options(num_gpus=0).remote(sys.argv[2], 0))
print(json.dumps({"seen": seen, "none": none}))
"""


def test_ray_gpus_and_alrun_claims_agree(head, tmp_path):
    """Two tasks given one GPU each on a node of two (logical) GPUs, in the launcher's job context: each sees
    only the GPU Ray gave it, as cuda:0, and alrun's claim locks that GPU (named by its CUDA_VISIBLE_DEVICES
    entry, since no CUDA here gives a UUID): two different GPUs, two different locks. A task given no GPU sees
    none, although Ray 2.x leaves it the node's CUDA_VISIBLE_DEVICES."""
    env = {**os.environ, **RAY_ENV, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO),
                                                                                 os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-c", GPU_PROBE, head.address, str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    seen, none = found["seen"], found["none"]
    assert sorted(s["visible"] for s in seen) == sorted(s["ray_ids"][0] for s in seen)  # Ray's GPU, as CUDA sees it
    assert len({s["visible"] for s in seen}) == 2 and all(len(s["ray_ids"]) == 1 for s in seen)
    for s in seen:
        assert s["device"] == "cuda:0"
        assert s["held"] == [f"gpu-{s['visible']}.lock"]
    assert none["visible"] == "" and none["device"] is None
