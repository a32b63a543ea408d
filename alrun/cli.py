"""The `alrun` entry point: Hydra composes the config, this turns it into a RunSpec and runs the job.

Errors a user can act on (bad config, missing data or weights) print one sentence and exit 2
before any work; a job that crashes later leaves `error.txt` and a `failed` marker in its
folder, and the rest of the sweep goes on.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from alrun.checkpoint import atomic_write_text
from alrun.config import RunSpec, run_spec_from_dict
from alrun.errors import AlrunError, TrainingDiverged
from alrun.job_folders import register as register_job_folder
from alrun.settings import flatten
from alrun.tracking import JobRun, chain, last_line, open_tracker

log = logging.getLogger("alrun")
# `${alrun.job_folder:}` names job folders; registered on import, so in every process that runs a job
# (joblib and submitit workers import this module to unpickle `task`)
register_job_folder()


def config_dir() -> str:
    """configs/ inside the installed package (wheel), else beside the package (source checkout)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "configs", here.parent / "configs"):
        if (candidate / "config.yaml").is_file():
            return str(candidate)
    raise RuntimeError(f"alrun's configs are missing: looked in {here / 'configs'} and {here.parent / 'configs'}")


def fail(message: str) -> None:
    """Print one sentence and stop the whole run with exit code 2."""
    print(f"alrun: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def job_index(hydra_cfg: DictConfig) -> int:
    """The job's number in the sweep (`hydra.job.num`; 0 for a single run)."""
    return int(OmegaConf.select(hydra_cfg, "job.num", default=0) or 0)


def under_submitit(hydra_cfg: DictConfig) -> bool:
    """Whether this job was started by a submitit launcher (its own process, maybe on another host)."""
    return "submitit" in str(OmegaConf.select(hydra_cfg, "launcher._target_", default=""))


def stop(message: str, out_dir: Path, hydra_cfg: DictConfig) -> dict[str, Any]:
    """A user-facing error in a job: one sentence, and the run stops (exit 2).

    Under submitit the job is a process of its own whose exit would reach the submit host only as
    a traceback, so there the job prints the sentence to its log, records it in `error.txt` and a
    `failed` marker (when the folder is writable), and the report callback repeats it on the
    submit host.
    """
    if not under_submitit(hydra_cfg):
        fail(message)
    print(f"alrun: error: {message}", file=sys.stderr)
    try:
        atomic_write_text(out_dir / "error.txt", f"alrun: error: {message}\n")
        atomic_write_text(out_dir / "failed", "")
    except AlrunError:
        pass  # the folder itself cannot be written: the sentence is in this job's log
    return {"status": "error", "message": message, "dir": str(out_dir)}


def job_settings(spec: RunSpec, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """The settings every job records (the report groups by those that vary)."""
    from alrun.components import readable_names
    from alrun.models import resolve_name

    names = readable_names(spec)  # a custom component's short name (its dotted path is in job.json)
    return {
        "heuristic": names["heuristic"],
        "seed": spec.seed,
        "lambda": spec.label_noise,
        "delta": spec.imbalance_classes,
        "query_size": spec.query_size,
        "pool_fraction": spec.pool_fraction,
        "epochs": spec.train.epochs,
        "dataset": names["dataset"],
        "model": resolve_name(spec.model, input_shape),
        "mc_samples": spec.mc_samples,
    }


def tracked_run(plain: dict[str, Any], hydra_cfg: DictConfig, out_dir: Path, settings: dict[str, Any], title: str,
                overrides: dict[str, str]) -> JobRun:
    """The job's run in the tracker chosen by `tracker=` (one that does nothing for tracker=none)."""
    multirun = str(OmegaConf.select(hydra_cfg, "mode", default="")).endswith("MULTIRUN")
    sweep_dir = Path(hydra_cfg.sweep.dir) if multirun else out_dir
    tracker = open_tracker(plain.get("tracker"), strict=False, sweep_dir=sweep_dir)
    # in a sweep the run is named like the job's folder (heuristic=bald,seed=0)
    name = out_dir.name if multirun and out_dir != sweep_dir else title
    return tracker.job_run(out_dir, sweep_dir, plain.get("study"), settings, name, overrides)


def task(cfg: DictConfig) -> dict[str, Any]:
    """One job of the sweep (or the single run); with `device=auto` on a machine with GPUs it holds a
    GPU no other alrun job holds, for its whole lifetime, waiting for one when all are taken."""
    from alrun.devices import claimed_device

    name = str(OmegaConf.select(cfg, "device", default="auto"))
    with claimed_device(name, job_index(HydraConfig.get())) as device:
        return run_job(cfg, device)


def run_job(cfg: DictConfig, claimed: str | None = None) -> dict[str, Any]:
    """The job itself, on the `claimed` device (None: the one `device` names)."""
    import torch

    from alrun.components import job_components
    from alrun.devices import choose_device
    from alrun.loop import ActiveLearningJob, column_name
    from alrun.progress import job_progress
    from alrun.report import target_accuracy_of

    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    cpus = OmegaConf.select(hydra_cfg, "launcher.cpus_per_task", default=None)
    if cpus:  # submitit: the job's share of the CPU (submitit_local starts every job at once on one machine)
        torch.set_num_threads(int(cpus))
    plain = OmegaConf.to_container(cfg, resolve=True)
    report_sizes = (plain.get("report") or {}).get("sizes")
    try:
        target_accuracy = target_accuracy_of((plain.get("report") or {}).get("target_accuracy"))
        spec = run_spec_from_dict(plain)
        # jobs sharing a machine with several GPUs each hold a free one (see `task`)
        spec = replace(spec, device=claimed or choose_device(spec.device, job_index(hydra_cfg)))
        components = job_components(spec)  # imports the user's components: a wrong `_target_` stops here
        job = ActiveLearningJob(spec, out_dir)
        if spec.heuristic == "custom":  # its signature and return value, before any training
            from alrun.custom_heuristic import preflight

            preflight(spec.heuristic_params, job.data.bundle.n_classes, spec.mc_samples, spec.query_size,
                      pool_size=len(job.data.eligible) - spec.initial_labelled)
    except AlrunError as exc:
        return stop(str(exc), out_dir, hydra_cfg)
    overrides = dict(o.split("=", 1) for o in hydra_cfg.overrides.task if "=" in o)
    settings = job_settings(spec, job.data.bundle.input_shape)
    try:
        atomic_write_text(out_dir / "job.json", json.dumps(
            {"overrides": {k.lstrip("+~"): v for k, v in overrides.items()}, "settings": settings,
             "report_sizes": report_sizes, "report_target_accuracy": target_accuracy, "study": plain.get("study"),
             "components": components, "config": flatten(plain),
             "reduced_classes": [column_name(job.data.bundle.class_names[c]) for c in job.data.reduced_classes],
             "validation_labels": len(job.data.validation)},
            indent=2))
    except AlrunError as exc:
        return stop(str(exc), out_dir, hydra_cfg)
    for note in job.data.bundle.notes:
        log.info(note)
    title = " ".join(f"{k}={v}" for k, v in overrides.items()) or f"{spec.heuristic} seed={spec.seed}"
    try:
        tracked = tracked_run(plain, hydra_cfg, out_dir, settings, title, overrides)
    except AlrunError as exc:
        return stop(str(exc), out_dir, hydra_cfg)
    try:
        with job_progress(title) as on_step:
            rows = job.run(chain(on_step, tracked.on_step))
    except TrainingDiverged as exc:  # this job's numbers are lost, the sweep's other jobs may be fine
        try:
            atomic_write_text(out_dir / "error.txt", f"alrun: error: {exc}\n")
            atomic_write_text(out_dir / "failed", "")
        except AlrunError as write_error:
            return stop(str(write_error), out_dir, hydra_cfg)
        log.error("job %s stopped: %s", title, exc)
        tracked.finish(error=str(exc))
        return {"status": "failed", "dir": str(out_dir)}
    except AlrunError as exc:
        tracked.finish(error=str(exc))
        return stop(str(exc), out_dir, hydra_cfg)
    except Exception as exc:  # a crash in one job must not stop the others
        try:
            atomic_write_text(out_dir / "error.txt", traceback.format_exc())
            atomic_write_text(out_dir / "failed", "")
        except AlrunError as write_error:
            return stop(str(write_error), out_dir, hydra_cfg)
        log.error("job %s failed: %s (traceback in %s)", title, exc, out_dir / "error.txt")
        tracked.finish(error=last_line(exc))
        return {"status": "failed", "dir": str(out_dir)}
    for stale in ("failed", "error.txt"):  # an earlier attempt's failure, now resumed and finished
        (out_dir / stale).unlink(missing_ok=True)
    tracked.finish(rows)
    return {"status": "done", "dir": str(out_dir)}


def main() -> None:
    """Console script `alrun`."""
    hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")(task)()


if __name__ == "__main__":
    main()
