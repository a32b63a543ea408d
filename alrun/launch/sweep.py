"""What a job knows of its sweep: the sweep's folder, whether its launcher runs it in a process of its own,
and ending a tracked sweep's parent run when the sweep stops."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from alrun.track.tracker import last_line, open_tracker

log = logging.getLogger("alrun")

# the sweep this process launched, set before its first job (ReportCallback): a Ctrl-C reaches the entry point
# outside Hydra, which no longer says which folder it was writing, nor the report's settings
LAUNCHED: dict[str, Any] = {}


def note_launch(folder: Path, config: DictConfig) -> None:
    """Remember the sweep's folder, its report settings (`report.sizes`, `report.target_accuracy`) and its
    tracker."""
    report = OmegaConf.to_container(config.get("report") or {}, resolve=True) or {}
    tracker = OmegaConf.to_container(config.get("tracker"), resolve=True) if config.get("tracker") else None
    LAUNCHED.update(folder=Path(folder), sizes=report.get("sizes"), target=report.get("target_accuracy"),
                    tracker=tracker)


# launchers that run each job in a process of its own, maybe on another host: submitit's, alrun's SLURM launcher on
# it (hydra/launcher=slurm), alrun's Ray launcher
OWN_PROCESS_LAUNCHERS = ("submitit", "alrun_slurm_launcher", "alrun_ray_launcher")


def under_submitit(hydra_cfg: DictConfig) -> bool:
    """Whether this job was started by a launcher that runs it in a process of its own, maybe on another host
    (submitit, or `hydra/launcher=ray`): its exit would reach the launching process only as a traceback."""
    target = str(OmegaConf.select(hydra_cfg, "launcher._target_", default=""))
    return any(name in target for name in OWN_PROCESS_LAUNCHERS)


def sweep_dir_of(hydra_cfg: DictConfig, out_dir: Path) -> Path:
    """The sweep's folder (a single run: its own folder)."""
    multirun = str(OmegaConf.select(hydra_cfg, "mode", default="")).endswith("MULTIRUN")
    return Path(hydra_cfg.sweep.dir) if multirun else out_dir


def end_tracked_sweep(plain: dict[str, Any] | None, hydra_cfg: DictConfig, out_dir: Path, message: str) -> None:
    """With tracker=mlflow, end the sweep's parent run FAILED with `message` (the sweep stops, no report follows)."""
    if not plain or not plain.get("tracker"):
        return
    try:
        sweep_dir = sweep_dir_of(hydra_cfg, out_dir)
        open_tracker(plain.get("tracker"), strict=False, sweep_dir=sweep_dir).stop_sweep(sweep_dir, message)
    except Exception as exc:  # noqa: BLE001 - the sentence that stops the sweep must still be said
        log.warning("alrun: warning: the sweep's MLflow run was not ended (%s).", last_line(exc))


def refuse_sweep(config: DictConfig, sentences: list[str]) -> None:
    """Stop a sweep before its launcher starts any job: each sentence once on stderr, exit 2; with tracker=mlflow
    the sweep's parent run (opened before the launcher) ends FAILED with the first."""
    tracker = {"tracker": OmegaConf.to_container(config.tracker, resolve=True)} if "tracker" in config else None
    end_tracked_sweep(tracker, config.hydra, Path(str(config.hydra.sweep.dir)), sentences[0])
    for sentence in sentences:
        print(f"alrun: error: {sentence}", file=sys.stderr)
    raise SystemExit(2)
