"""The Hydra Launcher behind `hydra/launcher=slurm` (configs/hydra/launcher/slurm.yaml): hydra-submitit-launcher's
SLURM launcher with alrun's re-run and lost-job handling (alrun/launch/launchers.py). Hydra imports every module under
`hydra_plugins` at start-up; without hydra-submitit-launcher (the `cluster` extra) this one defines nothing, and
`hydra/launcher=slurm` then fails as the plugin's own config would."""

from __future__ import annotations

try:
    from alrun.launch.launchers import SlurmLauncher as _AlrunSlurmLauncher
except ImportError:  # the `cluster` extra is not installed
    _AlrunSlurmLauncher = None

if _AlrunSlurmLauncher is not None:

    class SlurmLauncher(_AlrunSlurmLauncher):
        """`hydra/launcher=slurm`: see alrun.launch.launchers.SlurmLauncher."""
