"""Sweeps on a Ray cluster (`hydra/launcher=ray`, needs `pip install -e ".[ray]"`): one Ray task per job, with
the job's CPUs and GPUs as the task's resources. Hydra finds the launcher class in
`hydra_plugins/alrun_ray_launcher`; this module does the work.

The launching process joins a running cluster (`hydra.launcher.address`; with `auto`, the default, a local Ray is
started when none runs, as `ray.init()` does, and the log says which), submits every job at once and waits
for them all; Ray starts a job when a node has its CPUs and GPUs free. The job runs as under the other
launchers (its folder, its log, a checkpoint after every step) in a Ray worker process, in the launching
process's working directory and with its ALRUN_* and MLFLOW_* variables, so relative paths and
ALRUN_DATA_DIR mean what they mean to the basic launcher: on a cluster of several machines, launch from a
folder that every node sees at the same path.

GPUs: Ray gives a job with num_gpus=1 one of the node's GPUs and sets CUDA_VISIBLE_DEVICES to it, so the job
sees that GPU alone, as cuda:0; alrun's claim (:func:`alrun.core.devices.claimed_device`, keyed by the GPU's UUID)
then holds that same GPU, so an alrun job started outside Ray on the node waits for it instead of sharing it.
A job with num_gpus=0 sees no GPU and runs on the CPU: Ray 2.x leaves such a task the node's
CUDA_VISIBLE_DEVICES, so the job empties it here, before anything in its process uses CUDA.

A job whose worker process or node dies is started again by Ray (up to `max_retries` times) and resumes from
its last finished step. Past that it is marked failed in its folder (error.txt says what happened), the report
names it, the sweep exits 1, and re-running the same command resumes it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from alrun.core.errors import AlrunError, ConfigError
from alrun.core.files import atomic_write_text
from alrun.launch.job_state import KEEP, REFUSE, SKIP, Decision, decide, job_fingerprint
from alrun.launch.sweep import refuse_sweep

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10  # for the head's port to answer, before Ray is asked to join
FORWARDED_PREFIXES = ("ALRUN_", "MLFLOW_")  # the launching process's settings a job reads from its environment
FORWARDED_NAMES = ("CUBLAS_WORKSPACE_CONFIG",)  # set by `alrun deterministic=true` before any job starts


def forwarded_environment(environ: dict[str, str]) -> dict[str, str]:
    """The variables of ENVIRON that a job must see as the launching process does (a Ray worker inherits its
    node's environment, not the launching process's).

    >>> forwarded_environment({"ALRUN_DATA_DIR": "d", "HOME": "/h", "CUBLAS_WORKSPACE_CONFIG": ":4096:8"})
    {'ALRUN_DATA_DIR': 'd', 'CUBLAS_WORKSPACE_CONFIG': ':4096:8'}
    """
    return {k: v for k, v in environ.items() if k.startswith(FORWARDED_PREFIXES) or k in FORWARDED_NAMES}


@contextlib.contextmanager
def launching_context(cwd: str, environ: dict[str, str], num_gpus: float) -> Iterator[None]:
    """For the block: the launching process's working directory and forwarded variables, and no visible GPU
    when the job was given none; all restored after (a Ray worker runs other tasks later)."""
    saved_cwd = os.getcwd()
    names = [*environ, *(["CUDA_VISIBLE_DEVICES"] if not num_gpus else [])]
    saved = {k: os.environ.get(k) for k in names}
    os.environ.update(environ)
    if not num_gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_one(hydra_context: HydraContext, sweep_config: DictConfig, task_function: TaskFunction,
            singleton_state: dict[Any, Any], cwd: str, environ: dict[str, str], num_gpus: float) -> JobReturn:
    """One job, inside the Ray task (Hydra's `run_job`, as Hydra's own launchers call it)."""
    with launching_context(cwd, environ, num_gpus):
        setup_globals()
        Singleton.set_state(singleton_state)
        HydraConfig.instance().set_config(sweep_config)
        return run_job(hydra_context=hydra_context, task_function=task_function, config=sweep_config,
                       job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")


def import_ray() -> Any:
    """The `ray` module, or one sentence saying how to install it."""
    # each job's lines as they are, not folded into "[repeated 3x across cluster]" with the other jobs' (read by
    # ray at import)
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    try:
        import ray
    except ImportError:
        raise ConfigError("hydra/launcher=ray needs the ray package, which is not installed: "
                          "pip install 'alrun[ray]' (or pip install ray).") from None
    return ray


NO_CLUSTER = ("could not find any running ray instance",)  # ray.init(address="auto")'s words when none runs


def _first_words(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0].split(". ")[0] if str(exc).strip() else type(exc).__name__


def connect(ray: Any, address: str | None) -> str:
    """Join a Ray cluster, or start one on this machine, as Hydra's Ray launcher and `ray.init()` do; returns the
    log line that says which.

    ADDRESS `auto` (the default): the running cluster `ray start` started on this machine (or $RAY_ADDRESS) when
    there is one, else a local Ray started here for this sweep (it stops when the sweep ends). `local` or null: a
    local Ray, always. HOST:PORT: that cluster's head, and only it: a closed port is one sentence (Ray itself
    would retry it for minutes), never a local Ray in its place.
    """
    if ray.is_initialized():
        return "Ray: this process had joined a Ray cluster already"
    where = "" if address is None else str(address).strip()
    if where.lower() in ("", "local", "none", "null"):
        return _start_local(ray, "hydra.launcher.address=local")
    host, _, port = where.rpartition(":")
    if host and port.isdigit():  # HOST:PORT: Ray itself would retry a closed port for minutes
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
        except OSError as exc:
            raise ConfigError(f"hydra/launcher=ray cannot join a Ray cluster at `{where}` "
                              f"({exc.strerror or exc}): start one with `ray start --head`, or set "
                              "hydra.launcher.address=HOST:PORT of a running head.") from None
    try:
        # the jobs' output reaches this terminal prefixed by their worker, as Ray prints it
        ray.init(address=where, log_to_driver=True)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        if where == "auto" and any(words in str(exc).lower() for words in NO_CLUSTER):
            return _start_local(ray, "no running Ray cluster found (address=auto)")
        raise ConfigError(f"hydra/launcher=ray cannot join a Ray cluster at `{where}` ({_first_words(exc)}): start "
                          "one with `ray start --head`, or set hydra.launcher.address=HOST:PORT of a running head."
                          ) from None
    return f"Ray: joined the running Ray cluster at {_gcs_address(ray) or where}"


def _gcs_address(ray: Any) -> str | None:
    try:
        return str(ray.get_runtime_context().gcs_address)
    except Exception:  # noqa: BLE001 - only for the log line
        return None


def _start_local(ray: Any, why: str) -> str:
    """Start a Ray on this machine for this sweep (every core; no dashboard: nothing here reads it).

    Without RAY_AUTH_MODE set, Ray 2.60's `ray.init()` turns token authentication on for a new local cluster and
    writes a token to ~/.ray/auth_token, which stays: every later `ray start --head` on the machine then demands
    it, while a client joining by HOST:PORT never sends it, so the README's `ray start` + `address=HOST:PORT`
    stops with "Authentication token is missing". This sweep's own Ray, gone when the sweep ends, is started
    without it (RAY_AUTH_MODE=disabled, as Ray before 2.5x ran); a RAY_AUTH_MODE you set is kept.
    """
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    try:
        ray.init(log_to_driver=True, include_dashboard=False)
    except (ConnectionError, RuntimeError, ValueError, OSError) as exc:
        raise ConfigError(f"hydra/launcher=ray could not start a local Ray ({_first_words(exc)}): start one with "
                          "`ray start --head`, or set hydra.launcher.address=HOST:PORT of a running head.") from None
    try:
        cpus = f"{float(ray.cluster_resources().get('CPU', 0)):g} CPUs"
    except Exception:  # noqa: BLE001 - only for the log line
        cpus = "this machine's CPUs"
    return f"Ray: {why}: started a local Ray on this machine ({cpus}); it stops when the sweep ends"


def job_folder(sweep_config: DictConfig) -> Path:
    """The folder of the job SWEEP_CONFIG describes, as `run_job` names it, relative to the launching process."""
    return Path(str(sweep_config.hydra.sweep.dir)) / str(sweep_config.hydra.sweep.subdir)


def lost_job(sweep_config: DictConfig, overrides: Sequence[str], exc: BaseException, retries: int) -> JobReturn:
    """A job whose Ray task ended without a result (its worker or node died, past its retries): marked failed in
    its folder like a job that raised, so that the report names it and the sweep exits 1; a re-run resumes it."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    folder = job_folder(sweep_config)
    if decide(folder, None, lost=True).action == KEEP:  # it finished; only the result's way back was lost
        log.info("job %s: its Ray task ended without a result (%s: %s), but the folder holds `done`: finished, "
                 "not failed", folder.name, type(exc).__name__, first)
        return finished_job(sweep_config, overrides, folder)
    sentence = (f"alrun: error: the Ray task running this job ended without finishing it, after {retries} "
                f"retries ({type(exc).__name__}: {first}); re-run the command to resume it from its last "
                "finished step.")
    log.error("job %s: %s", folder.name, sentence.removeprefix("alrun: error: "))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / "error.txt", sentence + "\n")
        atomic_write_text(folder / "failed", "")
    except (OSError, AlrunError) as write_error:
        log.error("job %s could not be marked failed: %s", folder, write_error)
    return JobReturn(overrides=list(overrides), cfg=sweep_config, hydra_cfg=sweep_config.hydra,
                     working_dir=os.getcwd(), task_name=str(sweep_config.hydra.job.name),
                     status=JobStatus.COMPLETED, _return_value={"status": "failed", "dir": str(folder)})


def finished_job(sweep_config: DictConfig, overrides: Sequence[str], folder: Path) -> JobReturn:
    """The JobReturn of a job whose folder holds `done` (not submitted again, or finished before its task was
    lost)."""
    return JobReturn(overrides=list(overrides), cfg=sweep_config, hydra_cfg=sweep_config.hydra,
                     working_dir=os.getcwd(), task_name=str(sweep_config.hydra.job.name),
                     status=JobStatus.COMPLETED, _return_value={"status": "done", "dir": str(folder)})


def ray_decision(folder: Path, fingerprint: str | None) -> Decision:
    """The Ray launcher's answer for the job of FOLDER before it is submitted (alrun.launch.job_state.decide).
    Never `running`: a Ray task ends with the driver that submitted it, so no job of an earlier launch runs on."""
    return decide(folder, fingerprint)


def launch(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
    """Submit one Ray task per job and wait for them all; Hydra's `Launcher.launch`."""
    setup_globals()
    config, hydra_context = launcher.config, launcher.hydra_context
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    try:
        ray = import_ray()
        joined = connect(ray, launcher.address)
    except AlrunError as exc:
        from alrun.launch.sweep import end_tracked_sweep

        # with tracker=mlflow the sweep's parent run, opened before the launcher, ends FAILED with the sentence
        tracker = {"tracker": OmegaConf.to_container(config.tracker, resolve=True)} if "tracker" in config else None
        end_tracked_sweep(tracker, config.hydra, Path(str(config.hydra.sweep.dir)), str(exc))
        print(f"alrun: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    num_cpus, num_gpus, retries = float(launcher.num_cpus), float(launcher.num_gpus), int(launcher.max_retries)
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    log.info(joined)
    log.info("Ray launcher: %d jobs on the cluster at %s (num_cpus=%g, num_gpus=%g each), sweep output dir: %s",
             len(job_overrides), launcher.address, num_cpus, num_gpus, sweep_dir)
    remote = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=retries)(run_one)
    # named so that `ps` and Ray's logs show which processes run alrun's jobs
    remote = remote.options(name="alrun_job")
    cwd, environ, state = os.getcwd(), forwarded_environment(dict(os.environ)), Singleton.get_state()
    planned = []
    for offset, overrides in enumerate(job_overrides):
        idx = initial_job_idx + offset
        sweep_config = hydra_context.config_loader.load_sweep_config(config, list(overrides))
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{idx}"
            sweep_config.hydra.job.num = idx
        planned.append((idx, sweep_config, overrides,
                        ray_decision(job_folder(sweep_config), job_fingerprint(sweep_config))))
    refused = [decision.reason for *_, decision in planned if decision.action == REFUSE]
    if refused:  # before any job starts: nothing of another config's job is touched
        refuse_sweep(config, refused)
    skipped = sum(decision.action == SKIP for *_, decision in planned)
    if skipped:
        log.info("%d of %d jobs finished earlier (their `done` marker, the same config): not started again",
                 skipped, len(planned))
    submitted = []
    for idx, sweep_config, overrides, decision in planned:
        if decision.action == SKIP:
            submitted.append((None, sweep_config, overrides))
            continue
        log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
        ref = remote.remote(hydra_context, sweep_config, launcher.task_function, state, cwd, environ, num_gpus)
        submitted.append((ref, sweep_config, overrides))
    results = []
    for ref, sweep_config, overrides in submitted:
        if ref is None:
            results.append(finished_job(sweep_config, overrides, job_folder(sweep_config)))
            continue
        try:
            results.append(ray.get(ref))
        except ray.exceptions.RayError as exc:  # the worker or its node died, past the retries
            results.append(lost_job(sweep_config, overrides, exc, retries))
    HydraConfig.instance().set_config(config)  # the launching process's own, for the report after the jobs
    return results

