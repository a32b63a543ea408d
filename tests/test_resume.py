"""Kill-and-resume: a job SIGKILLed at chosen moments, or left with a corrupt checkpoint, and then re-run
gives the steps.csv of a run never interrupted (timings aside).

All scenarios run in one subprocess (tests/faults.py --scenarios) that forks a child per attempt, so
each kill is a real SIGKILL of the process doing the work, and torch is imported once.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pandas as pd
import pytest

from tests.conftest import REPO

# each scenario: attempts with a fault armed (each must end in SIGKILL) or damage to a file between
# attempts; then a clean attempt that must finish the job. Write numbers count within one attempt.
SCENARIOS = {
    # torn temp file of step 1's checkpoint; then killed between keeping the previous checkpoint and
    # installing the new one (no checkpoint.json on disk); then killed with the new one complete but not renamed
    "kills_during_checkpoint_writes": [
        {"fault": "torn-write:checkpoint.json:2"},
        {"fault": "kill-after-replace:checkpoint.prev.json:1"},
        {"fault": "kill-before-replace:checkpoint.json:1"},
    ],
    # before any checkpoint; mid-training of step 1; after step 1's checkpoint but before steps.csv;
    # after the last checkpoint but before the `done` marker
    "kills_between_and_inside_steps": [
        {"fault": "kill-in-fit:1"},
        {"fault": "kill-in-fit:2"},
        {"fault": "kill-before-replace:steps.csv:1"},
        {"fault": "kill-before-replace:done:1"},
    ],
    "torn_checkpoint": [{"fault": "kill-in-fit:3"}, {"mutate": "truncate:checkpoint.json"}],
    "checkpoint_with_a_changed_number": [{"fault": "kill-in-fit:3"}, {"mutate": "flip:checkpoint.json"}],
    "both_checkpoints_corrupt": [{"fault": "kill-in-fit:3"}, {"mutate": "garbage:checkpoint.json"},
                                 {"mutate": "truncate:checkpoint.prev.json"}],
}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    work = tmp_path_factory.mktemp("resume")
    plan = work / "plan.json"
    plan.write_text(json.dumps({"work": str(work), "scenarios": SCENARIOS}))
    proc = subprocess.run([sys.executable, "-m", "tests.faults", "--scenarios", str(plan)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def without_timings(text: str) -> pd.DataFrame:
    frame = pd.read_csv(io.StringIO(text))
    return frame.drop(columns=[c for c in frame.columns if c.startswith("time_")])


def warnings_of(attempt: dict) -> list[str]:
    return [line for line in attempt["log"].splitlines() if line.startswith("WARNING")]


def test_reference_runs_three_steps(outcomes):
    ref = outcomes["reference"]
    assert ref["attempts"][0]["exit"] == 0 and ref["done"]
    assert without_timings(ref["steps"])["labelled"].tolist() == [20, 30, 40]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_resumed_job_equals_uninterrupted(outcomes, scenario):
    result = outcomes[scenario]
    *faulted, final = result["attempts"]
    assert [a["exit"] for a in faulted] == [-9] * len(faulted), "every armed fault must end in SIGKILL"
    assert final["exit"] == 0 and result["done"], final["log"]
    pd.testing.assert_frame_equal(without_timings(result["steps"]), without_timings(outcomes["reference"]["steps"]))
    assert not [f for f in final["files"] if f.endswith(".tmp")], "temporary files of killed writers are removed"


def test_kills_hit_the_intended_moments(outcomes):
    torn, between, before = outcomes["kills_during_checkpoint_writes"]["attempts"][:3]
    # torn: step 0's checkpoint is installed, step 1's is a half-written temp file
    assert "checkpoint.json" in torn["files"] and any(f.startswith(".checkpoint.json.") for f in torn["files"])
    # between the two renames: only the kept previous checkpoint is on disk
    assert "checkpoint.json" not in between["files"] and "checkpoint.prev.json" in between["files"]
    assert any(f.startswith(".checkpoint.json.") for f in before["files"])
    in_fit1, _, before_steps, before_done = outcomes["kills_between_and_inside_steps"]["attempts"][:4]
    assert in_fit1["files"] == ["spec.json"]
    assert any(f.startswith(".steps.csv.") for f in before_steps["files"])
    assert "done" not in before_done["files"] and any(f.startswith(".done.") for f in before_done["files"])


@pytest.mark.parametrize("scenario", ["kills_during_checkpoint_writes", "kills_between_and_inside_steps"])
def test_clean_kills_resume_without_warnings(outcomes, scenario):
    for attempt in outcomes[scenario]["attempts"]:
        assert warnings_of(attempt) == [] and "Traceback" not in attempt["log"]


@pytest.mark.parametrize("scenario,reason", [
    ("torn_checkpoint", "is not valid JSON"),
    ("checkpoint_with_a_changed_number", "fails its checksum"),
])
def test_corrupt_checkpoint_named_once_and_previous_step_used(outcomes, scenario, reason):
    final = outcomes[scenario]["attempts"][-1]
    [warning] = warnings_of(final)
    assert "checkpoint.json" in warning and reason in warning
    assert "resuming from the previous checkpoint after step 0" in warning
    assert "resuming" in final["log"] and "after 1 finished steps" in final["log"]
    assert "checkpoint.corrupt.json" in final["files"]


def test_both_checkpoints_corrupt_restarts_from_step_0(outcomes):
    final = outcomes["both_checkpoints_corrupt"]["attempts"][-1]
    [warning] = warnings_of(final)
    assert "restarting the job from step 0" in warning and "Traceback" not in final["log"]
