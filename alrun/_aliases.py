"""The flat module paths of alrun 0.1 (`alrun.models`, `alrun.heuristics`, ...) as aliases of their homes in
the packages, so that users' `_target_`s, imports and pickles keep working. An alias is the same module object
(sys.modules holds it under both names): a monkeypatch or an isinstance check sees one module. The three old
modules whose names are now packages (alrun.config, alrun.loop, alrun.report) re-export from the package.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

MOVED = {
    "alrun.acquisition": "alrun.acquire.acquisition",
    "alrun.active_set": "alrun.loop.active_set",
    "alrun.backbones": "alrun.model.backbones",
    "alrun.batch": "alrun.acquire.batch",
    "alrun.checkpoint": "alrun.loop.checkpoint",
    "alrun.components": "alrun.config.components",
    "alrun.custom_heuristic": "alrun.acquire.custom",
    "alrun.custom_model": "alrun.model.custom",
    "alrun.devices": "alrun.core.devices",
    "alrun.diversity": "alrun.acquire.diversity",
    "alrun.embeddings": "alrun.acquire.embeddings",
    "alrun.errors": "alrun.core.errors",
    "alrun.features": "alrun.model.features",
    "alrun.filelock": "alrun.core.filelock",
    "alrun.fit_guard": "alrun.train.fit_guard",
    "alrun.heuristics": "alrun.acquire.heuristics",
    "alrun.hydra_callbacks": "alrun.launch.callbacks",
    "alrun.inference": "alrun.model.inference",
    "alrun.job_folders": "alrun.launch.job_folders",
    "alrun.labelled_sets": "alrun.loop.labelled_sets",
    "alrun.launchers": "alrun.launch.launchers",
    "alrun.mc_probe": "alrun.model.mc_probe",
    "alrun.mlflow_logger": "alrun.track.mlflow_logger",
    "alrun.models": "alrun.model.builders",
    "alrun.progress": "alrun.report.terminal",
    "alrun.ray_launch": "alrun.launch.ray_launch",
    "alrun.seeding": "alrun.core.seeding",
    "alrun.settings": "alrun.config.settings",
    "alrun.stats": "alrun.report.stats",
    "alrun.tracked_values": "alrun.track.values",
    "alrun.tracking": "alrun.track.tracker",
    "alrun.training": "alrun.train.fit",
    "alrun.verdict": "alrun.report.verdict",
}


class _AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old path and loads it as the module at its new path."""

    def find_spec(self, name, path=None, target=None):
        if name not in MOVED:
            return None
        return importlib.util.spec_from_loader(name, self)

    def create_module(self, spec):
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module) -> None:
        """Nothing to run: the module at the new path is already executed."""


def install() -> None:
    """Put the alias finder on sys.meta_path once (alrun/__init__ calls it)."""
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.append(_AliasFinder())


def names_of(package: str, source: str, submodules: frozenset[str]):
    """A package's module `__getattr__` that finds alrun 0.1's names of `package` in its module `source`
    (alrun/config.py became alrun/config/schema.py, alrun/loop.py alrun/loop/job.py); its submodules load as
    usual."""

    def __getattr__(name: str):
        if name in submodules or name.startswith("__"):
            raise AttributeError(name)
        try:
            return getattr(importlib.import_module(source), name)
        except AttributeError:
            raise AttributeError(f"module '{package}' has no attribute '{name}'") from None

    return __getattr__
