"""Where one alrun active-learning step spends its time: ``python -m benchmarks.profile_step [--quick]``.

Runs the step of benchmarks/bench_step.py (alrun only, BaaL not needed) under cProfile and prints
the phases the loop records (train, MC inference + scoring, selection; evaluation is the rest)
and the functions with the most time of their own.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import tempfile
import time
from pathlib import Path

import torch

from alrun.loop.job import ActiveLearningJob, prepare_data
from benchmarks.bench_step import _FirstStepDone, step_config


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the --quick configuration of bench_step")
    parser.add_argument("--top", type=int, default=15, help="how many functions to list")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    spec, bundle, config = step_config(args.quick)
    data = prepare_data(spec, bundle)
    phases: dict[str, float] = {}

    def record(row: dict, n_total: int) -> None:
        phases.update({k: row[k] for k in ("time_train", "time_infer", "time_acquire")})
        raise _FirstStepDone

    def step() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                ActiveLearningJob(spec, Path(tmp), data=data).run(on_step=record)
            except _FirstStepDone:
                pass

    step()  # warm-up
    profiler = cProfile.Profile()
    tic = time.perf_counter()
    profiler.runcall(step)
    total = time.perf_counter() - tic
    rest = total - sum(phases.values())
    print(f"one step ({config}), {torch.get_num_threads()} torch threads: {total:.2f} s under cProfile")
    print(f"  train {phases['time_train']:.2f} s, MC inference + scoring {phases['time_infer']:.2f} s, "
          f"selection {phases['time_acquire']:.3f} s, evaluation and the rest {rest:.2f} s")
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(args.top)
    print(out.getvalue())


if __name__ == "__main__":
    main()
