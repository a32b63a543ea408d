"""Which device a job runs on.

A job uses the devices it is given: under SLURM (one GPU per job) the scheduler sets
CUDA_VISIBLE_DEVICES, so the job sees one GPU, `cuda:0`. When several jobs share a machine that
shows them several GPUs (the joblib launcher, or submitit_local with `gpus_per_node` set to all of
them), `auto` spreads them by the job's number in the sweep: job k runs on `cuda:(k % count)`.
"""

from __future__ import annotations

import torch

from alrun.errors import ConfigError


def choose_device(name: str, job_index: int = 0, device_count: int | None = None) -> str:
    """The concrete device string for a job: `cpu`, or `cuda:N`.

    name: `auto` (a GPU when there is one, else the CPU), `cpu`, `cuda` (a GPU, spread like
    auto) or `cuda:N` (that GPU). job_index: the job's number in the sweep (Hydra's
    `hydra.job.num`). device_count: the visible CUDA devices (default: torch's count).
    """
    count = torch.cuda.device_count() if device_count is None else device_count
    if name == "cpu" or (name == "auto" and count == 0):
        return "cpu"
    if name in ("auto", "cuda"):
        if count == 0:
            raise ConfigError(f"`device={name}` is not allowed: this machine has no CUDA device (use auto or cpu).")
        return f"cuda:{job_index % count}"
    if name.startswith("cuda:"):
        index = name.split(":", 1)[1]
        if count == 0:
            raise ConfigError(f"`device={name}` is not allowed: this machine has no CUDA device (use auto or cpu).")
        if not index.isdigit() or int(index) >= count:
            raise ConfigError(
                f"`device={name}` is not allowed: this job sees {count} CUDA device(s) "
                f"(cuda:0 to cuda:{count - 1}; use auto to spread jobs over them)."
            )
        return name
    raise ConfigError(f"`device={name}` is not allowed: use auto, cpu, cuda or cuda:N.")


def resolve_device(name: str, job_index: int = 0) -> torch.device:
    """:func:`choose_device` as a torch.device."""
    return torch.device(choose_device(name, job_index))
