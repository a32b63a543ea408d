"""alrun's SLURM launcher (`hydra/launcher=slurm`): hydra-submitit-launcher's, made safe to re-run and to lose jobs.
Hydra finds it as hydra_plugins/alrun_slurm_launcher (Hydra instantiates launchers only from that namespace).

On top of the plugin's launcher:

- each job's folder is judged before anything is submitted, as every launcher judges it
  (alrun.launch.job_state.decide, on the folder and the job's config fingerprint): a finished job of the same
  config is not submitted again, so re-running a sweep's command submits only the jobs that have not
  finished; a folder holding another config's job stops the sweep with one sentence before any submission;
- a job still queued or running from an earlier launch of the same sweep (the launching process was
  stopped) is waited for, not submitted a second time onto the same folder;
- the launching process waits for every job; one that ends without a result (`scancel`, a node lost, more
  time-limit requeues than `max_num_timeout`) gets `error.txt` and a `failed` marker in its folder naming its
  SLURM job and state, unless it holds `done`, so the report names it and the sweep exits 1, where the plugin
  would stop at the first such job with a traceback and no report.

Requeues (preemption, `scontrol requeue`, the time limit) need nothing here: SLURM starts the same job again,
and alrun resumes it from its last finished step (the checkpoint in its folder).
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as PluginSlurmLauncher
from omegaconf import OmegaConf

from alrun.core.files import atomic_write_text
from alrun.launch.job_state import KEEP, REFUSE, RUN, SKIP, WAIT, Decision, decide, job_fingerprint
from alrun.launch.sweep import refuse_sweep

log = logging.getLogger(__name__)

JOBS_FILE = "slurm_jobs.json"  # in the submitit folder's parent: job folder name -> SLURM job id, per launch
STATE_POLL_S = 10.0  # how often the launching process asks sacct for the states of the jobs it waits for
RESULT_POLL_S = 1.0  # how often it looks for a job's result file (a file check, no SLURM call)
# a job SLURM says is over (but not cancelled) whose result file is not seen yet: how long to keep looking before
# calling it lost (a shared filesystem may show the launching host a file written on a node up to a minute late)
LOST_GRACE_S = 60.0


def _ended_without_result(job: Any) -> str | None:
    """The SLURM state of a job that is over but left no result (CANCELLED, FAILED, TIMEOUT, ...); None while it
    is queued or running, or once it has a result."""
    if job.paths.result_pickle.exists():
        return None
    state = job.watcher.get_state(job.job_id, mode="cache")
    return None if not job.watcher.is_done(job.job_id, mode="cache") else state


class SlurmLauncher(PluginSlurmLauncher):
    """`hydra/launcher=slurm`: hydra-submitit-launcher's SLURM launcher that skips finished jobs, adopts the
    running jobs of an earlier launch, and reports a job lost to SLURM as failed instead of stopping."""

    def _job_folder(self, overrides: Sequence[str]) -> tuple[Path, str | None]:
        """Where the job of `overrides` writes (`hydra.sweep.dir/hydra.sweep.subdir`, as the job resolves it), and
        its config fingerprint (None when this process cannot build it: the job then checks its folder)."""
        assert self.hydra_context is not None and self.config is not None
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        return Path(str(cfg.hydra.sweep.dir)) / str(cfg.hydra.sweep.subdir), job_fingerprint(cfg)

    def _submitit_folder(self) -> Path:
        # "%j" stands for each job's own id: the jobs file lives in the folder above those
        return Path(str(self.params["submitit_folder"]).split("%j")[0])

    def _recorded_jobs(self) -> dict[str, str]:
        try:
            recorded = json.loads((self._submitit_folder() / JOBS_FILE).read_text())
        except (OSError, ValueError):
            return {}
        return recorded if isinstance(recorded, dict) else {}

    def _executor(self) -> Any:
        import submitit

        init_keys = {"max_num_timeout", "submitit_folder"}
        executor = submitit.AutoExecutor(
            cluster=self._EXECUTOR, folder=self.params["submitit_folder"],
            **{f"{self._EXECUTOR}_{k}": v for k, v in self.params.items() if k == "max_num_timeout"})
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in base else f"{self._EXECUTOR}_{k}": v
                                      for k, v in self.params.items() if k not in init_keys})
        return executor

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit

        assert self.config is not None
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info(f"Submitit '{self._EXECUTOR}' sweep output dir : {sweep_dir}")
        jobs: list[tuple[int, list[str], Path]] = []
        recorded = self._recorded_jobs()
        decisions: dict[int, Decision] = {}
        for offset, overrides in enumerate(job_overrides):
            folder, fingerprint = self._job_folder(overrides)
            jobs.append((initial_job_idx + offset, list(overrides), folder))
            decisions[initial_job_idx + offset] = slurm_decision(folder, fingerprint, recorded.get(folder.name))
        refused = [d.reason for d in decisions.values() if d.action == REFUSE]
        if refused:  # before any submission: nothing of another config's job is touched
            refuse_sweep(self.config, refused)
        finished = [idx for idx, d in decisions.items() if d.action == SKIP]
        if finished:
            log.info(f"{len(finished)} of {len(jobs)} jobs finished earlier (their `done` marker, the same config): "
                     "not submitted again")
        adopted: dict[int, Any] = {}
        for idx, overrides, folder in jobs:
            if decisions[idx].action == WAIT:
                job_id = recorded[folder.name]
                adopted[idx] = submitit.SlurmJob(folder=self.params["submitit_folder"], job_id=job_id)
                log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))} (still in SLURM as job {job_id}: "
                         "waiting for it, not submitted again)")
        to_submit = [job for job in jobs if decisions[job[0]].action == RUN]
        submitted: dict[int, Any] = {}
        if to_submit:
            params = []
            for idx, overrides, _ in to_submit:
                log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
                params.append((overrides, "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state()))
            array = self._executor().map_array(self, *zip(*params, strict=True))
            submitted = dict(zip([idx for idx, _, _ in to_submit], array, strict=True))
        ids = {**recorded, **{folder.name: (submitted.get(idx) or adopted[idx]).job_id
                              for idx, _, folder in jobs if idx in submitted or idx in adopted}}
        atomic_write_text(self._submitit_folder() / JOBS_FILE, json.dumps(ids, indent=1, sort_keys=True))
        waiting = {**submitted, **adopted}
        returns = self._wait(waiting, {idx: folder for idx, _, folder in jobs})
        done = JobReturn(status=JobStatus.COMPLETED, _return_value={"status": "done"})
        return [returns.get(idx, done) for idx, _, _ in jobs]

    def _wait(self, waiting: dict[int, Any], folders: dict[int, Path]) -> dict[int, JobReturn]:
        """Wait for every job of `waiting` (job number -> submitit job); a job lost to SLURM is marked failed."""
        returns: dict[int, JobReturn] = {}
        pending = dict(waiting)
        over_since: dict[int, float] = {}
        last_poll = time.monotonic()
        while pending:
            if time.monotonic() - last_poll >= STATE_POLL_S:  # one sacct call for every job of the sweep
                next(iter(pending.values())).watcher.update()
                last_poll = time.monotonic()
            for idx, job in list(pending.items()):
                if job.paths.result_pickle.exists():
                    returns[idx] = _result(job, folders[idx])
                    del pending[idx]
                    continue
                state = _ended_without_result(job)
                if state is None:  # queued or running (again, after a requeue)
                    over_since.pop(idx, None)
                    continue
                since = over_since.setdefault(idx, time.monotonic())
                if state.startswith("CANCELLED") or time.monotonic() - since >= LOST_GRACE_S:
                    returns[idx] = _lost(job, state, folders[idx])
                    del pending[idx]
            if pending:
                time.sleep(RESULT_POLL_S)
        return returns


def slurm_decision(folder: Path, fingerprint: str | None, job_id: str | None) -> Decision:
    """The SLURM launcher's answer for one job (alrun.launch.job_state.decide): JOB_ID is the SLURM job an earlier
    launch of this sweep submitted for FOLDER, if any; it is asked for in SLURM's queue only when the folder is
    not finished."""
    running = bool(job_id) and not (folder / "done").exists() and _still_queued(str(job_id))
    return decide(folder, fingerprint, running=running)


def _still_queued(job_id: str) -> bool:
    """Whether SLURM still has job `job_id` queued or running (squeue lists only those)."""
    try:
        out = subprocess.run(["squeue", "-h", "-o", "%T", "-j", job_id], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and bool(out.stdout.strip())


def _result(job: Any, folder: Path) -> JobReturn:
    """The job's JobReturn from its result file; a job whose submitit wrapper raised (e.g. it was requeued by
    the time limit more often than `max_num_timeout`) is marked failed."""
    try:
        return job.results()[0]
    except Exception as exc:  # noqa: BLE001 - submitit's error for this job only: the others go on
        return _lost(job, f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}",
                     folder)


def _lost(job: Any, state: str, folder: Path) -> JobReturn:
    """Mark the job's folder failed: SLURM ended it (state) without a result. The sweep goes on."""
    logs = job.paths.stderr
    if decide(folder, None, lost=True).action == KEEP:  # it finished; only its result file did not come back
        log.info("SLURM job %s (%s) left no result, but its folder %s holds `done`: finished, not failed",
                 job.job_id, state, folder)
        return JobReturn(status=JobStatus.COMPLETED, _return_value={"status": "done", "dir": str(folder)})
    message = (f"alrun: error: SLURM job {job.job_id} ended without finishing ({state}); its log: {logs}. "
               "Re-running the command resumes it from its last finished step.\n")
    try:
        atomic_write_text(folder / "error.txt", message)
        atomic_write_text(folder / "failed", "")
    except Exception as exc:  # noqa: BLE001 - the report still says it is missing
        log.warning("alrun: warning: cannot mark %s failed (%s)", folder, exc)
    log.error(message.strip())
    return JobReturn(status=JobStatus.COMPLETED, _return_value={"status": "failed", "dir": str(folder)})

