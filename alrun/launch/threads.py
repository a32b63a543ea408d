"""How many CPU threads torch uses in a job (`threads`, default `auto`).

torch's default is every core of the machine in every process; jobs that run at once on one machine then
each start that many threads, and their parallel regions wait for each other's descheduled threads (on 2
shared cores one step took 45 s instead of under 1 s). `auto` gives each job its share of the cores instead:

- joblib: the cores this process may run on, divided by `n_jobs` (the jobs running at once);
- submitit (SLURM, submitit_local): `cpus_per_task`; Ray: `num_cpus` (the cores the scheduler gave the job);
- the basic launcher: the cores this process may run on (`os.sched_getaffinity`).

On a machine that other work shares (the basic launcher and joblib: a share of this machine, not an allocation)
`auto` also leaves the cores other processes keep busy: at a job's start it looks for SAMPLE_S at /proc/stat's
counters of its own cores (niced work left out: it yields to a job anyway), and takes no more threads than the
cores left free, at least 1. Two busy loops beside bare `alrun` on 2 cores: 1 thread, 1.55x the unloaded time
(1.5x is one thread's fair share there), where 2 threads took 6.0x (their parallel regions wait for each
other's descheduled threads); benchmarks/bench_threads_load measures it (docs: reference/speed.md).

OMP_NUM_THREADS, when set, caps the basic launcher's and joblib's count (the user's limit, or joblib's own);
the cores a scheduler allocated (cpus_per_task, num_cpus) are used as they are. The count is set once per job
(torch.set_num_threads) and recorded in job.json: results are bit-identical between runs only at equal
thread counts (the order of float additions in a parallel reduction depends on it).
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Mapping, Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity: a SLURM job's allocation, a `taskset`), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no sched_getaffinity (macOS)
        return max(1, os.cpu_count() or 1)


# how long a job's start looks at the machine's load: /proc/stat counts in 1/100 s per core, so 0.1 s tells
# a busy core from a free one to about a tenth of a core, for 0.1 s of each job
SAMPLE_S = 0.1
BUSY_FIELDS = (0, 2, 5, 6, 7)  # /proc/stat's user, system, irq, softirq, steal (not nice, idle, iowait)


def busy_seconds(cpus: Sequence[int], stat: str | None = None) -> float | None:
    """CPU seconds that CPUS have spent busy since boot (niced work, idle and iowait left out), from the text of
    /proc/stat (read when not given); None where there is none (not Linux) or it names none of CPUS."""
    if stat is None:
        try:
            with open("/proc/stat") as handle:
                stat = handle.read()
        except OSError:
            return None
    wanted, ticks, seen = {f"cpu{c}" for c in cpus}, 0, False
    for line in stat.splitlines():
        fields = line.split()
        if fields and fields[0] in wanted:
            values = [int(v) for v in fields[1:]]
            ticks += sum(values[i] for i in BUSY_FIELDS if i < len(values))
            seen = True
    if not seen:
        return None
    return ticks / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU seconds this process has used, all its threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def busy_elsewhere(seconds: float = SAMPLE_S) -> float | None:
    """How many of this process's cores other processes keep busy, measured over SECONDS (this process's own
    use left out); None where the system does not tell (no /proc/stat)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None
    first, own, tic = busy_seconds(cpus), own_cpu_seconds(), time.monotonic()
    if first is None:
        return None
    time.sleep(seconds)
    last = busy_seconds(cpus)
    wall = time.monotonic() - tic
    if last is None or wall <= 0:
        return None
    return min(float(len(cpus)), max(0.0, (last - first - (own_cpu_seconds() - own)) / wall))


def _positive_int(value: Any) -> int | None:
    try:
        number = int(float(value))
    except (TypeError, ValueError):
        return None
    return number if number >= 1 else None


def auto_threads(launcher: Mapping[str, Any] | DictConfig | None, environ: Mapping[str, str] | None = None,
                 cores: int | None = None, others_busy: float | None = None) -> tuple[int, str]:
    """`threads=auto` for a job of LAUNCHER (the job's `hydra.launcher` node; None: the basic launcher): the
    count and how it was found, for the log. CORES: the cores this process may run on (default: its affinity);
    OTHERS_BUSY: how many of them other processes keep busy (default: measured, :func:`busy_elsewhere`, when
    CORES is this machine's; 0 when CORES is given)."""
    environ = os.environ if environ is None else environ
    measure = cores is None and others_busy is None
    cores = cores or available_cores()
    node = launcher if launcher is not None else {}
    target = str(node.get("_target_", "") or "")
    # the cores a scheduler allocated to the job are its own: they win over an OMP_NUM_THREADS of the submitting
    # shell (as before this setting existed); only a share of this machine's cores is capped by it
    if _positive_int(node.get("cpus_per_task")):
        return _positive_int(node.get("cpus_per_task")) or 1, "the job's cpus_per_task"
    if node.get("num_cpus") is not None:
        return _positive_int(node.get("num_cpus")) or 1, "the job's Ray num_cpus"
    if "joblib" in target.lower():
        n_jobs = int(node.get("n_jobs") or -1)
        at_once = n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)  # joblib's -1: every core, -2: all but one
        count, why = max(1, cores // at_once), f"{cores} cores / {at_once} joblib jobs at once"
    else:
        count, why = cores, f"the {cores} cores this process may use"
    cap = _positive_int(environ.get("OMP_NUM_THREADS"))
    if cap is not None and cap < count:
        count, why = cap, f"{why}, capped by OMP_NUM_THREADS={cap}"
    busy = (busy_elsewhere() if measure else others_busy) if count > 1 else None  # one thread: no look needed
    if busy is not None:
        free = max(1, int(cores - busy + 0.5))  # rounded: a core 60% busy with other work is not free
        if free < count:
            count, why = free, f"{why}, {busy:.1f} of them busy with other work"
    return count, why


def job_threads(setting: int | str, hydra_cfg: DictConfig | None, environ: Mapping[str, str] | None = None,
                cores: int | None = None) -> tuple[int, str]:
    """The thread count for a job: SETTING itself when it is a number, else :func:`auto_threads` for the launcher
    of HYDRA_CFG (the job's Hydra config; None outside Hydra)."""
    if setting != "auto":
        return int(setting), "threads setting"
    launcher = OmegaConf.select(hydra_cfg, "launcher", default=None) if hydra_cfg is not None else None
    plain = OmegaConf.to_container(launcher, resolve=True) if isinstance(launcher, DictConfig) else launcher
    return auto_threads(plain if isinstance(plain, Mapping) else None, environ, cores)


def set_job_threads(count: int) -> int:
    """Set torch's CPU threads for this process's job (once per job); returns the count torch now uses."""
    import torch

    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return torch.get_num_threads()
