"""Faults through the real CLI (tests/faults.py arms them inside the alrun process), on one sweep
(`scale=smoke heuristic=bald seed=0,1`) run four times in the same folder:

1. the job with seed 1 raises in its second step: the other job finishes, the table counts seeds;
2. re-run: the finished job is skipped, the failed one resumes and the disk fills at its next checkpoint;
3. re-run: it is SIGKILLed while writing a checkpoint;
4. re-run without faults: both jobs equal tests/conftest.py's uninterrupted smoke_reference.
"""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import run_faulted, steps_without_timings

JOB0, JOB1 = "heuristic=bald,seed=0", "heuristic=bald,seed=1"




def snapshot(folder: Path) -> dict[str, str]:
    """Every file of a job folder by name (text), so later runs cannot change what a test reads."""
    return {p.name: p.read_text() for p in sorted(folder.iterdir()) if p.is_file()}


def without_timings(text: str) -> pd.DataFrame:
    return steps_without_timings(io.StringIO(text))


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("alrun: error:")]


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("faults")
    sweep = cwd / "sweep"
    args = ["scale=smoke", "heuristic=bald", "seed=0,1", f"hydra.sweep.dir={sweep}"]
    out: dict = {"sweep": sweep}
    out["crash"] = run_faulted(["crash-seed:1:2"], args, cwd)
    out["after_crash"] = {"table.csv": (sweep / "table.csv").read_text(), "table.md": (sweep / "table.md").read_text(),
                          JOB1: snapshot(sweep / JOB1)}
    out["full"] = run_faulted(["enospc:checkpoint.json:1"], args, cwd)
    out["after_full"] = snapshot(sweep / JOB1)
    out["killed"] = run_faulted(["kill-before-replace:checkpoint.json:2"], args, cwd)
    out["after_kill"] = sorted(p.name for p in (sweep / JOB1).iterdir())
    out["final"] = run_faulted([], args, cwd)
    return out


def test_failing_job_does_not_stop_the_others(chain, smoke_reference):
    crash = chain["crash"]
    assert crash.returncode == 1, crash.stderr  # the report is written, then the run says a job failed
    assert "1 job(s) failed" in crash.stdout
    assert f"{JOB1}: RuntimeError: injected fault in job seed=1" in crash.stdout
    files = chain["after_crash"][JOB1]
    assert "failed" in files and "RuntimeError: injected fault in job seed=1" in files["error.txt"]
    assert without_timings(files["steps.csv"])["labelled"].tolist() == [20]
    pd.testing.assert_frame_equal(steps_without_timings(chain["sweep"] / JOB0 / "steps.csv"),
                                  steps_without_timings(smoke_reference / JOB0 / "steps.csv"))


def test_table_shows_how_many_seeds_each_cell_has(chain):
    table = pd.read_csv(io.StringIO(chain["after_crash"]["table.csv"]))
    nll = table[table["metric"] == "test_nll"].set_index("labelled")["n"]
    assert nll.to_dict() == {20: 2, 30: 1, 50: 1}  # seed 1 failed after its first step (20 labelled)
    markdown = chain["after_crash"]["table.md"]
    assert "(2)" in markdown and "(1)" in markdown
    assert f"{JOB1}: RuntimeError: injected fault in job seed=1" in markdown


def test_full_disk_stops_with_one_sentence(chain):
    full = chain["full"]
    assert full.returncode == 2 and "Traceback" not in full.stderr
    [line] = error_lines(full)
    assert "checkpoint.json (No space left on device)" in line
    assert line.endswith("earlier results in that folder are intact.")


def test_full_disk_keeps_earlier_steps(chain, smoke_reference):
    files = chain["after_full"]
    assert not [name for name in files if name.endswith(".tmp")] and "done" not in files
    ref = steps_without_timings(smoke_reference / JOB1 / "steps.csv")
    pd.testing.assert_frame_equal(without_timings(files["steps.csv"]), ref.iloc[:1])
    assert files["checkpoint.json"] == chain["after_crash"][JOB1]["checkpoint.json"]


def test_kill_during_checkpoint_write(chain):
    assert chain["killed"].returncode == -9
    assert any(f.startswith(".checkpoint.json.") and f.endswith(".tmp") for f in chain["after_kill"])


def test_rerun_after_faults_equals_uninterrupted(chain, smoke_reference):
    final, sweep = chain["final"], chain["sweep"]
    assert final.returncode == 0, final.stderr
    for job in (JOB0, JOB1):
        assert (sweep / job / "done").exists() and not list((sweep / job).glob(".*.tmp"))
        pd.testing.assert_frame_equal(steps_without_timings(sweep / job / "steps.csv"),
                                      steps_without_timings(smoke_reference / job / "steps.csv"))
    assert not (sweep / JOB1 / "failed").exists() and not (sweep / JOB1 / "error.txt").exists()
    pd.testing.assert_frame_equal(pd.read_csv(sweep / "table.csv"), pd.read_csv(smoke_reference / "table.csv"))
