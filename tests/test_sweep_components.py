"""Issue 21, parts 2 and 3, through the real CLI: a user's heuristic in its own config file swept beside
alrun's built-ins (`alrun --config-dir conf heuristic=mymargin,bald,random`), the command-line spellings
that cannot work (one sentence, exit 2, before any job), and a job that fails at some step failing alone.

The user's package (written under a temporary folder, put on PYTHONPATH) holds a margin scorer and `flaky`,
the same scorer raising at the acquisition whose generator is seeded `fail_on`: the test sets that to the
seed alrun derives for seed 1's step 2, so exactly one job of the sweep fails, at its third step.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from alrun.core.seeding import derived_seed
from tests.conftest import LAUNCHERS, REPO, THREADS, run_alrun, steps_without_timings
from tests.user_package import write_user_package

ACQ = '''
import torch


def margin(probs):
    """1 minus the gap between the two most probable classes of the mean predictive: [N, C, T] -> [N]."""
    top2 = probs.mean(dim=2).topk(2, dim=1).values
    return 1.0 - (top2[:, 0] - top2[:, 1])


def flaky(probs, generator, fail_on=-1):
    """margin, but raises at the one acquisition whose generator is seeded `fail_on`."""
    if generator.initial_seed() == fail_on:
        raise ValueError("flaky gave up at this step")
    return margin(probs)
'''

FAIL_SEED, FAIL_STEP = 1, 2
FAILED_JOB = f"heuristic=flaky,seed={FAIL_SEED}"


@pytest.fixture(scope="module")
def user_site(tmp_path_factory) -> Path:
    """A folder holding `sweeppkg` (the scorers above) and `userpkg` (tests/user_package.py)."""
    site = write_user_package(tmp_path_factory.mktemp("site"))
    (site / "sweeppkg").mkdir()
    (site / "sweeppkg" / "__init__.py").write_text("")
    (site / "sweeppkg" / "acq.py").write_text(textwrap.dedent(ACQ))
    return site


def write_conf(folder: Path) -> Path:
    """The user's config folder: conf/heuristic/mymargin.yaml and conf/heuristic/flaky.yaml."""
    (folder / "conf" / "heuristic").mkdir(parents=True, exist_ok=True)
    (folder / "conf" / "heuristic" / "mymargin.yaml").write_text("name: custom\n_target_: sweeppkg.acq.margin\n")
    (folder / "conf" / "heuristic" / "flaky.yaml").write_text(
        f"name: custom\n_target_: sweeppkg.acq.flaky\nfail_on: {derived_seed(FAIL_SEED, f'acquire/{FAIL_STEP}')}\n")
    return folder / "conf"


def env_with(site: Path) -> dict[str, str]:
    return {**THREADS, "PYTHONPATH": os.pathsep.join([str(REPO), str(site)])}


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("alrun: error:")]


# ---------------------------------------------------------------- part 2: yours beside ours, one table


@pytest.fixture(scope="module", params=["basic", "joblib"])
def beside(request, user_site, tmp_path_factory):
    cwd = tmp_path_factory.mktemp(f"beside_{request.param}")
    conf = write_conf(cwd)
    sweep = cwd / "sweep"
    proc = run_alrun(["--config-dir", str(conf), "scale=smoke", "max_labelled=40", "heuristic=mymargin,bald,random",
                      "seed=0,1", *LAUNCHERS.get(request.param, []), f"hydra.sweep.dir={sweep}"], cwd,
                     env=env_with(user_site))
    return request.param, sweep, proc


def test_a_config_file_heuristic_is_swept_beside_the_built_ins_in_one_paired_table(beside):
    launcher, sweep, _ = beside
    jobs = sorted(p.parent.name for p in sweep.glob("*/done"))
    assert jobs == sorted(f"heuristic={h},seed={s}" for h in ("bald", "mymargin", "random") for s in (0, 1))
    meta = json.loads((sweep / "heuristic=mymargin,seed=0" / "job.json").read_text())
    assert meta["settings"]["heuristic"] == "mymargin"  # its config's name, not the function's (`margin`)
    assert meta["components"]["heuristic"]["target"] == "sweeppkg.acq.margin"
    table = pd.read_csv(sweep / "table.csv")
    assert set(table["heuristic"]) == {"mymargin", "bald", "random"}
    paired = table[table["metric"].str.startswith("paired_aubc") & (table["heuristic"] == "mymargin")]
    assert not paired.empty and set(paired["versus"]) == {"random"} and set(paired["n"]) == {2}
    assert set(pd.read_csv(sweep / "summary.csv")["heuristic"]) == {"mymargin", "bald", "random"}


def test_the_config_file_heuristic_gives_the_same_steps_under_both_launchers(beside, tmp_path_factory):
    launcher, sweep, _ = beside
    if launcher != "joblib":
        pytest.skip("compared once, from the joblib run")
    basic = next((Path(p) for p in tmp_path_factory.getbasetemp().glob("beside_basic*/sweep")), None)
    if basic is None:
        pytest.skip("the basic launcher's sweep did not run in this session")
    for job in ("heuristic=mymargin,seed=1", "heuristic=bald,seed=0"):
        pd.testing.assert_frame_equal(steps_without_timings(sweep / job / "steps.csv"),
                                      steps_without_timings(basic / job / "steps.csv"))


def test_a_heuristic_setting_beside_a_heuristic_sweep_reaches_each_job_or_names_the_one_without_it(tmp_path):
    sweep = tmp_path / "sweep"
    base = ["scale=smoke", "seed=0", "max_labelled=30", f"hydra.sweep.dir={sweep}"]
    proc = run_alrun([*base, "heuristic=typiclust,random", "heuristic.embedding=input"], tmp_path, check=False)
    assert proc.returncode == 2
    [line] = error_lines(proc)
    assert "`heuristic.embedding=input` is not allowed: random takes no settings" in line
    first = sweep / "heuristic=typiclust,seed=0"  # the job before it ran with the setting, and stays
    assert json.loads((first / "job.json").read_text())["overrides"]["heuristic.embedding"] == "input"
    assert (first / "done").exists()


@pytest.mark.parametrize("args,words", [
    (["heuristic=custom,bald,random", "heuristic._target_=sweeppkg.acq.margin"],
     "`heuristic._target_=sweeppkg.acq.margin` cannot go beside `heuristic=custom,bald,random`"),
    (["-m", "heuristic=custom,bald", "heuristic._target_=sweeppkg.acq.margin"],
     "`heuristic._target_=sweeppkg.acq.margin` cannot go beside `heuristic=custom,bald`"),
    (["heuristic=bald,random", "++heuristic._target_=sweeppkg.acq.margin"],
     "`heuristic._target_=sweeppkg.acq.margin` is not allowed: it is read only with heuristic=custom "
     "(now heuristic=bald,random)"),
    (["model._target_=userpkg.nets.Net"], "`model._target_=userpkg.nets.Net` is not allowed: it is read only with "
                                          "model=custom"),
    (["model=mlp", "+model._target_=userpkg.nets.Net"], "(now model=mlp)"),
    (["dataset._target_=userpkg.data.synthetic"], "read only with dataset=custom"),
])
def test_spellings_that_cannot_work_stop_before_any_job_with_one_sentence(user_site, tmp_path, args, words):
    sweep = tmp_path / "sweep"
    proc = run_alrun([*args, "scale=smoke", f"hydra.sweep.dir={sweep}"], tmp_path, check=False,
                     env=env_with(user_site))
    assert proc.returncode == 2, proc.stderr
    [line] = error_lines(proc)
    assert words in line and "--config-dir conf" in line and line.endswith(")."), line
    assert "Traceback" not in proc.stderr and "Hydra" not in proc.stderr
    assert not sweep.exists()  # before Hydra made any folder


def test_a_target_for_the_users_own_config_file_is_no_mistake(user_site, tmp_path):
    from alrun.cli import target_spelling_error

    assert target_spelling_error(["--config-dir", "conf", "heuristic=mymargin", "heuristic._target_=a.b"]) is None
    assert target_spelling_error(["heuristic=custom", "heuristic._target_=a.b", "seed=0,1"]) is None
    assert target_spelling_error(["-m", "model=custom", "++model._target_=a.B", "heuristic=bald,random"]) is None


# ---------------------------------------------------------------- part 3: a failing job is one job


@pytest.fixture(scope="module", params=["basic", "joblib"])
def one_fails(request, user_site, tmp_path_factory):
    """4 jobs (flaky, random x seeds 0, 1); flaky raises at seed 1's step 2. The basic run tracks to MLflow."""
    cwd = tmp_path_factory.mktemp(f"one_fails_{request.param}")
    conf = write_conf(cwd)
    sweep = cwd / "sweep"
    tracker = ["tracker=mlflow"] if request.param == "basic" else []
    proc = run_alrun(["--config-dir", str(conf), "scale=smoke", "heuristic=flaky,random", "seed=0,1", *tracker,
                      *LAUNCHERS.get(request.param, []), f"hydra.sweep.dir={sweep}"], cwd, check=False,
                     env=env_with(user_site))
    return request.param, sweep, proc


def test_a_job_whose_heuristic_raises_fails_alone(one_fails):
    _, sweep, proc = one_fails
    assert proc.returncode == 1, proc.stderr
    done = sorted(p.parent.name for p in sweep.glob("*/done"))
    assert done == ["heuristic=flaky,seed=0", "heuristic=random,seed=0", "heuristic=random,seed=1"]
    failed = sweep / FAILED_JOB
    assert (failed / "failed").exists() and not (failed / "done").exists()
    error = (failed / "error.txt").read_text()
    # the user's own traceback, then alrun's sentence as the last line
    assert "Traceback" in error and 'raise ValueError("flaky gave up at this step")' in error
    last = error.strip().splitlines()[-1]
    assert last.startswith("alrun: error: `heuristic._target_=sweeppkg.acq.flaky` raised ValueError (flaky gave up "
                           "at this step)"), last
    # its finished steps are kept: 20 and 30 labelled, then step 2 failed at its acquisition
    assert pd.read_csv(failed / "steps.csv")["labelled"].tolist() == [20, 30]
    for job in done:
        assert pd.read_csv(sweep / job / "steps.csv")["labelled"].tolist() == [20, 30, 40, 50]


def test_the_report_names_the_failed_job_with_its_reason(one_fails):
    _, sweep, proc = one_fails
    assert "1 job(s) failed" in proc.stdout and f"{FAILED_JOB}: alrun: error:" in proc.stdout
    markdown = (sweep / "table.md").read_text()
    assert re.search(re.escape(FAILED_JOB) + r".*raised ValueError \(flaky gave up at this step\)", markdown)
    table = pd.read_csv(sweep / "table.csv")
    nll = table[(table["metric"] == "test_nll") & (table["heuristic"] == "flaky")].set_index("labelled")["n"]
    assert nll.to_dict() == {20: 2, 30: 2, 50: 1}


def test_mlflow_ends_the_failed_child_failed_and_the_parent_finished_naming_it(one_fails):
    launcher, sweep, _ = one_fails
    if launcher != "basic":
        pytest.skip("tracked in the basic launcher's run")
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    known = json.loads((sweep / "mlflow_sweep.json").read_text())
    client = MlflowClient(tracking_uri=known["uri"])
    children = {r.info.run_name: r for r in client.search_runs(
        [known["experiment_id"]], filter_string=f"tags.mlflow.parentRunId = '{known['run_id']}'")}
    assert len(children) == 4
    assert children[FAILED_JOB].info.status == "FAILED"
    assert "raised ValueError (flaky gave up at this step)" in children[FAILED_JOB].data.tags["error"]
    assert {r.info.status for name, r in children.items() if name != FAILED_JOB} == {"FINISHED"}
    parent = client.get_run(known["run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["failed_jobs"] == "1" and parent.data.tags["failed_job_names"] == FAILED_JOB


# ---------------------------------------------------------------- the documentation's commands, as written


def doc_section(page: str, title: str) -> str:
    """The text of docs/`page` from its heading `title` (at any level) on."""
    text = (REPO / "docs" / page).read_text()
    found = re.search(rf"^#+ {re.escape(title)}\n", text, re.M)
    assert found, f"docs/{page} has no heading {title!r}"
    return text[found.start():]


def doc_block(page: str, title: str) -> list[str]:
    """The command lines of the first bash block under the heading `title` of docs/`page` (continuations joined)."""
    section = doc_section(page, title)
    block = section[section.index("```bash\n") + len("```bash\n"):]
    block = block[:block.index("```")]
    return [line for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def test_the_documented_commands_run_as_written(tmp_path):
    lines = doc_block("how-to/own-heuristic.md", "Yours beside ours in one sweep")
    assert any("--config-dir examples/mypkg/conf" in line and "heuristic=mymargin,bald,random" in line
               for line in lines)
    shutil.copytree(REPO / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns("*.egg-info", "build"))
    shims = tmp_path / "bin"  # `alrun` and `python` as installed: this interpreter, alrun from this checkout
    shims.mkdir()
    for name, command in (("alrun", f'exec "{sys.executable}" -m alrun "$@"'),
                          ("python", f'exec "{sys.executable}" "$@"')):
        (shims / name).write_text(f"#!/bin/sh\n{command}\n")
        (shims / name).chmod(0o755)
    env = {**os.environ, **THREADS, "PATH": f"{shims}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(REPO),
           "ALRUN_DATA_DIR": str(tmp_path / "data"), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(["bash", "-e", "-c", "\n".join(lines)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    sweeps = sorted(p.parent for p in (tmp_path / "results").glob("*/*/table.csv"))
    assert len(sweeps) == 2
    names = [set(pd.read_csv(s / "summary.csv")[key]) for s in sweeps for key in ("heuristic", "model", "dataset")]
    assert {"mymargin", "bald", "random"} in names and {"mynet"} in names and {"mydigits"} in names


def test_a_sweep_stopped_by_one_sentence_ends_its_mlflow_run_failed_with_it(user_site, tmp_path):
    """A model that cannot be built stops the whole sweep (exit 2, no report): the parent run does not stay RUNNING."""
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    sweep = tmp_path / "sweep"
    proc = run_alrun(["scale=smoke", "model=custom", "model._target_=userpkg.nets.broken", "heuristic=bald", "seed=0,1",
                      "tracker=mlflow", f"hydra.sweep.dir={sweep}"], tmp_path, check=False, env=env_with(user_site))
    assert proc.returncode == 2, proc.stderr
    [line] = error_lines(proc)
    assert "raised ValueError (width must be even)" in line and "Traceback" not in proc.stderr
    known = json.loads((sweep / "mlflow_sweep.json").read_text())
    parent = MlflowClient(tracking_uri=known["uri"]).get_run(known["run_id"])
    assert parent.info.status == "FAILED" and parent.data.tags["stopped"] == line.removeprefix("alrun: error: ")


def test_a_custom_component_is_named_by_its_config_file_with_the_keys_set_on_the_command_line():
    from alrun.config.components import chosen_name, readable_names
    from alrun.config.schema import run_spec_from_dict

    spec = run_spec_from_dict({"heuristic": {"name": "custom", "_target_": "sweeppkg.acq.flaky", "fail_on": 3},
                               "dataset": {"name": "custom", "_target_": "a.load", "path": "x.npz"}})
    choices = {"heuristic": "flaky", "dataset": "mydata", "model": "auto"}
    assert readable_names(spec, choices) == {"heuristic": "flaky", "dataset": "mydata"}
    assert readable_names(spec, choices, {"heuristic.fail_on"})["heuristic"] == "flaky(fail_on=3)"
    # `heuristic=custom heuristic._target_=...`, or a config file whose `_target_` the command line replaced:
    # the function's short name, as before
    assert readable_names(spec, {"heuristic": "custom"})["heuristic"] == "flaky(fail_on=3)"
    assert readable_names(spec, choices, {"heuristic._target_"})["heuristic"] == "flaky(fail_on=3)"
    assert readable_names(spec)["dataset"] == "load(path=x.npz)"
    assert chosen_name("model", "mlp", {}, {"model": "mlp"}) is None  # a built-in keeps its own name
