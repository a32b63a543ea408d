"""Selection time of CoreSet, BADGE, TypiClust and ProbCover (alrun/acquire/diversity/) at the issue's size.

Q = 500 picks from a pool of 50,000 candidates with 1,280-dimensional embeddings (the width of
EfficientNet-lite0's features), beside 1,000 labelled points, on 2 CPU threads (torch and the
OpenMP/BLAS pools of scikit-learn alike). The data are random and seeded: 10 Gaussian classes
(centres and noise standard normal), probabilities a softmax of random logits over 10 classes.
There is no peer here: the figure to meet is the issue's goal, under 10 s each. Each selection
runs once. The machine may be shared: beside the wall time, the process's CPU time (all threads)
is printed, which other processes' load inflates much less; with 2 busy threads the wall time of
a quiet machine is about half of it.

    nice -n 10 python -m benchmarks.bench_diversity [--record] [--note TEXT]   # --record: into benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
MARK_START, MARK_END = "<!-- bench_diversity:start -->", "<!-- bench_diversity:end -->"
GOAL_S = 10.0


def problem(n: int, n_lab: int, d: int, c: int, seed: int = 0):
    """(pool [n, d], labelled [n_lab, d], probs [n, c]) float32, seeded."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(c, d, generator=g)
    def points(m: int) -> torch.Tensor:
        return centres[torch.randint(c, (m,), generator=g)] + torch.randn(m, d, generator=g)
    pool, labelled = points(n), points(n_lab)
    probs = torch.randn(n, c, generator=g).mul_(2).softmax(dim=1)
    return pool, labelled, probs


def run_all(n: int, n_lab: int, d: int, c: int, q: int) -> list[tuple[str, float, float, str]]:
    from alrun.acquire import diversity as dv

    pool, labelled, probs = problem(n, n_lab, d, c)
    calls = {
        "coreset": lambda g: dv.coreset(pool, q, generator=g, labelled_embeddings=labelled),
        "badge": lambda g: dv.badge(pool, probs, q, generator=g),
        "typiclust": lambda g: dv.typiclust(pool, q, generator=g, labelled_embeddings=labelled),
        "probcover (radius by purity, n_classes=10)":
            lambda g: dv.probcover(pool, q, generator=g, labelled_embeddings=labelled, n_classes=c),
    }
    notes = {
        "coreset": "k-center greedy: one [N] distance update per pick",
        "badge": "k-means++ on gradient embeddings in closed form: O(N (C + D)) per pick",
        "typiclust": f"min(L + Q, 500) = {min(n_lab + q, 500)} clusters by MiniBatchKMeans (batches of 5,000)",
        "probcover (radius by purity, n_classes=10)": "KMeans(10) fitted on 15,000 points, purity on 2,000 centres, "
                                                      "then one pass over half the N + L pairs in cache-sized "
                                                      "bfloat16 blocks (float32 near the radius), greedy on the "
                                                      "edge list",
    }
    out = []
    for name, call in calls.items():
        g = torch.Generator().manual_seed(0)
        tic, cpu = time.perf_counter(), time.process_time()
        picks = call(g)
        seconds, cpu_s = time.perf_counter() - tic, time.process_time() - cpu
        assert picks.shape == (q,) and picks.unique().numel() == q
        out.append((name, seconds, cpu_s, notes[name]))
        print(f"{name}: {seconds:.2f} s wall, {cpu_s:.2f} s CPU", flush=True)
    return out


def section(rows: list[tuple[str, float, float, str]], command: str, n: int, n_lab: int, d: int, q: int, threads: int,
            load_before: str, load_after: str, note: str = "") -> str:
    from benchmarks.common import cpu_model

    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    lines = [
        MARK_START,
        "## Diversity heuristics: selection time",
        "",
        f"Written by `{command}` on {when} (UTC); do not edit by hand. Q = {q} picks from a pool of {n:,} x {d:,} "
        f"(float32, 10 Gaussian classes, seeded) beside {n_lab:,} labelled points, {threads} threads, one run each, "
        f"on {cpu_model()} ({os.cpu_count()} cores), torch {torch.__version__}; load average (1, 5, 15 min) "
        f"before: {load_before}, after: {load_after}{'; ' + note if note else ''}. Goal: under {GOAL_S:.0f} s each.",
        "",
        "| heuristic | wall (s) | CPU, all threads (s) | under the goal (wall) | what dominates |",
        "|---|---:|---:|---|---|",
        *[f"| {name} | {s:.2f} | {cpu:.2f} | {'yes' if s < GOAL_S else 'no'} | {note} |"
          for name, s, cpu, note in rows],
        MARK_END,
    ]
    return "\n".join(lines) + "\n"


def kept_section(path: Path) -> str:
    """This benchmark's section of an existing RESULTS.md (with its markers), or "": benchmarks/run.py keeps it."""
    text = path.read_text() if path.exists() else ""
    if MARK_START not in text or MARK_END not in text:
        return ""
    return text[text.index(MARK_START) : text.index(MARK_END) + len(MARK_END)] + "\n"


def record(block: str, path: Path) -> None:
    """Put the section into RESULTS.md, replacing an earlier one."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    if MARK_START in text and MARK_END in text:
        before, rest = text.split(MARK_START, 1)
        after = rest.split(MARK_END, 1)[1].lstrip("\n")
        text = before + block + after
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000, help="pool candidates")
    parser.add_argument("--labelled", type=int, default=1_000, help="labelled points")
    parser.add_argument("--dim", type=int, default=1_280, help="embedding width")
    parser.add_argument("--q", type=int, default=500, help="picks")
    parser.add_argument("--threads", type=int, default=2, help="torch and scikit-learn threads")
    parser.add_argument("--record", action="store_true", help="write the table into benchmarks/RESULTS.md")
    parser.add_argument("--note", default="", help="how the machine was while it ran, written beside the load")
    args = parser.parse_args(argv)
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    with threadpool_limits(limits=args.threads):
        rows = run_all(args.n, args.labelled, args.dim, 10, args.q)
    command = " ".join(["python -m benchmarks.bench_diversity", shlex.join(argv or sys.argv[1:])]).rstrip()
    block = section(rows, command, args.n, args.labelled, args.dim, args.q, args.threads, load,
                    ", ".join(f"{v:.2f}" for v in os.getloadavg()), args.note)
    print(block)
    if args.record:
        record(block, HERE / "RESULTS.md")
        print(f"wrote {HERE / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
