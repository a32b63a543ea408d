"""Launching overhead per job: from the command's start to each job's first finished step, per launcher.

    python -m benchmarks.launch_overhead [--repeats 3] [--launchers basic,joblib,submitit_local,slurm]

Runs `alrun scale=smoke heuristic=bald seed=0,1` (two jobs) with each launcher into a fresh folder and
polls (every 50 ms) for each job's steps.csv, which alrun writes once step 0 (the first training and
evaluation) has finished. Step 0 itself costs the same under every launcher, so the differences between the
launchers are what each adds to start a job: the basic launcher runs the jobs one after the other in its
own process, joblib in 2 worker processes, submitit_local and SLURM in a process per job (SLURM through
sbatch, a job array, on the cluster `sinfo` answers; `bash .ci/slurm-up.sh` starts a local one).
Prints a table of medians over the repeats; not run by the tests (no test times anything).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LAUNCHERS = {
    "basic": [],
    "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
    "submitit_local": ["hydra/launcher=submitit_local", "hydra.launcher.cpus_per_task=1",
                       "hydra.launcher.timeout_min=10"],
    "slurm": ["hydra/launcher=slurm", "hydra.launcher.partition=debug", "hydra.launcher.gpus_per_node=0",
              "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1"],
}
JOBS = ["heuristic=bald,seed=0", "heuristic=bald,seed=1"]


def one_sweep(launcher: str, folder: Path) -> dict[str, float]:
    """Seconds from the command's start to each job's step 0 (first and last job), and to the command's end."""
    sweep = folder / "sweep"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ALRUN_DATA_DIR": str(folder / "data"), "PYTHONUNBUFFERED": "1"}
    args = [sys.executable, "-m", "alrun", "scale=smoke", "heuristic=bald", "seed=0,1", *LAUNCHERS[launcher],
            f"hydra.sweep.dir={sweep}"]
    first: dict[str, float] = {}
    start = time.perf_counter()
    proc = subprocess.Popen(args, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while proc.poll() is None or len(first) < len(JOBS):
        now = time.perf_counter() - start
        for job in JOBS:
            if job not in first and (sweep / job / "steps.csv").exists():
                first[job] = now
        if proc.poll() is not None and len(first) < len(JOBS):
            break
        time.sleep(0.05)
    end = time.perf_counter() - start
    if proc.wait() != 0 or len(first) < len(JOBS):
        raise RuntimeError(f"{launcher}: alrun exited {proc.returncode}: {proc.stderr.read()[-2000:]}")
    return {"first_job_step0_s": min(first.values()), "last_job_step0_s": max(first.values()), "sweep_s": end}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--launchers", default=",".join(LAUNCHERS))
    args = parser.parse_args(argv)
    names = args.launchers.split(",")
    print("| launcher | first job's step 0 (s) | second job's step 0 (s) | whole sweep (s) |")
    print("|---|---|---|---|")
    for name in names:
        runs = []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory(prefix=f"alrun-launch-{name}-") as tmp:
                runs.append(one_sweep(name, Path(tmp)))
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"| {name} | {med['first_job_step0_s']:.1f} | {med['last_job_step0_s']:.1f} | {med['sweep_s']:.1f} |",
              flush=True)


if __name__ == "__main__":
    main()
