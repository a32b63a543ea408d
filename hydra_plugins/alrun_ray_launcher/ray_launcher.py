"""The Hydra Launcher behind `hydra/launcher=ray` (configs/hydra/launcher/ray.yaml). Hydra imports every module
under `hydra_plugins` at start-up, so this one imports neither ray nor the launching code until a sweep uses it."""

from __future__ import annotations

from collections.abc import Sequence

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class RayLauncher(Launcher):
    """One Ray task per job on a running Ray cluster (alrun.launch.ray_launch).

    address: the cluster to join (`auto`: the one `ray start` started on this machine, or $RAY_ADDRESS, and
    when none runs a local Ray started for the sweep; `local` or null: always a local Ray; else HOST:PORT of its
    head, and only it). num_cpus, num_gpus: each job's resources. max_retries: how many times Ray
    starts a job again after its worker or node died.
    """

    def __init__(self, address: str | None = "auto", num_cpus: float = 1, num_gpus: float = 0,
                 max_retries: int = 3) -> None:
        self.address, self.num_cpus, self.num_gpus, self.max_retries = address, num_cpus, num_gpus, max_retries
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from alrun.launch.ray_launch import launch

        return launch(self, job_overrides, initial_job_idx)

