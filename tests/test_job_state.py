"""One answer for a job's folder on every launcher (alrun.launch.job_state.decide): the same table of folders
goes through each launcher's entry to it, and each gives the table's answer; the refusal writes nothing."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf

from alrun.launch import job_state
from alrun.launch.job_state import KEEP, MARK_FAILED, REFUSE, RUN, SKIP, WAIT, decide
from alrun.loop.checkpoint import save_checkpoint

MINE, OTHER = "a" * 16, "b" * 16


def make_folder(root: Path, fingerprint: str | None, *markers: str) -> Path:
    """A job folder as a job leaves it: a checkpoint of FINGERPRINT (None: no checkpoint) and MARKERS."""
    folder = root / "heuristic=bald,seed=0"
    folder.mkdir(parents=True)
    if fingerprint is not None:
        save_checkpoint(folder / "checkpoint.json", {"fingerprint": fingerprint, "labelled": [1, 2],
                                                     "rows": [{"step": 0}], "finished": "done" in markers})
    for marker in markers:
        (folder / marker).write_text("")
    return folder


# (case, folder's checkpoint fingerprint, markers, running, lost) -> the answer
CASES = {
    "new": (None, (), False, False, RUN),
    "finished, same config": (MINE, ("done",), False, False, SKIP),
    "finished, other config": (OTHER, ("done",), False, False, REFUSE),
    "unfinished, other config": (OTHER, (), False, False, REFUSE),
    "failed": (MINE, ("failed",), False, False, RUN),
    "unfinished, same config": (MINE, (), False, False, RUN),
    "still running": (MINE, (), True, False, WAIT),
    "lost, finished": (MINE, ("done",), False, True, KEEP),
    "lost, unfinished": (MINE, (), False, True, MARK_FAILED),
}


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} if folder.is_dir() else {}


def cli_entry(folder, fingerprint, running, lost, monkeypatch):
    """basic, joblib, submitit_local: the job decides in its own process (never running elsewhere, never lost)."""
    from alrun.cli import folder_decision

    if running or lost:
        pytest.skip("a job of the basic, joblib or submitit_local launcher runs in a process its launcher waits on")
    return folder_decision(folder, fingerprint).action


def slurm_entry(folder, fingerprint, running, lost, monkeypatch):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="the `cluster` extra is not installed")
    from alrun.launch import launchers

    if lost:
        stderr = folder / "log.err"
        job = SimpleNamespace(job_id="77", paths=SimpleNamespace(stderr=stderr))
        result = launchers._lost(job, "CANCELLED", folder)
        return KEEP if result.return_value["status"] == "done" else MARK_FAILED
    monkeypatch.setattr(launchers, "_still_queued", lambda job_id: running)
    return launchers.slurm_decision(folder, fingerprint, "77" if running else None).action


def ray_entry(folder, fingerprint, running, lost, monkeypatch):
    from alrun.launch import ray_launch

    if running:
        pytest.skip("a Ray task ends with the driver that submitted it: no job of an earlier launch runs on")
    if lost:
        cfg = OmegaConf.create({"hydra": {"sweep": {"dir": str(folder.parent), "subdir": folder.name},
                                          "job": {"name": "alrun"}}})
        result = ray_launch.lost_job(cfg, [], RuntimeError("worker died"), 0)
        return KEEP if result.return_value["status"] == "done" else MARK_FAILED
    return ray_launch.ray_decision(folder, fingerprint).action


ENTRIES = {"basic/joblib/submitit_local": cli_entry, "slurm": slurm_entry, "ray": ray_entry}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("launcher", sorted(ENTRIES))
def test_every_launcher_gives_the_tables_answer(launcher, case, tmp_path, monkeypatch):
    fingerprint, markers, running, lost, expected = CASES[case]
    folder = make_folder(tmp_path, fingerprint, *markers) if fingerprint or markers else tmp_path / "job"
    assert decide(folder, MINE, running=running, lost=lost).action == expected  # the one function itself
    before = files(folder)
    assert ENTRIES[launcher](folder, MINE, running, lost, monkeypatch) == expected
    after = files(folder)
    if expected == MARK_FAILED:
        assert "failed" in after and "ended without finishing" in after["error.txt"].decode()
    else:  # nothing else writes: a refused, skipped, kept or waited-for folder is left as it was
        assert after == before


def test_the_refusal_is_one_sentence_naming_the_folder(tmp_path):
    folder = make_folder(tmp_path, OTHER, "done")
    decision = decide(folder, MINE)
    assert decision.action == REFUSE and decision.reason.count(". ") == 0 and str(folder) in decision.reason
    assert decision.reason.endswith("or delete that one.")


def test_an_unknown_fingerprint_runs_and_leaves_the_check_to_the_job(tmp_path):
    assert decide(make_folder(tmp_path, OTHER, "done"), None).action == RUN


def test_a_torn_checkpoint_falls_back_to_the_previous_one_without_touching_it(tmp_path):
    folder = make_folder(tmp_path, OTHER)
    save_checkpoint(folder / "checkpoint.json", {"fingerprint": OTHER, "labelled": [1], "rows": [{"step": 0}],
                                                 "finished": False})  # the first becomes checkpoint.prev.json
    (folder / "checkpoint.json").write_text("{torn")
    before = files(folder)
    assert decide(folder, MINE).action == REFUSE and files(folder) == before


def test_refusals_are_kept_beside_the_jobs_and_cleared(tmp_path):
    job_state.record_refusal(tmp_path, tmp_path / "heuristic=bald,seed=0", "alrun: error: The folder x holds ...")
    assert job_state.refusals(tmp_path) == ["alrun: error: The folder x holds ..."]
    job_state.clear_refusals(tmp_path)
    assert job_state.refusals(tmp_path) == []
