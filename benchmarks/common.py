"""What every benchmark shares: best-of-N timing, peak memory, the peer's quiet setup, the machine.

The machine these run on may be shared, so every figure is the minimum over repeats, with alrun's
and the peer's repeats interleaved so that a busy moment hits both alike.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

PEER = "baal"
PEER_VERSION = "2.1.0"


def require_baal():
    """Import BaaL and silence its per-call log lines; one clear sentence when it is missing."""
    try:
        import baal
        import structlog
    except ImportError:
        raise SystemExit(
            "The benchmarks compare against BaaL 2.1.0, which is not installed: run `nox -s bench`, or "
            "`pip install --no-deps baal==2.1.0 structlog h5py tqdm torchmetrics scikit-learn`."
        ) from None
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    return baal


def interleaved_best(fns: dict[str, Callable[[], object]], repeats: int, warmup: bool = True) -> dict[str, float]:
    """Minimum wall time (s) of each callable over `repeats` rounds; each round calls every one once.

    Interleaving makes load from other processes fall on all contenders alike; the minimum is the
    run least disturbed by it. `warmup` runs each once untimed first (lazy initialisation, caches).
    """
    if warmup:
        for fn in fns.values():
            fn()
    best = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            gc.collect()
            tic = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - tic)
    return best


def row(name: str, alrun_s: float, peer_s: float, **extra) -> dict:
    """One result row in the shape benchmarks/run.py prints and tabulates."""
    return {"name": name, "alrun_s": alrun_s, "peer_s": peer_s, "speedup": peer_s / alrun_s, **extra}


def status_kib(key: str) -> int:
    """A kiB field of /proc/self/status (VmRSS, VmHWM)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise OSError(f"no {key} in /proc/self/status")


def peak_extra_mib(fn: Callable[[], object]) -> float:
    """Peak resident memory (MiB) that `fn` adds on top of what the process held before it.

    The kernel's high-water mark is reset to the current resident size (/proc/self/clear_refs)
    just before the call and read after it. Meant to be called once in a fresh process (see
    :func:`in_subprocess`), where no freed memory can be reused unseen. Linux only.
    """
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to VmRSS
    before = status_kib("VmRSS")
    fn()
    return max(0.0, (status_kib("VmHWM") - before) / 1024)


def in_subprocess(module: str, *args: str) -> dict:
    """Run `python -m module args...` (which prints one JSON object last) and return that object.

    The child gets this process's torch thread count (OMP_NUM_THREADS), so `--threads` reaches it too.
    """
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=root, capture_output=True, text=True,
                          timeout=600, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, str]:
    """What the figures depend on: CPU, cores, library versions, threads, load."""
    from importlib.metadata import PackageNotFoundError, version

    import numpy

    try:
        baal_version = version("baal")
    except PackageNotFoundError:
        baal_version = "not installed"

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {
        "cpu": cpu_model(),
        "cores": str(os.cpu_count()),
        "torch threads": str(torch.get_num_threads()),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "baal": baal_version,
        "python": platform.python_version(),
        "os": platform.platform(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CPU)",
        "load average (1, 5, 15 min)": ", ".join(f"{v:.2f}" for v in load),
    }
