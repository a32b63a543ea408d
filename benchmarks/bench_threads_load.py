"""`alrun` beside CPU-bound processes: wall time with and without two busy loops running, per `threads` setting.

    python -m benchmarks.bench_threads_load [--args "" "scale=smoke"] [--threads auto 2] [--burners 2]
                                            [--after 0] [--repeats 1] [--record]

Runs `alrun ARGS threads=T` into a fresh folder, once on the machine as it is and once with BURNERS processes
spinning on the CPU beside it (`while True: pass`, from AFTER seconds on, stopped after), for each ARGS and T,
REPEATS times (the pairs interleaved; the table gives the medians, and the range when repeated); OMP_NUM_THREADS
is removed from the children's environment so that `auto` is not capped by it. Prints the times, the loaded /
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
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
MARK_START, MARK_END = "<!-- bench_threads_load:start -->", "<!-- bench_threads_load:end -->"
# load that starts mid-run (--after) has a section of its own
MIDRUN_START, MIDRUN_END = "<!-- bench_threads_load_midrun:start -->", "<!-- bench_threads_load_midrun:end -->"
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


def timed(args: list[str], burners: int, after: float = 0.0) -> float:
    """`alrun ARGS` in a fresh folder, with BURNERS busy loops running beside it from AFTER seconds on."""
    burn = f"import time; time.sleep({after})\n{BURN}" if after > 0 else BURN
    spinning = [subprocess.Popen([sys.executable, "-c", burn]) for _ in range(burners)]
    try:
        with tempfile.TemporaryDirectory(prefix="alrun-threads-") as tmp:
            return run_alrun(args, Path(tmp))
    finally:
        for proc in spinning:
            proc.kill()
            proc.wait()


def load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def spread(runs: list[tuple[float, float]], column: int) -> str:
    """" [min, max]" of a repeated time, "" for one run."""
    values = [r[column] for r in runs]
    return f" [{min(values):.1f}, {max(values):.1f}]" if len(values) > 1 else ""


def record(block: str, path: Path, start: str = MARK_START, end: str = MARK_END) -> None:
    """Put the section (between START and END) into RESULTS.md, replacing an earlier one."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + block + rest.split(end, 1)[1].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text)


def kept_section(path: Path) -> str:
    """This benchmark's sections of an existing RESULTS.md (with their markers), or "": benchmarks/run.py keeps
    them."""
    text = path.read_text() if path.exists() else ""
    return "".join(text[text.index(start): text.index(end) + len(end)] + "\n"
                   for start, end in ((MARK_START, MARK_END), (MIDRUN_START, MIDRUN_END))
                   if start in text and end in text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--args", nargs="+", default=["", "scale=smoke"],
                        help="alrun's arguments, one string per command ('' for bare alrun)")
    parser.add_argument("--threads", nargs="+", default=["auto", "2"], help="threads settings to compare")
    parser.add_argument("--burners", type=int, default=2, help="CPU-bound processes beside the loaded runs")
    parser.add_argument("--after", type=float, default=0.0,
                        help="start the busy loops this many seconds after alrun (load that begins mid-run)")
    parser.add_argument("--repeats", type=int, default=1, help="how many times each pair runs (medians reported)")
    parser.add_argument("--note", default="", help="how the machine was (other work on it), for the record")
    parser.add_argument("--record", action="store_true", help="write the section into benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    load_before, started = load(), datetime.now(timezone.utc)
    rows = []
    for line in args.args:
        base = line.split()
        times = {}
        for threads in args.threads:
            command = [*base, f"threads={threads}"]
            runs = [(timed(command, 0), timed(command, args.burners, args.after)) for _ in range(max(1, args.repeats))]
            quiet, busy = (statistics.median(r[i] for r in runs) for i in (0, 1))
            times[threads] = (quiet, busy, runs)
            print(f"alrun {line or '(bare)'} threads={threads}: {quiet:.1f} s as the machine is, {busy:.1f} s beside "
                  f"{args.burners} busy loops ({busy / quiet:.2f}x)"
                  + (f"; runs {', '.join(f'{q:.1f}/{b:.1f}' for q, b in runs)}" if len(runs) > 1 else ""), flush=True)
        auto = times.get("auto", (math.nan,))[0]
        rows += [(line or "(bare)", t, q, b, b / auto, runs) for t, (q, b, runs) in times.items()]
    command = " ".join(["python -m benchmarks.bench_threads_load",
                        *(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))])
    start, end = (MIDRUN_START, MIDRUN_END) if args.after > 0 else (MARK_START, MARK_END)
    title = "## alrun when CPU-bound processes start mid-run (threads)" if args.after > 0 else \
        "## alrun beside CPU-bound processes (threads)"
    lines = [start, title, "",
             f"Written by `{command}` on {started:%Y-%m-%d %H:%M} (UTC); do not edit by hand. Each row: "
             f"`alrun ARGS threads=T` as the machine was and beside {args.burners} busy loops"
             + (f" started {args.after:g} s after it" if args.after > 0 else "")
             + (f", {args.repeats} times each, pairs interleaved (medians; the range in brackets)" if args.repeats > 1
                else ", once each") + "; "
             f"{os.cpu_count()} cores, load average (1, 5, 15 min) {load_before} before, {load()} after"
             + (f"; {args.note}" if args.note else "") + ". The last column is the loaded time over the unloaded "
             "time at `threads=auto`, the default: the slow-down a user sees when other work shares the machine.",
             "",
             "| alrun | threads | as the machine was (s) | beside the busy loops (s) | ratio | over auto unloaded |",
             "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {a} | {t} | {q:.1f}{spread(runs, 0)} | {b:.1f}{spread(runs, 1)} | {b / q:.2f}x | {r:.2f}x |"
              for a, t, q, b, r, runs in rows]
    block = "\n".join([*lines, end]) + "\n"
    if args.record:
        record(block, HERE / "RESULTS.md", start, end)
        print(f"wrote {HERE / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
