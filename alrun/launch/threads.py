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
cores left free, at least 1; then, at each finished step, :class:`ThreadWatch` looks at the load over that step
and moves the count (up to the share, down to 1) for the next, so load that starts or ends mid-job is followed.
Two busy loops beside bare `alrun` on 2 cores: 1 thread, 0.93x the unloaded time when the loops run in
another session (autogroup shares the CPU by session), 1.47x in alrun's own (1.5x is one thread's fair share
there), where 2 threads took 6.0x (their parallel regions wait for each
other's descheduled threads); benchmarks/bench_threads_load measures it (docs: reference/speed.md).

OMP_NUM_THREADS, when set, caps the basic launcher's and joblib's count (the user's limit, or joblib's own);
the cores a scheduler allocated (cpus_per_task, num_cpus) are used as they are. The count a job starts with is
recorded in job.json and each move in its log: results are bit-identical between runs only at equal thread
counts (the order of float additions in a parallel reduction depends on it), so a number (`threads=1`) is the
setting for runs that must repeat to the last digit.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable, Mapping, Sequence
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


def machine_share(launcher: Mapping[str, Any] | DictConfig | None, environ: Mapping[str, str] | None = None,
                  cores: int | None = None) -> tuple[int, str, bool]:
    """The threads LAUNCHER's job may use before other work is looked at: the count, how it was found, and
    whether it is a share of this machine (the basic launcher, joblib) rather than a scheduler's allocation."""
    environ = os.environ if environ is None else environ
    cores = cores or available_cores()
    node = launcher if launcher is not None else {}
    target = str(node.get("_target_", "") or "")
    # the cores a scheduler allocated to the job are its own: they win over an OMP_NUM_THREADS of the submitting
    # shell (as before this setting existed); only a share of this machine's cores is capped by it
    if _positive_int(node.get("cpus_per_task")):
        return _positive_int(node.get("cpus_per_task")) or 1, "the job's cpus_per_task", False
    if node.get("num_cpus") is not None:
        return _positive_int(node.get("num_cpus")) or 1, "the job's Ray num_cpus", False
    if "joblib" in target.lower():
        n_jobs = int(node.get("n_jobs") or -1)
        at_once = n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)  # joblib's -1: every core, -2: all but one
        count, why = max(1, cores // at_once), f"{cores} cores / {at_once} joblib jobs at once"
    else:
        count, why = cores, f"the {cores} cores this process may use"
    cap = _positive_int(environ.get("OMP_NUM_THREADS"))
    if cap is not None and cap < count:
        count, why = cap, f"{why}, capped by OMP_NUM_THREADS={cap}"
    return count, why, True


def cores_left(cores: int, busy: float) -> int:
    """The cores of CORES that BUSY cores of other work leave free, at least 1; rounded: a core 60% busy with
    other work is not free."""
    return max(1, int(cores - busy + 0.5))


def auto_threads(launcher: Mapping[str, Any] | DictConfig | None, environ: Mapping[str, str] | None = None,
                 cores: int | None = None, others_busy: float | None = None) -> tuple[int, str]:
    """`threads=auto` for a job of LAUNCHER (the job's `hydra.launcher` node; None: the basic launcher): the
    count and how it was found, for the log. CORES: the cores this process may run on (default: its affinity);
    OTHERS_BUSY: how many of them other processes keep busy (default: measured, :func:`busy_elsewhere`, when
    CORES is this machine's; 0 when CORES is given)."""
    measure = cores is None and others_busy is None
    cores = cores or available_cores()
    count, why, shared = machine_share(launcher, environ, cores)
    if not shared:
        return count, why
    busy = (busy_elsewhere() if measure else others_busy) if count > 1 else None  # one thread: no look needed
    if busy is not None and cores_left(cores, busy) < count:
        count, why = cores_left(cores, busy), f"{why}, {busy:.1f} of them busy with other work"
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


# a step shorter than this tells too little of the machine's load (and a resumed job replays its finished steps at
# once): the watch then waits for the next one
WATCH_MIN_S = 0.5


class ThreadWatch:
    """Looks at the machine again at each finished step of a job at `threads=auto` that takes a share of this
    machine, and moves torch's threads between 1 and CEILING (the share) to the cores other work leaves free:
    load that starts (or ends) in the middle of a job is followed from its next step. The look is over the step
    itself (its own CPU time left out, as at the start), so it costs no waiting. `changes` keeps
    (step, count) for each move; the job's log says each."""

    def __init__(self, ceiling: int, count: int, cpus: Sequence[int] | None = None,
                 read: Callable[[], tuple[float | None, float, float]] | None = None,
                 apply: Callable[[int], int] | None = None, log: Callable[[str], None] | None = None):
        if cpus is None:
            try:
                cpus = sorted(os.sched_getaffinity(0))
            except (AttributeError, OSError):
                cpus = []
        self.cpus, self.ceiling, self.count = list(cpus), ceiling, count
        self._read = read or (lambda: (busy_seconds(self.cpus), own_cpu_seconds(), time.monotonic()))
        self._apply, self._log = apply or set_job_threads, log or (lambda message: None)
        self.changes: list[tuple[int, int]] = []
        self._last = self._read()

    def on_step(self, row: Mapping[str, Any], total: int) -> None:
        """A step callback (alrun.track.base.chain): the load over the step just finished sets the next one's
        threads."""
        now = self._read()
        (busy_then, own_then, then), (busy_now, own_now, at) = self._last, now
        wall = at - then
        if busy_now is None or busy_then is None or not self.cpus or wall < WATCH_MIN_S:
            return
        self._last = now
        cores = len(self.cpus)
        busy = min(float(cores), max(0.0, (busy_now - busy_then - (own_now - own_then)) / wall))
        wanted = min(self.ceiling, cores_left(cores, busy))
        if wanted != self.count:
            before, self.count = self.count, self._apply(wanted)
            self.changes.append((int(row.get("step", len(self.changes))) + 1, self.count))
            self._log(f"torch threads: {before} -> {self.count} from step {self.changes[-1][0]} ({busy:.1f} of "
                      f"{cores} cores busy with other work over step {row.get('step')})")


def thread_watch(setting: int | str, hydra_cfg: DictConfig | None, count: int,
                 log: Callable[[str], None] | None = None) -> ThreadWatch | None:
    """The watch for a job whose threads were set to COUNT by SETTING under HYDRA_CFG's launcher: None where
    nothing would move (a number given, a scheduler's allocation, a share of one core)."""
    if setting != "auto":  # without /proc/stat (not Linux) the watch reads nothing and leaves the count as it is
        return None
    launcher = OmegaConf.select(hydra_cfg, "launcher", default=None) if hydra_cfg is not None else None
    plain = OmegaConf.to_container(launcher, resolve=True) if isinstance(launcher, DictConfig) else launcher
    ceiling, _, shared = machine_share(plain if isinstance(plain, Mapping) else None)
    if not shared or ceiling <= 1:
        return None
    return ThreadWatch(ceiling, count, log=log)
