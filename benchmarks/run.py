"""Speed against the peers, side by side in one run: ``python -m benchmarks.run [--quick]``.

Runs every ``benchmarks/bench_*.py`` module's ``run(quick: bool) -> list[dict]`` (row keys: name,
alrun_s, peer_s, speedup, optional peer (default "baal") and any extra columns), prints one line
per row, ``NAME: alrun A s, baal B s, speedup B/A``, and writes the table with the machine it ran
on to benchmarks/RESULTS.md. ``nox -s bench [-- --quick]`` installs BaaL 2.1.0 and runs this.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import pkgutil
import sys
import time
import traceback
from pathlib import Path

import torch

import benchmarks
from benchmarks import bench_diversity, bench_threads_load
from benchmarks.common import machine
from benchmarks.gpu_check import kept_section

HERE = Path(__file__).resolve().parent
FIRST = ("bench_inference", "bench_scoring", "bench_step")  # the order; the others follow by name
# run on their own, with no peer, into their own section of RESULTS.md, which this run keeps
STANDALONE = ("bench_diversity", "bench_threads_load")


def discover() -> list[str]:
    """The names of the bench_* modules in this folder."""
    names = sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__)
                   if m.name.startswith("bench_") and m.name not in STANDALONE)
    return [n for n in FIRST if n in names] + [n for n in names if n not in FIRST]


def _num(value: object) -> str:
    if isinstance(value, float):
        if value == 0 or 1e-3 <= abs(value) < 1e5:
            return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
        return f"{value:.2e}"
    return str(value)


def line(r: dict) -> str:
    """The one-line summary of a result row."""
    return (f"{r['name']}: alrun {r['alrun_s']:.3f} s, {r.get('peer', 'baal')} {r['peer_s']:.3f} s, "
            f"speedup {r['speedup']:.1f}x")


def markdown(rows: list[dict], failures: list[str], info: dict[str, str], command: str, started: str,
             elapsed: float, load_after: str) -> str:
    """RESULTS.md: how it was made, on what, and the table."""
    out = [
        "# Benchmark results",
        "",
        f"Made by `{command}` on {started} (UTC), {elapsed:.0f} s in all. Written by benchmarks/run.py: "
        "do not edit by hand, run it again.",
        "",
        "Every time is the minimum over the repeats its row states, alrun's and the peer's repeats interleaved: "
        "the machine may be shared with other work, and the minimum is the run it disturbed least. "
        "Speedup = peer time / alrun time (higher is better for alrun).",
        "",
        "## Machine",
        "",
        *[f"- {key}: {value}" for key, value in info.items()],
        f"- load average after the run: {load_after}",
        "",
        "## Results",
        "",
        "| benchmark | torch threads | alrun (s) | peer | peer (s) | speedup | details |",
        "|---|---:|---:|---|---:|---:|---|",
    ]
    for r in rows:
        extra = "; ".join(f"{k}: {_num(v)}" for k, v in r.items()
                          if k not in ("name", "alrun_s", "peer_s", "speedup", "peer", "threads"))
        out.append(f"| {r['name']} | {r.get('threads', '')} | {r['alrun_s']:.4g} | {r.get('peer', 'baal')} | "
                   f"{r['peer_s']:.4g} | {r['speedup']:.1f}x | {extra} |")
    if failures:
        out += ["", "## Failed or skipped", "", *[f"- {f}" for f in failures]]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and fewer repeats (minutes on 2 cores)")
    parser.add_argument("--only", nargs="+", metavar="MODULE", help="run only these bench_* modules")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md", help="where the table goes")
    parser.add_argument("--threads", type=int, nargs="+", metavar="N",
                        help="torch intra-op threads for both libraries, one whole run per value (default: torch's)")
    args = parser.parse_args(argv)
    names = discover()
    if args.only:
        unknown = sorted(set(args.only) - set(names))
        if unknown:
            parser.error(f"no benchmark module {', '.join(unknown)}; choose from {', '.join(names)}")
        names = [n for n in names if n in args.only]
    command = "python -m benchmarks.run" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    info = machine()  # before the run: the load average then
    info.pop("torch threads")  # a column of the table instead
    tic = time.perf_counter()
    rows: list[dict] = []
    failures: list[str] = []
    skipped: list[str] = []
    for threads in args.threads or [torch.get_num_threads()]:
        torch.set_num_threads(threads)
        suffix = f" ({threads} thread{'s' if threads > 1 else ''})" if args.threads else ""
        for name in names:
            if name in skipped:
                continue
            try:
                module = importlib.import_module(f"benchmarks.{name}")
                if not callable(getattr(module, "run", None)):
                    print(f"{name}: skipped (it has no run(quick) function)", flush=True)
                    skipped.append(name)
                    continue
                for r in module.run(args.quick):
                    r = {**r, "name": r["name"] + suffix, "threads": threads}
                    rows.append(r)
                    print(line(r), flush=True)
            except SystemExit:
                raise
            except Exception as exc:
                traceback.print_exc()
                failures.append(f"{name}{suffix}: {type(exc).__name__}: {exc}")
                print(f"{name}{suffix}: FAILED ({type(exc).__name__}: {exc})", flush=True)
    load_after = machine()["load average (1, 5, 15 min)"]
    info["load average before the run (1, 5, 15 min)"] = info.pop("load average (1, 5, 15 min)")
    if skipped:
        failures += [f"{name}: skipped, it has no run(quick) function" for name in skipped]
    # benchmarks/gpu_check.py's, bench_diversity.py's and bench_threads_load.py's sections are not this run's to drop
    kept = (kept_section(args.out) + bench_diversity.kept_section(args.out)
            + bench_threads_load.kept_section(args.out))
    args.out.write_text(markdown(rows, failures, info, command, started, time.perf_counter() - tic, load_after)
                        + ("\n" + kept if kept else ""))
    print(f"wrote {args.out}")
    return 1 if len(failures) > len(skipped) else 0


if __name__ == "__main__":
    sys.exit(main())
