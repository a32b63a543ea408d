"""What a launcher does with a job's folder: the one answer every launcher (basic, joblib, submitit_local, slurm,
ray) gives, decided here from the folder's files and the job's config fingerprint.

| the folder holds                                  | answer                                             |
|---------------------------------------------------|----------------------------------------------------|
| nothing of a job yet (no checkpoint)              | run                                                |
| a checkpoint of another config (finished or not)  | refuse, one sentence; nothing is written there     |
| `done`, the same config                           | skip: finished earlier                             |
| `failed`, the same config                         | run again: it resumes after its last finished step |
| an unfinished job of the same config              | run: it resumes                                    |
| a job its launcher still runs (SLURM's queue)     | wait for it, never a second copy                   |
| a job its launcher lost (no result came back)     | mark it failed, unless it holds `done`             |

A folder whose settings differ from this job's *overrides* never gets here: `alrun.launch.job_folders` names
that job a folder of its own. What reaches the refusal is a folder of the same overrides whose config differs
(an edited YAML, another `scale` or `+experiment`, a changed default): alrun cannot tell which of the two the
user means, so it asks, and reuses nothing.

The fingerprint is :func:`alrun.loop.job.spec_fingerprint` of the job's RunSpec. A launcher that cannot build
it (a config the job itself will refuse) passes None: the job then runs and decides on its own folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from alrun.core.errors import AlrunError

RUN = "run"
SKIP = "skip"
REFUSE = "refuse"
WAIT = "wait"
MARK_FAILED = "mark_failed"
KEEP = "keep"


@dataclass(frozen=True)
class Decision:
    """A launcher's answer for one job folder: `action` (RUN, SKIP, REFUSE, WAIT, MARK_FAILED or KEEP) and
    `reason`, one sentence (the refusal's sentence as the user reads it)."""

    action: str
    reason: str


def other_config_sentence(folder: Path) -> str:
    """The refusal: FOLDER holds a job of another config (the same sentence the loop's own guard says)."""
    return (f"The folder {folder} holds a job with a different config; run in a new folder (hydra.sweep.dir=...) "
            "or delete that one.")


def recorded_fingerprint(folder: Path) -> str | None:
    """The config fingerprint of FOLDER's checkpoint (the previous one when the newest is missing or torn);
    None when neither can be read. Reads only: a torn checkpoint is the job's to set aside and name."""
    from alrun.loop.checkpoint import CorruptCheckpoint, previous_path, read_checkpoint

    for path in (folder / "checkpoint.json", previous_path(folder / "checkpoint.json")):
        try:
            state = read_checkpoint(path)
        except CorruptCheckpoint:
            continue
        if state is not None:
            return str(state["fingerprint"])
    return None


def decide(folder: Path, fingerprint: str | None, *, running: bool = False, lost: bool = False) -> Decision:
    """What to do with the job whose folder is FOLDER and whose config fingerprint is FINGERPRINT (None: not
    known to the caller). `running`: its launcher still runs it (a SLURM job of an earlier launch still
    queued); `lost`: its launcher saw it end without a result (cancelled, its node or worker died).

    See the module's table. Reading only: the caller writes (or not) what the answer says.
    """
    folder = Path(folder)
    done = (folder / "done").exists()
    if lost:
        if done:  # it finished, and only the result's way back was lost: a finished job is never called failed
            return Decision(KEEP, f"{folder.name} finished (its `done` marker): not marked failed")
        return Decision(MARK_FAILED, f"{folder.name} ended without finishing")
    recorded = recorded_fingerprint(folder) if folder.is_dir() else None
    if recorded is not None and fingerprint is not None and recorded != fingerprint:
        return Decision(REFUSE, other_config_sentence(folder))
    if running:
        return Decision(WAIT, f"{folder.name} is still running from an earlier launch: waiting for it")
    if recorded is None:
        # no job here yet, or no checkpoint readable: the job starts (or restarts) and checks for itself
        return Decision(RUN, f"{folder.name}: no finished step yet")
    if fingerprint is None:  # not known here: the job compares it itself, so it runs (and refuses, if so)
        return Decision(RUN, f"{folder.name}: its config is checked by the job")
    if done:
        return Decision(SKIP, f"{folder.name} finished earlier")
    if (folder / "failed").exists():
        return Decision(RUN, f"{folder.name} failed earlier: run again from its last finished step")
    return Decision(RUN, f"{folder.name}: resumed after its last finished step")


def job_fingerprint(job_config: DictConfig) -> str | None:
    """The config fingerprint of the job a launcher is about to start, from its composed config (with or without
    its `hydra` node); None when the config does not make a RunSpec (the job then says why, in one sentence)."""
    from alrun.config.schema import run_spec_from_dict
    from alrun.loop.job import spec_fingerprint

    try:
        cfg = job_config.copy()
        if "hydra" in cfg:
            with open_dict(cfg):
                del cfg["hydra"]
        plain: Any = OmegaConf.to_container(cfg, resolve=True)
        return spec_fingerprint(run_spec_from_dict(plain))
    except AlrunError:  # a config the job refuses with its own sentence
        return None
    except Exception:  # noqa: BLE001 - e.g. an interpolation only the job's process resolves: the job decides
        return None



# under a launcher that runs each job in a process of its own, a refused job cannot stop the sweep itself: it
# leaves its sentence here, in the sweep folder (never in the other config's job folder), and the report
# callback on the launching process says it and exits 2
REFUSALS = ".alrun_refused"


def record_refusal(sweep_dir: Path, folder: Path, sentence: str) -> None:
    """Keep the refusal SENTENCE of the job of FOLDER for the launching process (see REFUSALS)."""
    from alrun.core.files import atomic_write_text

    atomic_write_text(Path(sweep_dir) / REFUSALS / f"{Path(folder).name}.txt", sentence + "\n")


def refusals(sweep_dir: Path) -> list[str]:
    """The refusal sentences the jobs of this launch left in SWEEP_DIR, sorted by job folder."""
    where = Path(sweep_dir) / REFUSALS
    return [p.read_text().strip() for p in sorted(where.glob("*.txt"))] if where.is_dir() else []


def clear_refusals(sweep_dir: Path) -> None:
    """Forget an earlier launch's refusals (before this launch's jobs start)."""
    where = Path(sweep_dir) / REFUSALS
    for path in where.glob("*.txt") if where.is_dir() else []:
        path.unlink(missing_ok=True)
