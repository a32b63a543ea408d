"""`alrun` beside CPU-bound processes: wall time with and without two busy loops running, per `threads` setting.

    python -m benchmarks.bench_threads_load [--args "" "scale=smoke"] [--threads auto 2] [--burners 2] [--record]

Runs `alrun ARGS threads=T` into a fresh folder, once on the machine as it is and once with BURNERS processes
spinning on the CPU beside it (`while True: pass`, stopped after), for each ARGS and T; OMP_NUM_THREADS is
removed from the children's environment so that `auto` is not capped by it. Prints the times, the loaded /
unloaded ratio at the same T, and the loaded time over the unloaded time at `auto` (what a user sees: the
default, with and without other work on the machine); `threads=N` with N the machine's cores is what `auto`
was before it left the cores other work keeps busy. `--record` puts them into benchmarks/RESULTS.md (its own
section, which benchmarks/run.py keeps), with the machine's cores and its load averages before and after.
Not run by the tests (no test times anything).
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
MARK_START, MARK_END = "<!-- bench_threads_load:start -->", "<!-- bench_threads_load:end -->"
BURN = "while True: pass"


def run_alrun(args: list[str], folder: Path) -> float:
    """Seconds `alrun ARGS` takes (into FOLDER); raises when it fails."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env.update(ALRUN_DATA_DIR=str(folder / "data"), PYTHONUNBUFFERED="1")
    tic = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "alrun", *args, f"hydra.sweep.dir={folder / 'sweep'}"], cwd=folder,
                          env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - tic
    if proc.returncode != 0:
        raise RuntimeError(f"alrun {' '.join(args)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return seconds


def timed(args: list[str], burners: int) -> float:
    """`alrun ARGS` in a fresh folder, with BURNERS busy loops running beside it."""
    spinning = [subprocess.Popen([sys.executable, "-c", BURN]) for _ in range(burners)]
    try:
        with tempfile.TemporaryDirectory(prefix="alrun-threads-") as tmp:
            return run_alrun(args, Path(tmp))
    finally:
        for proc in spinning:
            proc.kill()
            proc.wait()


def load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def record(block: str, path: Path) -> None:
    """Put the section into RESULTS.md, replacing an earlier one."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    if MARK_START in text and MARK_END in text:
        before, rest = text.split(MARK_START, 1)
        text = before + block + rest.split(MARK_END, 1)[1].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text)


def kept_section(path: Path) -> str:
    """This benchmark's section of an existing RESULTS.md (with its markers), or "": benchmarks/run.py keeps it."""
    text = path.read_text() if path.exists() else ""
    if MARK_START not in text or MARK_END not in text:
        return ""
    return text[text.index(MARK_START): text.index(MARK_END) + len(MARK_END)] + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--args", nargs="+", default=["", "scale=smoke"],
                        help="alrun's arguments, one string per command ('' for bare alrun)")
    parser.add_argument("--threads", nargs="+", default=["auto", "2"], help="threads settings to compare")
    parser.add_argument("--burners", type=int, default=2, help="CPU-bound processes beside the loaded runs")
    parser.add_argument("--note", default="", help="how the machine was (other work on it), for the record")
    parser.add_argument("--record", action="store_true", help="write the section into benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    load_before, started = load(), datetime.now(timezone.utc)
    rows = []
    for line in args.args:
        base = line.split()
        times = {}
        for threads in args.threads:
            quiet = timed([*base, f"threads={threads}"], 0)
            busy = timed([*base, f"threads={threads}"], args.burners)
            times[threads] = (quiet, busy)
            print(f"alrun {line or '(bare)'} threads={threads}: {quiet:.1f} s as the machine is, {busy:.1f} s beside "
                  f"{args.burners} busy loops ({busy / quiet:.2f}x)", flush=True)
        auto = times.get("auto", (math.nan,))[0]
        rows += [(line or "(bare)", t, q, b, b / auto) for t, (q, b) in times.items()]
    command = " ".join(["python -m benchmarks.bench_threads_load",
                        *(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))])
    lines = [MARK_START, "## alrun beside CPU-bound processes (threads)", "",
             f"Written by `{command}` on {started:%Y-%m-%d %H:%M} (UTC); do not edit by hand. Each row: "
             f"`alrun ARGS threads=T` once as the machine was, once beside {args.burners} busy loops; "
             f"{os.cpu_count()} cores, load average (1, 5, 15 min) {load_before} before, {load()} after"
             + (f"; {args.note}" if args.note else "") + ". The last column is the loaded time over the unloaded "
             "time at `threads=auto`, the default: the slow-down a user sees when other work shares the machine.",
             "",
             "| alrun | threads | as the machine was (s) | beside the busy loops (s) | ratio | over auto unloaded |",
             "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {a} | {t} | {q:.1f} | {b:.1f} | {b / q:.2f}x | {r:.2f}x |" for a, t, q, b, r in rows]
    block = "\n".join([*lines, MARK_END]) + "\n"
    if args.record:
        record(block, HERE / "RESULTS.md")
        print(f"wrote {HERE / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
