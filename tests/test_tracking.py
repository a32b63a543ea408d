"""tracker=mlflow for real, at scale=smoke: sweeps read back with MLflow's own client.

One child run per job under one parent run per sweep, metric histories equal to steps.csv (step = labelled
size), params equal to job.json's flat config, artifacts present, and all of it unchanged by a second report
(no metric twice); the verdict's numbers on the parent (a hand-built Report); a SIGKILLed and re-run job logs
each step once; two joblib workers share one embedded store; a failing job and a tracker gone mid-sweep; the
error sentences before any training.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from alrun.core.filelock import exclusive
from alrun.track.values import job_params
from tests.conftest import LAUNCHERS, REPO, THREADS, run_alrun, run_faulted

mlflow = pytest.importorskip("mlflow", reason="the `tracking` extra is not installed")
from mlflow.tracking import MlflowClient  # noqa: E402

JOB_BALD, JOB_RANDOM = "heuristic=bald,seed=0", "heuristic=random,seed=0"




def store_of(sweep: Path) -> tuple[MlflowClient, dict]:
    """MLflow's client on the store the sweep logged to, and the sweep's {uri, experiment_id, run_id}."""
    known = json.loads((sweep / "mlflow_sweep.json").read_text())
    return MlflowClient(tracking_uri=known["uri"]), known


def child_runs(client: MlflowClient, known: dict) -> dict[str, mlflow.entities.Run]:
    """The sweep's child runs by name (the job's folder)."""
    runs = client.search_runs([known["experiment_id"]],
                              filter_string=f"tags.mlflow.parentRunId = '{known['run_id']}'")
    return {r.info.run_name: r for r in runs}


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def steps_history(steps: pd.DataFrame, key: str) -> list[tuple[int, float]]:
    return sorted(zip(steps["labelled"].astype(int), steps[key].astype(float), strict=True))


def assert_histories_equal_steps(client: MlflowClient, run: mlflow.entities.Run, steps: pd.DataFrame) -> None:
    """Every column of steps.csv but the step counter is a metric whose history is that column, once per step."""
    metrics = set(run.data.metrics)
    assert metrics == set(steps.columns) - {"step", "fit_flag"}  # the fit flag is a word, not a metric
    for key in sorted(metrics):
        got, want = history(client, run.info.run_id, key), steps_history(steps, key)
        assert [s for s, _ in got] == [s for s, _ in want], f"{key}: steps {got} != {want}"
        assert all(math.isclose(a, b, rel_tol=1e-12, abs_tol=0) for (_, a), (_, b) in zip(got, want, strict=True)), key


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """`alrun scale=smoke heuristic=bald,random seed=0 tracker=mlflow` on the embedded default store, run twice:
    the second run finds every job done and writes and logs the report again. Every test of this sweep reads
    the store after both reports (returned: the folder, the sweep, the first run and the second)."""
    cwd = tmp_path_factory.mktemp("tracked")
    args = ["scale=smoke", "heuristic=bald,random", "seed=0", "tracker=mlflow", f"hydra.sweep.dir={cwd / 'sweep'}"]
    first = run_alrun(args, cwd, env=THREADS)
    again = run_alrun(args, cwd, env=THREADS)
    return cwd, cwd / "sweep", first, again


def test_the_embedded_store_is_under_results_and_named_once(tracked):
    cwd, sweep, proc, again = tracked
    uri = f"sqlite:///{(cwd / 'results' / 'mlflow.db').resolve()}"
    assert proc.stdout.count(f"alrun: tracking to MLflow at {uri} ") == 1
    assert json.loads((sweep / "mlflow_sweep.json").read_text())["uri"] == uri
    for run in (proc, again):
        assert "Traceback" not in run.stderr and "warning" not in (run.stdout + run.stderr).lower()


def test_one_experiment_one_parent_one_child_per_job(tracked):
    sweep = tracked[1]
    client, known = store_of(sweep)
    assert client.get_experiment(known["experiment_id"]).name == "baseline"
    parent = client.get_run(known["run_id"])
    assert parent.info.status == "FINISHED"
    tags = parent.data.tags
    assert tags["sweep_dir"] == str(sweep.resolve()) and tags["command"].startswith("alrun scale=smoke")
    assert tags["alrun_version"] == __import__("alrun").__version__
    children = child_runs(client, known)
    assert sorted(children) == [JOB_BALD, JOB_RANDOM]
    all_runs = client.search_runs([known["experiment_id"]])
    assert len(all_runs) == 3  # nothing else: no stray runs
    for name, run in children.items():
        assert run.info.status == "FINISHED"
        assert run.data.tags["job_dir"] == str((sweep / name).resolve())


def test_metric_histories_equal_steps_csv(tracked):
    sweep = tracked[1]
    client, known = store_of(sweep)
    for name, run in child_runs(client, known).items():
        steps = pd.read_csv(sweep / name / "steps.csv")
        assert steps["labelled"].tolist() == [20, 30, 40, 50]
        assert_histories_equal_steps(client, run, steps)


def test_params_equal_job_json_config(tracked):
    """Every key of the job's flat resolved config, machine paths included, in YAML's spelling; and the
    readable names of job.json's settings that the config lacks."""
    sweep = tracked[1]
    client, known = store_of(sweep)
    for name, run in child_runs(client, known).items():
        job = json.loads((sweep / name / "job.json").read_text())
        config, settings = job["config"], job["settings"]
        spelled = {None: "null", True: "true", False: "false"}
        want = {k: spelled[v] if v is None or isinstance(v, bool) else str(v) for k, v in config.items()}
        want.update({k: str(v) for k, v in settings.items() if k not in config})
        assert run.data.params == want
        params = run.data.params
        assert {"train.lr", "max_labelled", "train.schedule", "model.dropout", "model.feature_cache"} <= set(params)
        assert params["model.feature_cache"] == config["model.feature_cache"]  # a path of this machine, kept
        assert params["report.target_accuracy"] == "null" and params["initial_balanced"] == "false"
        heuristic = name.split(",")[0].split("=")[1]
        assert (params["heuristic"], params["model"], params["model.name"]) == (heuristic, "mlp", "auto")


def test_no_metric_twice_after_a_second_report(tracked):
    """The sweep's report was written and logged twice (and a third time here, as `python -m alrun.report`
    logs it through log_to_recorded_store): every metric of every run holds one entry per step."""
    from alrun.report import write_report
    from alrun.track.tracker import log_to_recorded_store

    sweep = tracked[1]
    log_to_recorded_store(sweep, write_report(sweep))
    client, known = store_of(sweep)
    runs = [client.get_run(known["run_id"]), *child_runs(client, known).values()]
    assert len(runs[0].data.metrics) >= 8  # the table's cells and the paired gains
    for run in runs:
        for key in run.data.metrics:
            steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
            assert len(steps) == len(set(steps)), f"{run.info.run_name}: {key} logged twice: {steps}"


def test_artifacts_and_headline_numbers(tracked):
    sweep = tracked[1]
    client, known = store_of(sweep)
    for name, run in child_runs(client, known).items():
        assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["steps.csv"]
        local = client.download_artifacts(run.info.run_id, "steps.csv")
        assert Path(local).read_text() == (sweep / name / "steps.csv").read_text()
    parent = known["run_id"]
    assert sorted(a.path for a in client.list_artifacts(parent)) == ["curves.png", "summary.csv", "table.csv",
                                                                     "table.md"]
    # the table's cells (mean over seeds at each table size) and each heuristic's paired gain against random,
    # step = labelled size
    table = pd.read_csv(sweep / "table.csv")
    for metric in ("test_nll", "test_acc", "paired_test_nll", "paired_test_acc"):
        cell = table[(table["heuristic"] == "bald") & (table["metric"] == metric)]
        assert len(cell) > 0
        assert history(client, parent, f"{metric}/heuristic bald") == sorted(zip(cell["labelled"], cell["mean"],
                                                                                  strict=True))
    steps = {h: pd.read_csv(sweep / f"heuristic={h},seed=0" / "steps.csv").set_index("labelled")
             for h in ("bald", "random")}
    for metric, sign in (("test_nll", 1), ("test_acc", -1)):  # positive: bald is better
        gain = history(client, parent, f"paired_{metric}/heuristic bald")
        assert {s for s, _ in gain} <= {20, 30, 50} and 50 in {s for s, _ in gain}
        for size, value in gain:
            assert value == pytest.approx(sign * (steps["random"][metric][size] - steps["bald"][metric][size]))


def wait_for_logger(job: Path) -> None:
    """Until the logger process of a killed job has logged what it was sent and exited (it holds the job's
    lock from opening the job's run, which writes mlflow_run.json, until it exits)."""
    for _ in range(600):
        if (job / "mlflow_run.json").exists():
            break
        time.sleep(0.1)
    with exclusive(job / ".mlflow_run.json.lock", "the killed job's logger") as held:
        assert held


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """One job SIGKILLed twice (after a step's checkpoint but before it reached MLflow; then inside
    training), its run-id file lost in between, then re-run to the end."""
    cwd = tmp_path_factory.mktemp("resumed")
    sweep = cwd / "sweep"
    args = ["scale=smoke", "heuristic=bald", "seed=0", "tracker=mlflow", f"hydra.sweep.dir={sweep}"]
    attempts = [run_faulted(["kill-before-replace:steps.csv:2"], args, cwd)]
    wait_for_logger(sweep / JOB_BALD)
    (sweep / JOB_BALD / "mlflow_run.json").unlink()  # as if killed between creating the run and recording it
    attempts.append(run_faulted(["kill-in-fit:2"], args, cwd))
    attempts.append(run_faulted([], args, cwd))
    return sweep, attempts


def test_resumed_job_logs_each_step_once(resumed, tracked):
    sweep, attempts = resumed
    assert [a.returncode for a in attempts] == [-9, -9, 0], attempts[-1].stderr
    client, known = store_of(sweep)
    runs = client.search_runs([known["experiment_id"]])
    assert len(runs) == 2  # the sweep's parent, reused by every attempt, and the job's one run
    [run] = child_runs(client, known).values()
    assert run.info.status == "FINISHED"
    steps = pd.read_csv(sweep / JOB_BALD / "steps.csv")
    assert_histories_equal_steps(client, run, steps)
    job = json.loads((sweep / JOB_BALD / "job.json").read_text())
    assert run.data.params == job_params(job["config"], job["settings"])  # each attempt found them logged
    # and the same numbers as the uninterrupted job of the other sweep (timings aside)
    tracked_client, tracked_known = store_of(tracked[1])
    uninterrupted = child_runs(tracked_client, tracked_known)[JOB_BALD]
    for key in ("test_nll", "test_acc", "test_f1_macro", "f1_0", "count_3"):
        assert history(client, run.info.run_id, key) == history(tracked_client, uninterrupted.info.run_id, key)




@pytest.fixture(scope="module", params=sorted(LAUNCHERS))
def launched(request, tmp_path_factory):
    cwd = tmp_path_factory.mktemp(request.param)
    sweep = cwd / "sweep"
    proc = run_alrun(["scale=smoke", "heuristic=bald", "seed=0,1", "tracker=mlflow", *LAUNCHERS[request.param],
                      f"hydra.sweep.dir={sweep}"], cwd, env=THREADS)
    return request.param, sweep, proc


def test_two_workers_share_one_embedded_store(launched):
    name, sweep, proc = launched
    log = proc.stdout + proc.stderr
    assert ("Joblib.Parallel(n_jobs=2" if name == "joblib" else "Submitit 'local' sweep output dir") in log
    job_logs = "".join(p.read_text() for p in (sweep / ".submitit").rglob("*.err")) if name != "joblib" else ""
    for text in (log, job_logs):
        assert "warning" not in text.lower() and "locked" not in text
    client, known = store_of(sweep)
    children = child_runs(client, known)
    assert sorted(children) == ["heuristic=bald,seed=0", "heuristic=bald,seed=1"]
    assert len(client.search_runs([known["experiment_id"]])) == 3
    for job, run in children.items():
        assert run.info.status == "FINISHED"
        assert_histories_equal_steps(client, run, pd.read_csv(sweep / job / "steps.csv"))
    assert client.get_run(known["run_id"]).info.status == "FINISHED"
    assert len(client.list_artifacts(known["run_id"])) == 4


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    """Job seed=0 crashes in its second training call; then the tracking server goes away during job seed=1."""
    cwd = tmp_path_factory.mktemp("faulty")
    sweep = cwd / "sweep"
    # log_batch calls: job 0's params (1), its step 0 (2); job 1's params (3), its step 0 (4): down from there
    proc = run_faulted(["crash-seed:0:2", "tracker-down:4"],
                       ["scale=smoke", "heuristic=bald", "seed=0,1", "tracker=mlflow", f"hydra.sweep.dir={sweep}"], cwd)
    return sweep, proc


def test_failed_job_ends_its_run_failed_with_the_errors_last_line(faulty):
    sweep, proc = faulty
    assert proc.returncode == 1, proc.stderr  # the report is written, then the run says a job failed
    client, known = store_of(sweep)
    run = child_runs(client, known)["heuristic=bald,seed=0"]
    assert run.info.status == "FAILED"
    assert run.data.tags["error"] == "RuntimeError: injected fault in job seed=0"
    assert history(client, run.info.run_id, "labelled") == [(20, 20.0)]


def test_tracker_gone_mid_sweep_warns_once_and_loses_no_file(faulty):
    sweep, proc = faulty
    # the alrun logger's lines go where Hydra's job logging sends them (the console and the job's log)
    warnings = [line for line in (proc.stdout + proc.stderr).splitlines() if "MLflow tracking at" in line]
    assert len(warnings) == 1 and "stopped while logging step 0" in warnings[0], proc.stdout + proc.stderr
    assert "the tracking server is gone" in warnings[0]
    # the logger gave up (after the retries of 3 calls in a row) and exited; the job process reaped it, silently
    assert "the MLflow logger process stopped" not in proc.stdout + proc.stderr
    job = sweep / "heuristic=bald,seed=1"
    assert (job / "done").exists() and pd.read_csv(job / "steps.csv")["labelled"].tolist() == [20, 30, 40, 50]
    for name in ("table.md", "table.csv", "curves.png", "summary.csv"):
        assert (sweep / name).exists()
    assert "Results in" in proc.stdout


def test_unreachable_uri_is_one_sentence_before_any_training(tmp_path):
    proc = run_alrun(["scale=smoke", "heuristic=bald", "seed=0", "tracker=mlflow", "tracker.uri=http://127.0.0.1:9",
                      f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path, check=False, env=THREADS)
    assert proc.returncode == 2
    [line] = [x for x in proc.stderr.splitlines() if x.strip()]
    assert line.startswith("alrun: error: tracker.uri=http://127.0.0.1:9 cannot be reached")
    assert "tracker=none" in line
    assert not list(tmp_path.rglob("steps.csv")) and not list(tmp_path.rglob("job.json"))


def test_missing_mlflow_is_one_sentence_with_the_install_command(tmp_path):
    # a sitecustomize that hides the installed mlflow from this process, as if it were not installed
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "sitecustomize.py").write_text(
        "import sys\n"
        "class HideMlflow:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'mlflow' or name.startswith('mlflow.'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, HideMlflow())\n")
    env = {**THREADS, "PYTHONPATH": os.pathsep.join([str(shadow), str(REPO)])}
    proc = run_alrun(["scale=smoke", "heuristic=bald", "seed=0", "tracker=mlflow",
                      f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path, check=False, env=env)
    assert proc.returncode == 2
    [line] = [x for x in proc.stderr.splitlines() if x.strip()]
    assert line == ("alrun: error: tracker=mlflow needs the mlflow package, which is not installed: "
                    "pip install 'alrun[tracking]' (or pip install mlflow).")
    assert not list(tmp_path.rglob("steps.csv"))


def test_tracker_settings_are_checked():
    from alrun.core.errors import ConfigError
    from alrun.track.tracker import Tracker, open_tracker, settings_from

    assert type(open_tracker({"name": "none"})) is Tracker and not open_tracker(None).enabled
    with pytest.raises(ConfigError, match="`tracker=wandb` is not a tracker: use one of none, mlflow"):
        settings_from({"name": "wandb"})


def test_relative_sqlite_uri_is_made_absolute_and_others_kept(tmp_path):
    from alrun.track.tracker import resolve_uri

    assert resolve_uri("sqlite:///results/mlflow.db", tmp_path) == f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}"
    assert resolve_uri("sqlite:////abs/m.db", tmp_path) == "sqlite:////abs/m.db"
    assert resolve_uri("http://host:5000", tmp_path) == "http://host:5000"


def test_every_number_of_a_row_but_the_step_counter_is_a_metric():
    from alrun.track.tracker import metric_key, row_metrics

    row = {"step": 2, "labelled": 40, "test_nll": 1.5, "f1_car": 0.25, "count_car": 3, "note": "x", "flag": True}
    assert row_metrics(row) == {"labelled": 40.0, "test_nll": 1.5, "f1_car": 0.25, "count_car": 3.0}
    assert metric_key("test_nll/lambda=0.1, heuristic bald") == "test_nll/lambda_0.1_ heuristic bald"


def hand_built_report(gain: float = 0.012):
    """A Report as the report writes it, with a verdict: rows keyed on lambda, a heuristic whose label MLflow
    cannot take as a key (`power_bald(beta=4)`), an interval with no Holm p, and a heuristic not testable."""
    from alrun.report import Report

    table = pd.DataFrame({"lambda": [0.1, 0.1], "heuristic": ["bald", "random"], "labelled": [50, 50],
                          "metric": ["test_acc", "test_acc"], "mean": [0.9, 0.85], "std": [0.01, 0.02], "n": [3, 3]})
    nan = float("nan")
    rows = [("bald", "aubc_test_acc", gain, 0.004, 0.020, 0.004, 0.01, "better"),
            ("bald", "aubc_test_nll", 0.05, 0.01, 0.09, 0.02, nan, "better"),
            ("bald", "labels_saved", 110.0, 70.0, 140.0, 0.003, 0.006, "better"),
            ("power_bald(beta=4)", "aubc_test_acc", 0.0, nan, nan, nan, nan, "not testable")]
    verdict = pd.DataFrame([{"lambda": 0.1, "heuristic": h, "versus": "random", "metric": m, "n": 3, "mean": g,
                             "ci_low": lo, "ci_high": hi, "p_value": p, "p_holm": ph, "decision": d}
                            for h, m, g, lo, hi, p, ph, d in rows])
    report = Report(summary=pd.DataFrame(), table=table, group_columns=["lambda", "heuristic"], sizes=[50],
                    markdown="", failed_jobs=[], extra=[])
    report.verdict = verdict  # the field the report adds (getattr: absent on an older Report)
    report.verdict_lines = ["bald: better than random.", "power_bald(beta=4): not testable."]
    return report


def test_verdict_numbers_reach_the_parent_once(tmp_path):
    """The training side's log_report (a hand-built Report) through the logger process, twice: every number
    of the verdict under a readable key, its decisions and sentences as tags, and no entry twice; a changed
    number is a newer entry that MLflow shows."""
    from alrun.track.tracker import WorkerTracker

    uri, sweep = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "sweep"
    sweep.mkdir()
    tracker = WorkerTracker(uri)
    tracker.start_sweep(sweep, "verdict")
    tracker.log_report(sweep, hand_built_report(), [])
    WorkerTracker(uri).log_report(sweep, hand_built_report(), [])  # a second report of the same sweep
    client, known = store_of(sweep)
    run = client.get_run(known["run_id"])
    base = "verdict/aubc_test_acc/lambda 0.1/bald"
    assert {k: v for k, v in run.data.metrics.items() if k.startswith(base + "/")} == {
        f"{base}/gain": 0.012, f"{base}/ci_low": 0.004, f"{base}/ci_high": 0.020, f"{base}/p": 0.004,
        f"{base}/p_holm": 0.01, f"{base}/n": 3}
    assert run.data.metrics["verdict/labels_saved/lambda 0.1/bald/mean"] == 110
    assert "verdict/aubc_test_nll/lambda 0.1/bald/p_holm" not in run.data.metrics  # NaN: left out
    assert run.data.metrics["verdict/aubc_test_acc/lambda 0.1/power_bald_beta_4_/gain"] == 0
    assert run.data.metrics["test_acc/lambda 0.1 heuristic bald"] == 0.9
    assert run.data.tags[base] == "better"
    assert run.data.tags["verdict/aubc_test_acc/lambda 0.1/power_bald_beta_4_"] == "not testable"
    assert run.data.tags["verdict"] == "bald: better than random.\npower_bald(beta=4): not testable."
    assert run.info.status == "FINISHED"
    for key in run.data.metrics:
        assert len(client.get_metric_history(run.info.run_id, key)) == 1, key
    WorkerTracker(uri).log_report(sweep, hand_built_report(gain=0.015), [])  # the sweep grew: a new number
    assert history(client, known["run_id"], f"{base}/gain") == [(0, 0.012), (0, 0.015)]
    assert client.get_run(known["run_id"]).data.metrics[f"{base}/gain"] == 0.015
    assert len(client.get_metric_history(known["run_id"], f"{base}/ci_low")) == 1


def test_a_report_without_a_verdict_logs_no_verdict():
    from alrun.track.values import verdict_metrics, verdict_tags

    report = hand_built_report()
    del report.verdict, report.verdict_lines
    assert verdict_metrics(report) == [] and verdict_tags(report) == {}


def test_keys_and_values_mlflow_takes():
    from alrun.track.values import MAX_PARAM_VALUE, job_params, join_key

    assert join_key("verdict", "aubc_test_acc", "train.lr 0.01", "power_bald(beta=4)", "gain") == (
        "verdict/aubc_test_acc/train.lr 0.01/power_bald_beta_4_/gain")
    assert join_key("verdict", "a/b", "..", "") == "verdict/a_b/_.._/__"  # no path part MLflow would resolve
    assert len(join_key("x" * 300)) == 250
    params = job_params({"model._target_": "my.models:Net", "x": None, "flag": True, "lambda": 0,
                         "long": "y" * 7000, "a=b": 1}, {"lambda": 0.0, "model": "mlp"})
    assert params == {"model._target_": "my.models:Net", "x": "null", "flag": "true", "lambda": "0",
                      "long": "y" * MAX_PARAM_VALUE, "a_b": "1", "model": "mlp"}


def test_a_resumed_run_keeps_its_params_and_gets_the_missing_ones(tmp_path):
    """MLflow refuses a changed param: a re-opened job run logs only the keys it lacks (here a data folder
    that moved between attempts keeps its first value, and a key the first attempt did not have is added)."""
    from alrun.track.mlflow_logger import MlflowJobRun, MlflowTracker

    tracker = MlflowTracker(f"sqlite:///{tmp_path / 'mlflow.db'}")
    job, sweep = tmp_path / "sweep" / "job", tmp_path / "sweep"
    job.mkdir(parents=True)
    tracker.start_sweep(sweep, "resume")
    known = json.loads((sweep / "mlflow_sweep.json").read_text())
    for config in ({"seed": 0, "data_dir": "/first"}, {"seed": 0, "data_dir": "/second", "train.lr": 0.01}):
        (job / "job.json").write_text(json.dumps({"config": config}))
        run = MlflowJobRun.open(tracker, job, known, {"heuristic": "bald"}, "job", {})
        run.finish([])
    params = tracker.client.get_run(run.run_id).data.params
    assert params == {"seed": "0", "data_dir": "/first", "train.lr": "0.01", "heuristic": "bald"}


def test_a_stuck_logger_never_holds_training(tmp_path):
    """A logger that never reads (a store that hangs), with no timeout to fall back on (WAIT_TIMEOUT an hour): the
    job finishes and warns once, the final wait ended by the stall rule (else run_faulted's deadline fails it).
    Its wall time against an untracked job is measured outside the tests (the report of issue 22)."""
    proc = run_faulted(["logger-stuck"], ["scale=smoke", "heuristic=bald", "seed=0", "tracker=mlflow",
                                          f"hydra.sweep.dir={tmp_path / 'stuck'}"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "stuck" / JOB_BALD / "done").exists() and "Results in" in proc.stdout
    log = proc.stdout + proc.stderr
    warnings = [line for line in log.splitlines() if "alrun: warning:" in line]
    assert len(warnings) == 1 and "the MLflow logger is behind" in warnings[0], log


class FakeClock:
    """Seconds that move only when the test moves them."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def started(tracking, logger: str, clock: FakeClock):
    """A WorkerTracker on the logger script `logger`, one job's run opened and three rows sent, once the writer
    thread has put them all in the pipe (a polling deadline, not a measurement)."""
    import sys

    tracking.WORKER_COMMAND = [sys.executable, "-c", logger]
    tracker = tracking.WorkerTracker("sqlite:////nowhere/mlflow.db", clock=clock)
    run = tracker.job_run(Path("/nowhere/job"), Path("/nowhere"), None, {}, "job")
    for step in range(3):
        run.on_step({"step": step, "labelled": step}, 3)
    for _ in range(600):
        if not tracker._queue and tracker._written:
            break
        time.sleep(0.05)
    assert not tracker._queue and tracker._written
    return tracker, run


def test_the_final_wait_stops_at_once_for_a_logger_that_reads_nothing(monkeypatch, caplog):
    """The stall rule, with an injected clock: a logger that has read nothing since it started, for
    START_TIMEOUT, is stuck, and the job's final wait gives up before waiting at all (WAIT_TIMEOUT an hour: no
    fallback), warns once and stops sending; before START_TIMEOUT it is not stuck."""
    import alrun.track.tracker as tracking
    from tests.faults import STUCK_LOGGER

    monkeypatch.setattr(tracking, "WAIT_TIMEOUT", 3600.0)
    clock = FakeClock()
    tracker, run = started(tracking, STUCK_LOGGER, clock)
    assert tracker.stall_limit() == tracking.START_TIMEOUT  # it has read nothing at all
    clock.now += tracking.START_TIMEOUT - 1
    assert tracker.stalled_for() == tracking.START_TIMEOUT - 1  # bytes wait in its pipe, none read
    assert tracking.wait_step(0.0, tracker.stalled_for(), 3600.0, tracker.stall_limit(), 0.5) == 0.5
    clock.now += 2
    waits = []
    monkeypatch.setattr(tracking, "select", type("Select", (), {
        "PIPE_BUF": tracking.select.PIPE_BUF, "select": staticmethod(lambda *a: waits.append(a[3]) or ([], [], []))}))
    with caplog.at_level("INFO", logger="alrun"):
        run.finish()
    assert waits == []  # stuck when the wait began: not one select
    assert tracker.lost
    warnings = [r.getMessage() for r in caplog.records if "alrun: warning:" in r.getMessage()]
    assert len(warnings) == 1 and f"it has read nothing sent to it for {tracking.START_TIMEOUT + 1:.0f} s" \
        in warnings[0], warnings
    tracker.proc.kill()
    tracker.proc.wait()


# reads every line it is sent and never answers (a logger busy on its last call): nothing waits in its pipe
READING_LOGGER = """
import sys
for line in sys.stdin:
    pass
"""


def test_a_logger_that_reads_its_input_is_not_stuck(monkeypatch):
    """However long the (injected) clock runs, a logger that has read all it was sent is not stalled: a wait gets
    the whole WAIT_TIMEOUT (the next step is a poll, not 0); having read, it counts as stuck only once rows were
    dropped, after STALL_TIMEOUT without reading."""
    import alrun.track.tracker as tracking

    clock = FakeClock()
    tracker, _ = started(tracking, READING_LOGGER, clock)
    for _ in range(600):
        if tracking.pipe_unread(tracker.proc.stdin.fileno()) == 0:
            break
        time.sleep(0.05)
    clock.now += 10 * tracking.STALL_TIMEOUT
    assert tracker.stalled_for() == 0
    assert tracker.stall_limit() == math.inf  # it has read, and nothing was dropped: never stuck
    tracker.dropped[1] = 3
    assert tracker.stall_limit() == tracking.STALL_TIMEOUT  # far behind: stuck after STALL_TIMEOUT without reading
    assert tracking.wait_step(0.0, tracker.stalled_for(), 30.0, tracking.STALL_TIMEOUT, 0.5) == 0.5
    tracker.proc.stdin.close()
    tracker.proc.wait()


@pytest.mark.parametrize(("elapsed", "stalled", "step"), [
    (0.0, 0.0, 0.5),  # a fresh wait on a reading logger: one poll
    (29.8, 0.0, pytest.approx(0.2)),  # never past WAIT_TIMEOUT
    (30.0, 0.0, 0.0),  # WAIT_TIMEOUT reached: give up
    (0.0, 9.9, pytest.approx(0.1)),  # never past STALL_TIMEOUT of stall
    (0.0, 10.0, 0.0),  # stuck when the wait begins: no wait at all
    (5.0, 12.0, 0.0),
])
def test_the_wait_step_follows_both_limits(elapsed, stalled, step):
    from alrun.track.tracker import wait_step

    assert wait_step(elapsed, stalled, timeout=30.0, stall=10.0, poll=0.5) == step


def test_a_full_queue_drops_step_rows_without_waiting(monkeypatch, caplog, test_deadline):
    """The queue's bound, function-level: a logger that never reads, rows far beyond what its pipe holds;
    every call returns at once, one warning for the job, and the job's end tells the logger how many."""
    import sys

    import alrun.track.tracker as tracking
    from tests.faults import STUCK_LOGGER

    monkeypatch.setattr(tracking, "WORKER_COMMAND", [sys.executable, "-c", STUCK_LOGGER])
    monkeypatch.setattr(tracking, "QUEUE_SIZE", 5)
    monkeypatch.setattr(tracking, "WAIT_TIMEOUT", 0.5)
    tracker = tracking.WorkerTracker("sqlite:////nowhere/mlflow.db")
    run = tracker.job_run(Path("/nowhere/job"), Path("/nowhere"), None, {}, "job")
    with caplog.at_level("WARNING", logger="alrun"):
        # a blocking write would hang here on the never-read pipe (the deadline fixture fails it): rows dropped
        for step in range(200):
            run.on_step({"step": step, "labelled": step, "blob": "x" * 20000}, 200)
        sent = []
        real_send = tracker._send
        monkeypatch.setattr(tracker, "_send", lambda message: sent.append(message) or real_send(message))
        run.finish()
    assert tracker.dropped[run.key] >= 200 - 5 - 10 and sent[0]["dropped"] == tracker.dropped[run.key]
    warnings = [r.getMessage() for r in caplog.records if "alrun: warning:" in r.getMessage()]
    assert len(warnings) == 1 and "the MLflow logger is behind" in warnings[0], warnings
    assert tracker.lost  # the wait gave up: this process sends no more
    tracker.proc.kill()
    tracker.proc.wait()


def test_a_flaky_store_gets_each_param_and_metric_once(tmp_path):
    """Every second MLflow client call fails (half of them after the write reached the store), 20 times: each
    call is retried alone, so the run holds each param once and each metric once per step, and nothing warns."""
    sweep = tmp_path / "sweep"
    proc = run_faulted(["tracker-flaky:20"], ["scale=smoke", "heuristic=bald", "seed=0", "tracker=mlflow",
                                               f"hydra.sweep.dir={sweep}"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in (proc.stdout + proc.stderr).lower(), proc.stdout + proc.stderr
    client, known = store_of(sweep)
    assert len(client.search_runs([known["experiment_id"]])) == 2
    [run] = child_runs(client, known).values()
    assert run.info.status == "FINISHED" and client.get_run(known["run_id"]).info.status == "FINISHED"
    job = json.loads((sweep / JOB_BALD / "job.json").read_text())
    assert run.data.params == job_params(job["config"], job["settings"])
    assert_histories_equal_steps(client, run, pd.read_csv(sweep / JOB_BALD / "steps.csv"))


def test_a_store_failing_call_after_call_ends_the_runs_failed_with_the_reason(tmp_path, monkeypatch, caplog):
    """Writes that keep failing (each retried): after MAX_FAILED_CALLS calls in a row the logger gives up, warns
    once, and ends the runs it holds (the job's and the sweep's) FAILED with the reason; a lone failure does not."""
    import alrun.track.mlflow_logger as logger
    import alrun.track.mlflow_retry

    monkeypatch.setattr(alrun.track.mlflow_retry, "BACKOFF_S", 0.001)
    tracker = logger.MlflowTracker(f"sqlite:///{tmp_path / 'mlflow.db'}")
    sweep = tmp_path / "sweep"
    (sweep / "job").mkdir(parents=True)
    tracker.start_sweep(sweep, "flaky")
    run = tracker.job_run(sweep / "job", sweep, "flaky", {"heuristic": "bald"}, "job")
    tries = Counter()

    def down(*a, **k):
        tries["log_batch"] += 1
        raise ConnectionError("injected: the server is gone")

    monkeypatch.setattr(tracker.raw, "log_batch", down)
    row = {"step": 0, "labelled": 20, "test_nll": 1.0}
    with caplog.at_level("WARNING", logger="alrun"):
        run.on_step(row, 0)
        assert not tracker.broken and tries["log_batch"] == 1 + logger.CALL_RETRIES
        for step in (1, 2):
            run.on_step({**row, "step": step, "labelled": 20 + step}, 0)
    assert tracker.broken
    [warning] = [r.getMessage() for r in caplog.records]
    assert "stopped while logging step 0" in warning and "the server is gone" in warning
    client, known = store_of(sweep)
    for run_id in (run.run_id, known["run_id"]):
        got = client.get_run(run_id)
        assert got.info.status == "FAILED"
        assert got.data.tags["tracking_error"].startswith("the MLflow logger gave up while logging step 0")
    run.close()


def test_transient_errors_are_told_from_refusals():
    from mlflow.exceptions import MlflowException

    from alrun.track.mlflow_logger import transient

    assert transient(ConnectionError("reset")) and transient(TimeoutError())
    assert transient(MlflowException("(sqlite3.OperationalError) database is locked"))
    assert transient(MlflowException("API request to endpoint /api/2.0/mlflow/runs/log-batch failed with error code "
                                     "503 != 200. Response body: 'Service Unavailable'"))
    assert not transient(MlflowException("Changing param values is not allowed", error_code="INVALID_PARAMETER_VALUE"))
    assert not transient(ValueError("bad value"))


FAKE_MOUNTS = """\
/dev/sda1 / ext4 rw,relatime 0 0
server:/export/scratch /scratch nfs4 rw,vers=4.2 0 0
tmpfs /scratch/local tmpfs rw 0 0
//nas/share /mnt/team\\040share cifs rw 0 0
lustre@o2ib:/fs /lustre lustre rw 0 0
"""


def test_a_network_filesystem_is_found_in_the_mounts_table():
    from alrun.track.tracker import network_mount

    assert network_mount(Path("/scratch/me/results"), FAKE_MOUNTS) == ("/scratch", "nfs4")
    assert network_mount(Path("/scratch"), FAKE_MOUNTS) == ("/scratch", "nfs4")
    assert network_mount(Path("/scratch/local/results"), FAKE_MOUNTS) is None  # a local mount on top
    assert network_mount(Path("/scratchy/results"), FAKE_MOUNTS) is None
    assert network_mount(Path("/mnt/team share/results"), FAKE_MOUNTS) == ("/mnt/team share", "cifs")
    assert network_mount(Path("/lustre/project"), FAKE_MOUNTS) == ("/lustre", "lustre")
    assert network_mount(Path("/home/me"), FAKE_MOUNTS) is None


def test_a_sqlite_store_on_a_network_filesystem_warns_once_naming_tracker_uri(tmp_path, monkeypatch, caplog):
    import alrun.track.store_check as tracking

    uri = f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}"
    monkeypatch.setattr(tracking, "network_mount", lambda path, mounts=None: None)
    with caplog.at_level("WARNING", logger="alrun"):
        tracking.check_store(uri)
    assert not caplog.records  # a local disk: nothing
    monkeypatch.setattr(tracking, "network_mount", lambda path, mounts=None: ("/scratch", "nfs4"))
    with caplog.at_level("WARNING", logger="alrun"):
        tracking.check_store(uri)
    [warning] = [r.getMessage() for r in caplog.records]
    assert warning.startswith(f"alrun: warning: tracker.uri={uri} is a sqlite file on a network filesystem (nfs4 ")
    assert "set tracker.uri to an MLflow server" in warning


def test_the_sweep_run_names_alruns_own_commit_in_a_checkout():
    """A source checkout's alrun tags its runs with the checkout's HEAD (an installed wheel: none)."""
    from alrun.track.mlflow_store import _git_commit

    root = Path(__file__).resolve().parents[1]
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0 or not (root / ".git").exists():
        pytest.skip("not a git checkout")
    assert _git_commit() == head.stdout.strip()
