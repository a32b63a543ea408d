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
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import interleaved_best, row

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SWEEP = ["scale=smoke"]  # the default study: heuristics bald, entropy, random x seeds 0, 1


def sweep_seconds(cwd: Path, extra: list[str], name: str, counter: list[int]) -> float:
    """Wall seconds of one `alrun scale=smoke EXTRA` in `cwd` (a new sweep folder each time)."""
    counter[0] += 1
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads()), "ALRUN_DATA_DIR": str(cwd / "data"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    tic = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "alrun", *SWEEP, *extra,
                           f"hydra.sweep.dir=sweeps/{name}-{counter[0]}"], cwd=cwd, env=env,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - tic
    if proc.returncode != 0:
        raise RuntimeError(f"alrun {' '.join(SWEEP + extra)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return seconds


def fresh_store_seconds(folder: Path) -> float:
    """Seconds to create an empty sqlite store (MLflow imported beforehand)."""
    from mlflow.tracking import MlflowClient

    tic = time.perf_counter()
    MlflowClient(tracking_uri=f"sqlite:///{folder / 'fresh.db'}").search_experiments(max_results=1)
    return time.perf_counter() - tic


def run(quick: bool) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="alrun-bench-tracking-") as tmp:
        cwd, counter = Path(tmp), [0]
        best = interleaved_best({
            "tracked": lambda: sweep_seconds(cwd, ["tracker=mlflow"], "tracked", counter),
            "plain": lambda: sweep_seconds(cwd, [], "plain", counter),
        }, repeats=1 if quick else 3)
        fresh = fresh_store_seconds(cwd)
        n_runs = len(list((cwd / "sweeps").rglob("mlflow_run.json")))
    overhead = 100 * (best["tracked"] - best["plain"]) / best["plain"]
    return [row("smoke_sweep_tracking", best["tracked"], best["plain"], peer="alrun tracker=none",
                overhead_percent=round(overhead, 1), fresh_store_s=round(fresh, 2), tracked_job_runs=n_runs,
                config=f"alrun scale=smoke (6 jobs, 4 steps each), best of {1 if quick else 3} after a warm-up")]


def section(r: dict, command: str) -> str:
    """The RESULTS.md section of this benchmark."""
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    return "\n".join([
        "## Tracking overhead (tracker=mlflow)",
        "",
        f"Made by `{command}` on {started} (UTC), torch threads {torch.get_num_threads()}; "
        "benchmarks/run.py adds the same row to the table above when it runs.",
        "",
        f"- `alrun scale=smoke` untracked: {r['peer_s']:.2f} s; with `tracker=mlflow` (embedded sqlite store): "
        f"{r['alrun_s']:.2f} s; overhead {r['overhead_percent']:+.1f} %",
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
          f"overhead {r['overhead_percent']:+.1f} %, fresh store {r['fresh_store_s']:.2f} s", flush=True)
    command = "python -m benchmarks.bench_tracking" + "".join(f" {a}" for a in (argv or sys.argv[1:]))
    text = args.out.read_text() if args.out.exists() else ""
    head = text.split("## Tracking overhead")[0].rstrip("\n")
    args.out.write_text((head + "\n\n" if head else "") + section(r, command))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
