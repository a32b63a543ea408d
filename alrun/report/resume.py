"""The command that adds seeds to a sweep folder: the sweep's own overrides, read from its multirun.yaml, with a
new seed range and the same folder, ready to paste."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

# overrides of the launch, not of the study: the folder is given anew, the mode is alrun's own
_LAUNCH_ONLY = ("hydra.sweep.dir", "hydra.run.dir", "hydra.mode")


def sweep_overrides(sweep_dir: Path) -> tuple[list[str], list[str]] | None:
    """(the task overrides, the hydra overrides) the sweep in `sweep_dir` was launched with, from its
    multirun.yaml as Hydra wrote it; None when it has none (a folder copied without it)."""
    from omegaconf import OmegaConf

    path = Path(sweep_dir) / "multirun.yaml"
    if not path.is_file():
        return None
    try:
        recorded = OmegaConf.load(path)
        task = OmegaConf.select(recorded, "hydra.overrides.task", default=None)
        hydra = OmegaConf.select(recorded, "hydra.overrides.hydra", default=None)
    except Exception:  # noqa: BLE001 - an unreadable file is a folder without a command to repeat
        return None
    if task is None:
        return None
    return [str(o) for o in task], [str(o) for o in (hydra or [])]


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def folder_text(sweep_dir: Path) -> str:
    """The folder as a command should name it: relative to the working directory when it lies below it."""
    folder = Path(sweep_dir).resolve()
    try:
        return str(folder.relative_to(Path(os.getcwd()).resolve()))
    except ValueError:
        return str(folder)


def seeds_command(sweep_dir: Path, seeds: int) -> str | None:
    """`alrun <the sweep's overrides> 'seed=range(0,N)' hydra.sweep.dir=<folder>`: runs seeds 0 to N-1 into the
    same folder (the seeds it has are finished and skipped). None without a multirun.yaml."""
    recorded = sweep_overrides(sweep_dir)
    if recorded is None:
        return None
    task, hydra = recorded
    kept = [o for o in task if _key(o) != "seed"]
    launch = [o for o in hydra if _key(o) not in _LAUNCH_ONLY]
    words = ["alrun", *kept, *launch, f"seed=range(0,{seeds})", f"hydra.sweep.dir={folder_text(sweep_dir)}"]
    return " ".join(shlex.quote(w) for w in words)


def until_command(sweep_dir: Path, max_seeds: int) -> str | None:
    """`alrun <the sweep's overrides> until=decided max_seeds=N hydra.sweep.dir=<folder>`: adds seeds to the same
    folder in rounds (alrun.launch.until), its seeds so far the first round, and stops once every primary
    comparison is decided or at N seeds; never more seeds than :func:`seeds_command`, often fewer. None without
    a multirun.yaml."""
    recorded = sweep_overrides(sweep_dir)
    if recorded is None:
        return None
    task, hydra = recorded
    kept = [o for o in task if _key(o) not in ("until", "max_seeds", "seeds_per_round")]
    launch = [o for o in hydra if _key(o) not in _LAUNCH_ONLY]
    words = ["alrun", *kept, *launch, "until=decided", f"max_seeds={max_seeds}",
             f"hydra.sweep.dir={folder_text(sweep_dir)}"]
    return " ".join(shlex.quote(w) for w in words)
