"""The launching overhead per job on a local Ray cluster, beside the basic and joblib launchers.

Per job: the seconds from the launcher handing the job over (its `#i : ...` line in the launching process's
log) to the job starting its first step (its `job.json`, written after the data and the model are ready,
just before the first step). The basic launcher runs the jobs one after the other in its own process, so its
figure is the job's own set-up; joblib and Ray add starting a worker process (imports, unpickling the job)
and, for Ray, scheduling the task. Also the whole sweep's wall time, and for Ray the seconds to join the
cluster. `alrun scale=smoke heuristic=random seed=0,1` (2 jobs), each launcher in turn, repeated; the Ray
head (2 CPUs, on 127.0.0.1, as tests/test_ray.py starts it) is started once, before the first repeat.

    python -m benchmarks.bench_ray_launch [--repeats 3]   # prints one line per launcher (needs the `ray` extra)
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SWEEP = ["scale=smoke", "heuristic=random", "seed=0,1"]
JOBS = ["heuristic=random,seed=0", "heuristic=random,seed=1"]
# every Ray socket on loopback (see tests/test_ray.py)
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]\[HYDRA\]\s+#(\d+) : ")
JOINED = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]\[HYDRA\] Ray launcher: ")


def stamp(text: str) -> float:
    """A Hydra log time (local time, milliseconds) as seconds since the epoch."""
    return datetime.datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def environment(cwd: Path) -> dict[str, str]:
    return {**os.environ, **RAY_ENV, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
            "ALRUN_DATA_DIR": str(cwd / "data"),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def sweep(cwd: Path, extra: list[str], name: str) -> dict[str, float]:
    """One sweep: its wall seconds, the mean seconds from hand-over to first step per job, and (Ray) the
    seconds from the process start to the launcher's first line (joining the cluster included)."""
    folder = cwd / "sweeps" / name
    tic = time.time()
    proc = subprocess.run([sys.executable, "-m", "alrun", *SWEEP, *extra, f"hydra.sweep.dir={folder}"], cwd=cwd,
                          env=environment(cwd), capture_output=True, text=True)
    wall = time.time() - tic
    if proc.returncode != 0:
        raise RuntimeError(f"alrun {' '.join(SWEEP + extra)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    handed = {int(m.group(2)): stamp(m.group(1)) for m in map(LINE.match, proc.stdout.splitlines()) if m}
    started = [(folder / job / "job.json").stat().st_mtime for job in JOBS]
    joined = [stamp(m.group(1)) for m in map(JOINED.match, proc.stdout.splitlines()) if m]
    return {"wall": wall, "per_job": statistics.mean(s - handed[i] for i, s in enumerate(started)),
            "join": joined[0] - tic if joined else float("nan")}


def start_head(temp_dir: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = temp_dir / "head.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
                                 "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
                                 "--include-dashboard=false", "--object-store-memory=100000000",
                                 f"--temp-dir={temp_dir}"], env=environment(temp_dir), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    while "block forever" not in log.read_text():
        if proc.poll() is not None:
            raise RuntimeError("ray start --head did not come up:\n" + log.read_text()[-3000:])
        time.sleep(0.2)
    return proc, f"127.0.0.1:{port}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="sweeps per launcher (the best is reported)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="alrun-ray-") as tmp:  # short: Ray's socket paths must fit
        cwd = Path(tmp)
        head, address = start_head(cwd)
        try:
            launchers = {"basic": [], "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
                         "ray": ["hydra/launcher=ray", f"hydra.launcher.address={address}"]}
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in launchers}
            for r in range(args.repeats):  # interleaved, so that load from other work falls on all alike
                for name, extra in launchers.items():
                    runs[name].append(sweep(cwd, extra, f"{name}-{r}"))
        finally:
            head.terminate()
            head.wait(timeout=60)
    for name, results in runs.items():
        best = min(results, key=lambda x: x["wall"])
        join = f", joining the cluster {min(x['join'] for x in results):.2f} s" if name == "ray" else ""
        print(f"{name}: hand-over to first step {min(x['per_job'] for x in results):.2f} s per job "
              f"(median {statistics.median(x['per_job'] for x in results):.2f} s), "
              f"sweep of 2 jobs {best['wall']:.2f} s{join}", flush=True)
    print(f"load average (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
