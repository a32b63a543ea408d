"""The `alrun` entry point: Hydra composes the config, this turns it into a RunSpec and runs the job.

Errors a user can act on (bad config, missing data or weights, a model refused by its MC probe) print
one sentence and exit 2 before any training; a job that fails later (a user's component raising at some
step, a diverged model, a data error found late, any other exception) leaves `error.txt` and a `failed`
marker in its folder, and the rest of the sweep goes on (the report names it, the run exits 1).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from alrun.config.command_line import (  # noqa: F401 - also cli's API (tests, benchmarks, docs import them here)
    as_multirun,
    asks_for_determinism,
    config_dir,
    config_dirs,
    setting_typo_error,
    settings_of_swept_groups,
    target_spelling_error,
)
from alrun.config.schema import RunSpec, run_spec_from_dict
from alrun.config.settings import flatten
from alrun.core.errors import AlrunError, DataError, HeuristicError, TrainingDiverged
from alrun.core.files import atomic_write_text
from alrun.launch.interrupt import catch_interrupts, on_interrupt
from alrun.launch.job_folders import register as register_job_folder
from alrun.launch.job_state import REFUSE, Decision, decide, record_refusal
from alrun.launch.sweep import end_tracked_sweep, sweep_dir_of, under_submitit  # noqa: F401 - also cli's API
from alrun.launch.threads import job_threads, set_job_threads, thread_watch
from alrun.track.tracker import JobRun, chain, last_line, open_tracker

log = logging.getLogger("alrun")
# `${alrun.job_folder:}` names job folders; registered on import, so in every process that runs a job
# (joblib and submitit workers import this module to unpickle `task`)
register_job_folder()


def fail(message: str) -> None:
    """Print one sentence and stop the whole run with exit code 2."""
    print(f"alrun: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def job_index(hydra_cfg: DictConfig) -> int:
    """The job's number in the sweep (`hydra.job.num`; 0 for a single run)."""
    return int(OmegaConf.select(hydra_cfg, "job.num", default=0) or 0)


def stop(message: str, out_dir: Path, hydra_cfg: DictConfig, plain: dict[str, Any] | None = None) -> dict[str, Any]:
    """A user-facing error in a job: one sentence, and the run stops (exit 2); with tracker=mlflow the sweep's
    parent run ends FAILED with that sentence (`plain`: the job's config).

    Under submitit the job is a process of its own whose exit would reach the submit host only as
    a traceback, so there the job prints the sentence to its log, records it in `error.txt` and a
    `failed` marker (when the folder is writable), and the report callback repeats it on the
    submit host.
    """
    if not under_submitit(hydra_cfg):
        end_tracked_sweep(plain, hydra_cfg, out_dir, message)
        fail(message)
    print(f"alrun: error: {message}", file=sys.stderr)
    try:
        atomic_write_text(out_dir / "error.txt", f"alrun: error: {message}\n")
        atomic_write_text(out_dir / "failed", "")
    except AlrunError:
        pass  # the folder itself cannot be written: the sentence is in this job's log
    return {"status": "error", "message": message, "dir": str(out_dir)}


def folder_decision(out_dir: Path, fingerprint: str) -> Decision:
    """The basic, joblib and submitit_local launchers' answer for a job's folder, decided in the job's own process
    before it writes anything (alrun.launch.job_state.decide); such a job is never running elsewhere nor lost."""
    return decide(out_dir, fingerprint)


def refuse(message: str, out_dir: Path, hydra_cfg: DictConfig, plain: dict[str, Any] | None = None) -> dict[str, Any]:
    """The job's folder holds another config's job: one sentence, and nothing written into that folder.

    In the launching process (basic, joblib) the run stops (exit 2) as for any setup error; under submitit the
    sentence goes to the job's log and to the sweep folder (alrun.launch.job_state.record_refusal), and the
    report callback on the launching process says it again and exits 2.
    """
    if not under_submitit(hydra_cfg):
        end_tracked_sweep(plain, hydra_cfg, out_dir, message)
        fail(message)
    print(f"alrun: error: {message}", file=sys.stderr)
    sweep_dir = sweep_dir_of(hydra_cfg, out_dir)
    try:
        if sweep_dir != out_dir:  # never into the job's folder, the other config's
            record_refusal(sweep_dir, out_dir, f"alrun: error: {message}")
    except AlrunError:
        pass  # the sweep folder itself cannot be written: the sentence is in this job's log
    return {"status": "error", "message": message, "dir": str(out_dir)}


# raised while a job runs, these are that job's failure alone: its steps went wrong, not a setup every job shares
JOB_FAILURES = (TrainingDiverged, HeuristicError, DataError)


def stops_the_sweep(exc: BaseException) -> bool:
    """Whether an error raised while a job runs stops the whole sweep (exit 2) instead of failing that job.

    alrun's sentences about what the jobs share do: a config value, the model's build or its MC probe (a
    ModelError, before the first training), a folder that holds another config or cannot be written (a
    full disk). A user's component raising at some step (HeuristicError), a diverged model, a data error
    found late and any other exception fail the job alone.
    """
    return isinstance(exc, AlrunError) and not isinstance(exc, JOB_FAILURES)


def failure_text(exc: BaseException) -> str:
    """A failed job's error.txt: the traceback, ending with one line that says what failed.

    alrun's own sentence (a user's heuristic that raised, a diverged model) ends it as `alrun: error: ...`,
    after the traceback of the user's exception it replaced, if any; any other exception ends with its
    own last line (`RuntimeError: ...`).
    """
    if not isinstance(exc, AlrunError):
        return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    cause = exc.__cause__ or exc.__context__
    text = ""
    if cause is not None and not isinstance(cause, AlrunError):  # the user's own traceback first
        text = "".join(traceback.format_exception(type(cause), cause, cause.__traceback__)) + "\n"
    return text + f"alrun: error: {exc}\n"


def job_failed(exc: BaseException, out_dir: Path, hydra_cfg: DictConfig, title: str, tracked: JobRun,
               plain: dict[str, Any] | None = None) -> dict[str, Any]:
    """This job failed, the sweep goes on: error.txt and the `failed` marker in its folder, its run FAILED.

    Its finished steps stay (a re-run resumes after the last one); a folder that cannot be written stops
    the sweep (one sentence, exit 2).
    """
    try:
        atomic_write_text(out_dir / "error.txt", failure_text(exc))
        atomic_write_text(out_dir / "failed", "")
    except AlrunError as write_error:
        tracked.finish(error=str(write_error))
        return stop(str(write_error), out_dir, hydra_cfg, plain)
    reason = str(exc) if isinstance(exc, AlrunError) else last_line(exc)
    log.error("job %s failed: %s (traceback in %s)", title, reason, out_dir / "error.txt")
    tracked.finish(error=reason)
    return {"status": "failed", "dir": str(out_dir)}


def job_settings(spec: RunSpec, input_shape: tuple[int, ...], choices: dict[str, str | None] | None = None,
                 overridden: set[str] | frozenset[str] = frozenset()) -> dict[str, Any]:
    """The settings every job records (the report groups by those that vary).

    `choices` are Hydra's chosen config per group (`heuristic=mymargin`), `overridden` the keys set on the
    command line: a custom component chosen through a config file of the user's is named by that file.
    """
    from alrun.config.components import chosen_name, readable_names
    from alrun.model.builders import resolve_name

    # a custom component's config name, or its short name (its dotted path is in job.json)
    names = readable_names(spec, choices, overridden)
    model = (chosen_name("model", spec.model.name, spec.model.args, choices, overridden)
             if spec.model.backbone is None else None)
    return {
        "heuristic": names["heuristic"],
        "seed": spec.seed,
        "lambda": spec.label_noise,
        "delta": spec.imbalance_classes,
        "query_size": spec.query_size,
        "pool_fraction": spec.pool_fraction,
        "epochs": spec.train.epochs,
        "dataset": names["dataset"],
        "model": model or resolve_name(spec.model, input_shape),
        "mc_samples": spec.mc_samples,
    }


def tracked_run(plain: dict[str, Any], hydra_cfg: DictConfig, out_dir: Path, settings: dict[str, Any], title: str,
                overrides: dict[str, str]) -> JobRun:
    """The job's run in the tracker chosen by `tracker=` (one that does nothing for tracker=none)."""
    multirun = str(OmegaConf.select(hydra_cfg, "mode", default="")).endswith("MULTIRUN")
    sweep_dir = sweep_dir_of(hydra_cfg, out_dir)
    tracker = open_tracker(plain.get("tracker"), strict=False, sweep_dir=sweep_dir)
    # in a sweep the run is named like the job's folder (heuristic=bald,seed=0)
    name = out_dir.name if multirun and out_dir != sweep_dir else title
    return tracker.job_run(out_dir, sweep_dir, plain.get("study"), settings, name, overrides)


def task(cfg: DictConfig) -> dict[str, Any]:
    """One job of the sweep (or the single run); with `device=auto` on a machine with GPUs it holds a
    GPU no other alrun job holds, for its whole lifetime, waiting for one when all are taken."""
    from alrun.core.devices import claimed_device

    name = str(OmegaConf.select(cfg, "device", default="auto"))
    with claimed_device(name, job_index(HydraConfig.get())) as device:
        return run_job(cfg, device)


def run_job(cfg: DictConfig, claimed: str | None = None) -> dict[str, Any]:
    """The job itself, on the `claimed` device (None: the one `device` names)."""

    from alrun.config.components import job_components
    from alrun.core.devices import choose_device
    from alrun.loop.job import ActiveLearningJob, column_name, spec_fingerprint
    from alrun.report import target_accuracies_of, target_record
    from alrun.report.frames import margin_of, primary_of
    from alrun.report.terminal import job_progress

    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    plain = OmegaConf.to_container(cfg, resolve=True)
    report_sizes = (plain.get("report") or {}).get("sizes")
    try:
        target_accuracy = target_record(target_accuracies_of((plain.get("report") or {}).get("target_accuracy")))
        # the verdict's declared endpoint and margin: a bad value stops the job before any work
        primary = primary_of((plain.get("report") or {}).get("primary"))
        margin = margin_of((plain.get("report") or {}).get("equivalence_margin"))
        spec = run_spec_from_dict(plain)
        # once per job, before its data is touched: its share of the cores (alrun.launch.threads)
        threads, threads_from = job_threads(spec.threads, hydra_cfg)
        threads = set_job_threads(threads)
        # jobs sharing a machine with several GPUs each hold a free one (see `task`)
        spec = replace(spec, device=claimed or choose_device(spec.device, job_index(hydra_cfg)))
        components = job_components(spec)  # imports the user's components: a wrong `_target_` stops here
        job = ActiveLearningJob(spec, out_dir)
        # the answer every launcher gives (alrun.launch.job_state): another config's job there is refused before
        # anything is written; a finished one of this config returns at once in job.run, a failed one resumes
        decision = folder_decision(out_dir, spec_fingerprint(spec))
        if decision.action == REFUSE:
            return refuse(decision.reason, out_dir, hydra_cfg, plain)
        if spec.heuristic == "custom":  # its signature and return value, before any training
            from alrun.acquire.custom import preflight

            preflight(spec.heuristic_params, job.data.bundle.n_classes, spec.mc_samples, spec.query_size,
                      pool_size=len(job.data.eligible) - spec.initial_labelled)
    except AlrunError as exc:
        return stop(str(exc), out_dir, hydra_cfg, plain)
    overrides = dict(o.split("=", 1) for o in hydra_cfg.overrides.task if "=" in o)
    choices = OmegaConf.to_container(hydra_cfg.runtime.choices) if "choices" in hydra_cfg.runtime else {}
    settings = job_settings(spec, job.data.bundle.input_shape, choices, {k.lstrip("+~") for k in overrides})
    try:
        atomic_write_text(out_dir / "job.json", json.dumps(
            {"overrides": {k.lstrip("+~"): v for k, v in overrides.items()}, "settings": settings,
             "report_sizes": report_sizes, "report_target_accuracy": target_accuracy, "report_primary": primary,
             "report_equivalence_margin": margin, "n_classes": int(job.data.bundle.n_classes),
             "study": plain.get("study"),
             "components": components, "config": flatten(plain),
             "reduced_classes": [column_name(job.data.bundle.class_names[c]) for c in job.data.reduced_classes],
             "validation_labels": len(job.data.validation), "threads": threads},
            indent=2))
    except AlrunError as exc:
        return stop(str(exc), out_dir, hydra_cfg, plain)
    log.info("torch threads: %d (%s)", threads, f"auto: {threads_from}" if spec.threads == "auto" else threads_from)
    for note in job.data.bundle.notes:
        log.info(note)
    title = " ".join(f"{k}={v}" for k, v in overrides.items()) or f"{spec.heuristic} seed={spec.seed}"
    try:
        tracked = tracked_run(plain, hydra_cfg, out_dir, settings, title, overrides)
    except AlrunError as exc:
        return stop(str(exc), out_dir, hydra_cfg, plain)
    # load that starts or ends while the job runs moves its threads from the next step (threads=auto, a share of
    # this machine only)
    watch = thread_watch(spec.threads, hydra_cfg, threads, log.info)
    try:
        with job_progress(title) as on_step:
            rows = job.run(chain(on_step, tracked.on_step, *([watch.on_step] if watch else [])))
    except KeyboardInterrupt:  # Ctrl-C: its run ends with what it logged; main() says the rest in one line
        tracked.finish(error="interrupted (Ctrl-C); the same command resumes it")
        raise
    except Exception as exc:  # noqa: BLE001 - a failing job must not stop the others
        if stops_the_sweep(exc):
            tracked.finish(error=str(exc))
            return stop(str(exc), out_dir, hydra_cfg, plain)
        return job_failed(exc, out_dir, hydra_cfg, title, tracked, plain)
    for stale in ("failed", "error.txt"):  # an earlier attempt's failure, now resumed and finished
        (out_dir / stale).unlink(missing_ok=True)
    tracked.finish(rows)
    return {"status": "done", "dir": str(out_dir)}


def main() -> None:
    """Console script `alrun`."""
    from alrun.launch.until import main as until_main

    code = until_main(sys.argv[1:], config_dir())  # until=decided: the sweep in rounds, each a process of its own
    if code is not None:
        raise SystemExit(code)
    os.environ["ALRUN_COMMAND"] = " ".join(["alrun", *sys.argv[1:]])  # as typed, for the tracker's tag
    # before `++` is added to the settings of swept groups: a misspelt key is the user's, as typed
    message = setting_typo_error(sys.argv[1:])
    sys.argv[1:] = settings_of_swept_groups(as_multirun(sys.argv[1:]))
    message = message or target_spelling_error(sys.argv[1:])
    if message:
        fail(message)
    from alrun.launch.study_folder import study_change

    message = study_change(sys.argv[1:])  # a folder holds one study: refused before any job runs
    if message:
        fail(message)
    if asks_for_determinism(sys.argv[1:]):  # before any CUDA call of the process: cuBLAS reads it once
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # devices.CUBLAS_DETERMINISTIC
    typed = list(sys.argv[1:])
    catch_interrupts()
    try:
        hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")(task)()
    except KeyboardInterrupt:  # Ctrl-C: one line and the report of what finished, not Hydra's traceback
        on_interrupt(typed)


if __name__ == "__main__":
    main()
