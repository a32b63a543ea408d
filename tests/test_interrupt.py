"""Ctrl-C during a sweep, sent as a terminal sends it (SIGINT), then the same command again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from tests.conftest import run_alrun

SWEEP = ["scale=smoke", "heuristic=bald,random", "seed=0"]  # two jobs of 4 steps (20 -> 50 labels)


def rows_in(folder: Path) -> int:
    return sum(max(0, len(p.read_text().splitlines()) - 1) for p in folder.rglob("steps.csv"))


def start(cwd: Path, args: list[str]) -> subprocess.Popen:
    """alrun in a process group of its own, as a shell runs a command: a terminal's Ctrl-C reaches the group."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "ALRUN_DATA_DIR": str(cwd / "data")}
    return subprocess.Popen([sys.executable, "-m", "alrun", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def wait_for_rows(proc: subprocess.Popen, folder: Path, n: int, limit_s: float = 300) -> None:
    deadline = time.monotonic() + limit_s
    while rows_in(folder) < n:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"no {n} steps after {limit_s} s"
        time.sleep(0.1)


def test_ctrl_c_says_one_line_writes_the_report_and_the_same_command_resumes(tmp_path):
    args = [*SWEEP, f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    proc = start(tmp_path, args)
    wait_for_rows(proc, tmp_path / "sweep", 5)  # the first job done, the second one step in
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    n = rows_in(tmp_path / "sweep")
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"alrun: interrupted after {n} finished steps; the same command resumes"), err
    assert "table.md" in last and (tmp_path / "sweep" / "table.md").is_file()
    assert "Unfinished jobs" in (tmp_path / "sweep" / "table.md").read_text()
    finished = {p.parent.name: p.read_text() for p in (tmp_path / "sweep").rglob("steps.csv")}

    again = run_alrun(args, tmp_path)
    assert "resuming" in again.stdout + again.stderr
    after = {p.parent.name: p.read_text() for p in (tmp_path / "sweep").rglob("steps.csv")}
    assert rows_in(tmp_path / "sweep") == 8 and len(after) == 2
    for job, text in finished.items():  # what had finished is kept as it was, never recomputed
        assert after[job].startswith(text)
    assert len(pd.read_csv(tmp_path / "sweep" / "summary.csv")) == 8


def test_a_second_ctrl_c_exits_at_once(tmp_path):
    proc = start(tmp_path, [*SWEEP, f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    wait_for_rows(proc, tmp_path / "sweep", 1)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)  # inside the first one's report
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err


def test_without_a_named_folder_the_line_names_it(tmp_path):
    from alrun.launch.interrupt import resume_hint

    assert resume_hint(["scale=smoke"], tmp_path) == f"the same command with hydra.sweep.dir={tmp_path} resumes"
    assert resume_hint(["hydra.sweep.dir=x"], tmp_path) == "the same command resumes"


def test_ctrl_c_reaching_every_joblib_worker_is_one_line_too(tmp_path):
    proc = start(tmp_path, [*SWEEP, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                            f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    wait_for_rows(proc, tmp_path / "sweep", 2)
    os.killpg(proc.pid, signal.SIGINT)  # the terminal's Ctrl-C: the launcher and its workers alike
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert err.strip().splitlines()[-1].startswith("alrun: interrupted after ")


def test_ctrl_c_under_mlflow_ends_the_sweeps_run_without_the_loggers_traceback(tmp_path):
    import json

    import pytest

    mlflow = pytest.importorskip("mlflow", reason="the `tracking` extra is not installed")
    proc = start(tmp_path, [*SWEEP, "tracker=mlflow", f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    wait_for_rows(proc, tmp_path / "sweep", 2)
    os.killpg(proc.pid, signal.SIGINT)  # the logger process gets it too
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err and "KeyboardInterrupt" not in err, err
    known = json.loads((tmp_path / "sweep" / "mlflow_sweep.json").read_text())
    parent = mlflow.tracking.MlflowClient(tracking_uri=known["uri"]).get_run(known["run_id"])
    assert parent.info.status == "FAILED"  # not left RUNNING; the same command reopens it
