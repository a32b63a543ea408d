"""What tracker=mlflow adds to a sweep: `alrun scale=smoke` (6 jobs) with and without `tracker=mlflow`.

Both are the real CLI in a fresh process, one after the other (interleaved, best of the repeats), in
one project folder, so the tracked runs log to one embedded sqlite store under results/ as a user's
would: the first (untimed warm-up) run creates the store, the timed ones add to it. The "peer" column is
the same sweep untracked; speedup < 1 means tracking costs time. The one-off creation of a fresh store
(MLflow's schema migrations) is measured on its own.

    python -m benchmarks.bench_tracking [--quick]   # prints the row; writes its section of RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import row

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SWEEP = ["scale=smoke"]  # the default study: heuristics bald, entropy, random x seeds 0, 1


def sweep_seconds(cwd: Path, extra: list[str], name: str, counter: list[int]) -> tuple[float, float]:
    """(wall s, CPU s of the process and the children it waited for, the logger included) of one
    `alrun scale=smoke EXTRA` in `cwd` (a new sweep folder each time)."""
    counter[0] += 1
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads()), "ALRUN_DATA_DIR": str(cwd / "data"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    tic = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "alrun", *SWEEP, *extra,
                           f"hydra.sweep.dir=sweeps/{name}-{counter[0]}"], cwd=cwd, env=env,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - tic
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"alrun {' '.join(SWEEP + extra)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return seconds, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def fresh_store_seconds(folder: Path) -> float:
    """Seconds to create an empty sqlite store (MLflow imported beforehand)."""
    from mlflow.tracking import MlflowClient

    tic = time.perf_counter()
    MlflowClient(tracking_uri=f"sqlite:///{folder / 'fresh.db'}").search_experiments(max_results=1)
    return time.perf_counter() - tic


def run(quick: bool) -> list[dict]:
    repeats = 1 if quick else 3
    variants = {"tracked": ["tracker=mlflow"], "plain": []}
    with tempfile.TemporaryDirectory(prefix="alrun-bench-tracking-") as tmp:
        cwd, counter = Path(tmp), [0]
        for name, extra in variants.items():  # warm-up: caches, and the store the tracked runs add to
            sweep_seconds(cwd, extra, name, counter)
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
        for _ in range(repeats):  # interleaved, so that load from other work falls on both alike
            for name, extra in variants.items():
                times[name].append(sweep_seconds(cwd, extra, name, counter))
        fresh = fresh_store_seconds(cwd)
        n_runs = len(list((cwd / "sweeps").rglob("mlflow_run.json")))
    wall = {name: min(w for w, _ in t) for name, t in times.items()}
    cpu = {name: min(c for _, c in t) for name, t in times.items()}
    return [row("smoke_sweep_tracking", wall["tracked"], wall["plain"], peer="alrun tracker=none",
                overhead_percent=round(100 * (wall["tracked"] - wall["plain"]) / wall["plain"], 1),
                cpu_tracked_s=round(cpu["tracked"], 2), cpu_plain_s=round(cpu["plain"], 2),
                cpu_overhead_percent=round(100 * (cpu["tracked"] - cpu["plain"]) / cpu["plain"], 1),
                fresh_store_s=round(fresh, 2), tracked_job_runs=n_runs,
                config=f"alrun scale=smoke (6 jobs, 4 steps each), best of {repeats} after a warm-up")]


def section(r: dict, command: str) -> str:
    """The RESULTS.md section of this benchmark."""
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    return "\n".join([
        "## Tracking overhead (tracker=mlflow)",
        "",
        f"Made by `{command}` on {started} (UTC), torch threads {torch.get_num_threads()}; "
        "benchmarks/run.py adds the same row to the table above when it runs.",
        "",
        f"- wall: `alrun scale=smoke` untracked {r['peer_s']:.2f} s; with `tracker=mlflow` (embedded sqlite store) "
        f"{r['alrun_s']:.2f} s; overhead {r['overhead_percent']:+.1f} %",
        f"- CPU (user + system, the MLflow logger process included): untracked {r['cpu_plain_s']:.2f} s; tracked "
        f"{r['cpu_tracked_s']:.2f} s; overhead {r['cpu_overhead_percent']:+.1f} %",
        f"- load average when it ended (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in os.getloadavg())} on "
        f"{os.cpu_count()} cores",
        f"- creating a fresh store (once per project folder): {r['fresh_store_s']:.2f} s",
        f"- {r['config']}",
        "",
    ])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one timed run each instead of three")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md", help="the file whose section is replaced")
    args = parser.parse_args(argv)
    [r] = run(args.quick)
    print(f"{r['name']}: tracked {r['alrun_s']:.2f} s, untracked {r['peer_s']:.2f} s, "
          f"overhead {r['overhead_percent']:+.1f} % (CPU {r['cpu_overhead_percent']:+.1f} %), "
          f"fresh store {r['fresh_store_s']:.2f} s", flush=True)
    command = "python -m benchmarks.bench_tracking" + "".join(f" {a}" for a in (argv or sys.argv[1:]))
    text = args.out.read_text() if args.out.exists() else ""
    head = text.split("## Tracking overhead")[0].rstrip("\n")
    args.out.write_text((head + "\n\n" if head else "") + section(r, command))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
