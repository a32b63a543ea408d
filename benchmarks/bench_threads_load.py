"""`alrun` beside CPU-bound processes: wall time with and without two busy loops running, per `threads` setting.

    python -m benchmarks.bench_threads_load [--args "" "scale=smoke"] [--threads auto 2] [--burners 2]
                                            [--after 0] [--sessions other same] [--repeats 1] [--note TEXT]
                                            [--record]

Runs `alrun ARGS threads=T` into a fresh folder, once on the machine as it is and once per SESSIONS with BURNERS
processes spinning on the CPU beside it (`while True: pass`, from AFTER seconds on, stopped after), for each ARGS
and T, REPEATS times (interleaved; the table gives the medians, and the range when repeated). `other` puts the
busy loops in one session of their own, as another login's, terminal's or batch job's work is; `same` starts them
as children of this benchmark, in alrun's own session, as a user's own other work from the same shell. The two
differ where the kernel's autogroup scheduler is on (most distributions' default): the CPU is shared between
sessions first, so beside another session's loops a one-thread job keeps a whole core of two, and beside loops
of its own session it gets two thirds of one (three busy threads on two cores: 1.5x is the floor there).
OMP_NUM_THREADS is removed from the children's environment so that `auto` is not capped by it. `threads=N` with N
the machine's cores is what `auto` was before it left the cores other work keeps busy. `--record` puts the table
into benchmarks/RESULTS.md (its own section, which benchmarks/run.py keeps), with the machine's cores and its load
averages before and after. Not run by the tests (no test times anything)."""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
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


def spin(burners: int, after: float, session: str) -> list[subprocess.Popen]:
    """Start BURNERS busy loops (from AFTER seconds on). SESSION "other": all of them in one session of their own,
    as another login's or terminal's work is (Linux's autogroup scheduler shares the CPU between sessions, then
    between the threads of each); "same": each a child in the benchmark's (and so alrun's) session."""
    burn = f"import time; time.sleep({after})\n{BURN}" if after > 0 else BURN
    if session == "same":
        return [subprocess.Popen([sys.executable, "-c", burn]) for _ in range(burners)]
    # one session leader that forks the rest: the forks keep its session and process group
    forks = f"import os\nfor _ in range({burners - 1}):\n    if os.fork() == 0:\n        break\n{burn}"
    return [subprocess.Popen([sys.executable, "-c", forks], start_new_session=True)] if burners else []


def stop(spinning: list[subprocess.Popen]) -> None:
    """Kill the busy loops (a session's whole process group)."""
    for proc in spinning:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL) if os.getpgid(proc.pid) == proc.pid else proc.kill()
        proc.wait()


def timed(args: list[str], burners: int, after: float = 0.0, session: str = "other") -> float:
    """`alrun ARGS` in a fresh folder, with BURNERS busy loops (in SESSION) running beside it from AFTER s on."""
    spinning = spin(burners, after, session)
    try:
        with tempfile.TemporaryDirectory(prefix="alrun-threads-") as tmp:
            return run_alrun(args, Path(tmp))
    finally:
        stop(spinning)


SESSION_TEXT = {"other": "a session of their own", "same": "alrun's own session"}


def autogroup() -> str:
    """The kernel's autogroup switch ('1': the CPU is shared between sessions first), or 'absent'."""
    try:
        return Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip()
    except OSError:
        return "absent"


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
        text = before + block + "\n" + rest.split(end, 1)[1].lstrip("\n")
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
    parser.add_argument("--sessions", nargs="+", choices=list(SESSION_TEXT), default=["other", "same"],
                        help="where the busy loops run: 'other' (one session of their own, as another login's "
                             "work), 'same' (children of this benchmark, in alrun's session)")
    args = parser.parse_args(argv)
    load_before, started = load(), datetime.now(timezone.utc)
    rows = []
    for line in args.args:
        base = line.split()
        for threads in args.threads:
            command = [*base, f"threads={threads}"]
            # runs[i] = (unloaded, loaded in sessions[0], loaded in sessions[1], ...): interleaved against drift
            runs = [(timed(command, 0), *(timed(command, args.burners, args.after, where) for where in args.sessions))
                    for _ in range(max(1, args.repeats))]
            medians = [statistics.median(r[i] for r in runs) for i in range(len(runs[0]))]
            rows.append((line or "(bare)", threads, medians, runs))
            print(f"alrun {line or '(bare)'} threads={threads}: {medians[0]:.1f} s as the machine is; "
                  + "; ".join(f"{m:.1f} s beside {args.burners} busy loops in {SESSION_TEXT[where]} "
                              f"({m / medians[0]:.2f}x)" for where, m in zip(args.sessions, medians[1:], strict=True))
                  + (f"; runs {', '.join('/'.join(f'{t:.1f}' for t in r) for r in runs)}" if len(runs) > 1 else ""),
                  flush=True)
    command = " ".join(["python -m benchmarks.bench_threads_load",
                        *(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))])
    start, end = (MIDRUN_START, MIDRUN_END) if args.after > 0 else (MARK_START, MARK_END)
    title = "## alrun when CPU-bound processes start mid-run (threads)" if args.after > 0 else \
        "## alrun beside CPU-bound processes (threads)"
    lines = [start, title, "",
             f"Written by `{command}` on {started:%Y-%m-%d %H:%M} (UTC); do not edit by hand. Each row: "
             f"`alrun ARGS threads=T` as the machine was and beside {args.burners} busy loops"
             + (f" started {args.after:g} s after it" if args.after > 0 else "")
             + (f", {args.repeats} times each, interleaved (medians; the range in brackets)" if args.repeats > 1
                else ", once each") + "; "
             f"{os.cpu_count()} cores, load average (1, 5, 15 min) {load_before} before, {load()} after"
             + (f"; {args.note}" if args.note else "") + ". The busy loops ran "
             + " or ".join(f"in {SESSION_TEXT[where]}" for where in args.sessions) + " (Linux shares the CPU "
             "between sessions first, then between the threads of each, where the kernel's autogroup scheduler is "
             f"on: `/proc/sys/kernel/sched_autogroup_enabled` = {autogroup()} here). Each ratio is the loaded time "
             "over the unloaded time of the same row: the slow-down a user sees when other work shares the machine.",
             "",
             "| alrun | threads | as the machine was (s) | "
             + " | ".join(f"beside busy loops in {SESSION_TEXT[where]} (s) | ratio" for where in args.sessions) + " |",
             "|---|---|---:|" + "---:|---:|" * len(args.sessions)]
    lines += [f"| {a} | {t} | {m[0]:.1f}{spread(runs, 0)} | "
              + " | ".join(f"{m[i]:.1f}{spread(runs, i)} | {m[i] / m[0]:.2f}x" for i in range(1, len(m))) + " |"
              for a, t, m, runs in rows]
    block = "\n".join([*lines, end]) + "\n"
    if args.record:
        record(block, HERE / "RESULTS.md", start, end)
        print(f"wrote {HERE / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
