"""Fault injection for the reliability tests (test code only; nothing in alrun reads it).

    python -m tests.faults FAULT [FAULT ...] -- ALRUN_ARGS...   the real CLI, in this process, faults armed
    python -m tests.faults --scenarios FILE.json                 many kill/corruption scenarios of one small job

FAULT (N counts from 1, within this process):
    kill-before-replace:NAME:N  SIGKILL just before the N-th rename onto a file named NAME (its temp file is
                                complete: "during the write")
    kill-after-replace:NAME:N   SIGKILL just after that rename
    torn-write:NAME:N           the N-th write of NAME stops half way through its temp file, then SIGKILL
    enospc:NAME:N               the N-th write of NAME fails with ENOSPC (No space left on device)
    kill-in-fit:N               SIGKILL inside the N-th training call (mid-step)
    crash-seed:S:N              the N-th training call of the job with seed S raises RuntimeError
    tracker-down:N              the N-th MlflowClient.log_batch call, and every MLflow client call after it,
                                fails as if the tracking server had gone away
    tracker-flaky:N             in the MLflow logger, every second MlflowClient call fails (a log_batch after
                                its write reached the store, as a server that timed out after writing; any
                                other call before), N failures in all, each retried by the logger
    logger-stuck                the MLflow logger process never reads its input (a store that hangs): its pipe
                                shrunk to one page, alrun's queue to 2 step rows and its wait to 2 s
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import signal
import sys
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import alrun.core.files
import alrun.loop.job
import alrun.track.tracker

_calls: Counter = Counter()

# a logger that never reads: its stderr to /dev/null (the test's pipes close when alrun exits), its stdin pipe
# one page, and it exits when the process that started it has gone
STUCK_LOGGER = """
import fcntl, os, time
try:
    fcntl.fcntl(0, 1031, 4096)  # F_SETPIPE_SZ
except OSError:  # EBUSY: alrun already wrote more than a page
    pass
os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
parent = os.getppid()
while os.getppid() == parent:
    time.sleep(0.2)
"""


def _kill() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _count(key: str) -> int:
    _calls[key] += 1
    return _calls[key]


def arm(fault: str) -> None:
    """Install one FAULT (see the module docstring) by patching this process."""
    kind, *args = fault.split(":")
    if kind in ("kill-before-replace", "kill-after-replace"):
        name, nth = args[0], int(args[1])
        real_replace = os.replace

        def replace(src, dst, *a, **k):
            hit = Path(dst).name == name and _count(f"replace:{name}") == nth
            if hit and kind == "kill-before-replace":
                _kill()
            real_replace(src, dst, *a, **k)
            if hit:
                _kill()

        os.replace = replace
    elif kind in ("torn-write", "enospc"):
        name, nth = args[0], int(args[1])
        real_mkstemp, real_fsync = alrun.core.files.tempfile.mkstemp, os.fsync
        targets: dict[int, str] = {}

        def mkstemp(*a, prefix="", **k):
            fd, path = real_mkstemp(*a, prefix=prefix, **k)
            targets[fd] = prefix[1:-1]  # ".checkpoint.json." -> "checkpoint.json"
            return fd, path

        def fsync(fd):
            if targets.pop(fd, None) == name and _count(f"write:{name}") == nth:
                if kind == "enospc":
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                os.ftruncate(fd, os.fstat(fd).st_size // 2)
                _kill()
            real_fsync(fd)

        alrun.core.files.tempfile.mkstemp = mkstemp
        os.fsync = fsync
    elif kind == "kill-in-fit":
        nth = int(args[0])
        real_fit = alrun.loop.job.fit

        def fit(*a, **k):
            if _count("fit") == nth:
                _kill()
            return real_fit(*a, **k)

        alrun.loop.job.fit = fit
    elif kind == "crash-seed":
        seed, nth = int(args[0]), int(args[1])
        real_fit, real_run = alrun.loop.job.fit, alrun.loop.job.ActiveLearningJob.run
        current: dict[str, int] = {}

        def run(self, *a, **k):
            current["seed"] = self.spec.seed
            return real_run(self, *a, **k)

        def fit(*a, **k):
            if current.get("seed") == seed and _count(f"fit/{seed}") == nth:
                raise RuntimeError(f"injected fault in job seed={seed}")
            return real_fit(*a, **k)

        alrun.loop.job.ActiveLearningJob.run = run
        alrun.loop.job.fit = fit
    elif kind in ("tracker-down", "tracker-flaky"):
        # MLflow runs in alrun's logger process: start that process through this module, fault armed. It imports
        # torch (this module) and mlflow (the fault) before it reads its first line, where alrun's own logger
        # reads within a fraction of a second: not to be taken for a logger that never reads (START_TIMEOUT)
        alrun.track.tracker.WORKER_COMMAND = [sys.executable, "-m", "tests.faults", "--tracker-worker", fault]
        alrun.track.tracker.START_TIMEOUT = alrun.track.tracker.WAIT_TIMEOUT
    elif kind == "logger-stuck":
        alrun.track.tracker.WORKER_COMMAND = [sys.executable, "-c", STUCK_LOGGER]
        alrun.track.tracker.QUEUE_SIZE = 2
        # no timeout to fall back on: only the stall rule (STALL_TIMEOUT, as shipped) ends the final wait
        alrun.track.tracker.WAIT_TIMEOUT = 3600.0
    else:
        raise ValueError(f"unknown fault {fault!r}")


# ---------------------------------------------------------------- scenarios of one small job, each in a forked child


def small_spec():
    """A 3-step job (20 -> 30 -> 40 labelled) that runs in about a second on one CPU core."""
    from alrun.config.schema import DatasetSpec, RunSpec, TrainSpec

    return RunSpec(seed=0, heuristic="bald", query_size=10, initial_labelled=20, max_labelled=40, mc_samples=3,
                   device="cpu", dataset=DatasetSpec(max_train=200, max_test=100),
                   train=TrainSpec(epochs=2, schedule="fixed"))


def _attempt(out_dir: Path, log_path: Path, fault: str | None) -> int:
    """Run the small job in a forked child (with `fault` armed); its exit code, -9 when SIGKILLed."""
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 0
        try:
            fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 2)
            logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
            if fault:
                arm(fault)
            alrun.loop.job.ActiveLearningJob(small_spec(), out_dir).run()
        except BaseException:
            traceback.print_exc()
            code = 3
        finally:
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _mutate(out_dir: Path, action: str) -> None:
    """Damage a file between attempts: truncate:NAME, flip:NAME (one digit changed), garbage:NAME, delete:NAME."""
    how, name = action.split(":")
    path = out_dir / name
    if how == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "flip":  # still valid JSON, but a number in the rows changed: only the checksum sees it
        text = path.read_text()
        at = text.index('"test_nll": ') + len('"test_nll": ') + 2
        path.write_text(text[:at] + ("1" if text[at] != "1" else "2") + text[at + 1 :])
    elif how == "garbage":
        path.write_bytes(b"\x00\xff not json")
    elif how == "delete":
        path.unlink()
    else:
        raise ValueError(action)


def run_scenarios(spec_file: Path) -> dict[str, Any]:
    """Every scenario: a list of steps ("fault" attempts, "mutate" damage), then a clean attempt.

    Returns, per scenario, the exit code and log of each attempt and the final steps.csv text;
    "reference" is one uninterrupted run.
    """
    plan = json.loads(Path(spec_file).read_text())
    work = Path(plan["work"])
    results: dict[str, Any] = {}
    for name, actions in {"reference": [], **plan["scenarios"]}.items():
        out = work / name
        shutil.rmtree(out, ignore_errors=True)
        attempts = []
        for i, action in enumerate([*actions, {"fault": None}]):
            if "mutate" in action:
                _mutate(out, action["mutate"])
                continue
            log_path = work / f"{name}.{i}.log"
            code = _attempt(out, log_path, action["fault"])
            attempts.append({"fault": action["fault"], "exit": code, "log": log_path.read_text(),
                             "files": sorted(p.name for p in out.iterdir()) if out.exists() else []})
        steps = out / "steps.csv"
        results[name] = {"attempts": attempts, "steps": steps.read_text() if steps.exists() else None,
                         "done": (out / "done").exists()}
    return results


def break_mlflow_after(nth: int) -> None:
    """From the nth MlflowClient.log_batch call on, every MLflow client call fails (a server gone)."""
    from mlflow.tracking import MlflowClient

    down = {"now": False}

    def failing(method):
        real = getattr(MlflowClient, method)

        def call(self, *a, **k):
            if method == "log_batch" and _count("log_batch") == nth:
                down["now"] = True
            if down["now"]:
                raise ConnectionError("injected fault: the tracking server is gone")
            return real(self, *a, **k)

        return call

    for method in ("log_batch", "log_artifact", "set_tag", "set_terminated", "update_run", "create_run", "get_run",
                   "search_runs", "get_metric_history", "get_experiment_by_name", "delete_tag"):
        setattr(MlflowClient, method, failing(method))


def flaky_mlflow(failures: int) -> None:
    """Every second MlflowClient call fails, `failures` times in all (see tracker-flaky:N)."""
    from mlflow.tracking import MlflowClient

    def flaky(method):
        real = getattr(MlflowClient, method)

        def call(self, *a, **k):
            fail = _count("client") % 2 == 1 and _count("failed") <= failures
            if fail and method != "log_batch":
                raise ConnectionError("injected fault: the store did not answer")
            result = real(self, *a, **k)
            if fail:
                raise TimeoutError("injected fault: the store timed out after writing")
            return result

        return call

    for method in ("log_batch", "log_artifact", "set_tag", "set_terminated", "update_run", "create_run", "get_run",
                   "search_runs", "get_metric_history", "get_experiment_by_name", "create_experiment", "delete_tag"):
        setattr(MlflowClient, method, flaky(method))


def main(argv: list[str]) -> None:
    if argv and argv[0] == "--tracker-worker":  # alrun's MLflow logger process, with tracker-down:N armed
        import alrun.track.mlflow_logger
        import alrun.track.mlflow_retry

        alrun.track.mlflow_retry.BACKOFF_S = 0.01  # the same retries, without the waits
        kind, nth = argv[1].split(":")
        (break_mlflow_after if kind == "tracker-down" else flaky_mlflow)(int(nth))
        code = alrun.track.mlflow_logger.serve()
        sys.stderr.flush()
        os._exit(code)
    if argv and argv[0] == "--scenarios":
        import torch

        torch.set_num_threads(1)  # the children share the CPU with other tests; same setting for every attempt
        print(json.dumps(run_scenarios(Path(argv[1]))))
        return
    split = argv.index("--")
    for fault in argv[:split]:
        arm(fault)
    from alrun.cli import main as alrun_main

    sys.argv = ["alrun", *argv[split + 1 :]]
    alrun_main()


if __name__ == "__main__":
    main(sys.argv[1:])
