"""How many CPU threads torch uses in a job (`threads`, default `auto`).

torch's default is every core of the machine in every process; jobs that run at once on one machine then
each start that many threads, and their parallel regions wait for each other's descheduled threads (on 2
shared cores one step took 45 s instead of under 1 s). `auto` gives each job its share of the cores instead:

- joblib: the cores this process may run on, divided by `n_jobs` (the jobs running at once);
- submitit (SLURM, submitit_local): `cpus_per_task`; Ray: `num_cpus` (the cores the scheduler gave the job);
- the basic launcher: the cores this process may run on (`os.sched_getaffinity`).

OMP_NUM_THREADS, when set, caps the basic launcher's and joblib's count (the user's limit, or joblib's own);
the cores a scheduler allocated (cpus_per_task, num_cpus) are used as they are. The count is set once per job
(torch.set_num_threads) and recorded in job.json: results are bit-identical between runs only at equal
thread counts (the order of float additions in a parallel reduction depends on it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity: a SLURM job's allocation, a `taskset`), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no sched_getaffinity (macOS)
        return max(1, os.cpu_count() or 1)


def _positive_int(value: Any) -> int | None:
    try:
        number = int(float(value))
    except (TypeError, ValueError):
        return None
    return number if number >= 1 else None


def auto_threads(launcher: Mapping[str, Any] | DictConfig | None, environ: Mapping[str, str] | None = None,
                 cores: int | None = None) -> tuple[int, str]:
    """`threads=auto` for a job of LAUNCHER (the job's `hydra.launcher` node; None: the basic launcher): the
    count and how it was found, for the log. CORES: the cores this process may run on (default: its affinity)."""
    environ = os.environ if environ is None else environ
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
