"""The same sweep through Hydra's joblib and submitit_local launchers, for real, at scale=smoke: the
per-job steps.csv (timings aside) and the table equal the basic launcher's (tests/conftest.py's
smoke_reference)."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from tests.conftest import LAUNCHERS, THREADS, run_alrun, steps_without_timings

JOBS = ["heuristic=bald,seed=0", "heuristic=bald,seed=1"]


@pytest.fixture(scope="module", params=sorted(LAUNCHERS))
def launched(request, tmp_path_factory):
    cwd = tmp_path_factory.mktemp(request.param)
    sweep = cwd / "sweep"
    proc = run_alrun(["scale=smoke", "heuristic=bald", "seed=0,1", *LAUNCHERS[request.param],
                      f"hydra.sweep.dir={sweep}"], cwd, env=THREADS)
    return request.param, sweep, proc


def test_the_launcher_ran_the_jobs(launched):
    name, sweep, proc = launched
    log = proc.stdout + proc.stderr
    if name == "joblib":
        assert "Joblib.Parallel(n_jobs=2" in log
    else:
        assert "Submitit 'local' sweep output dir" in log
        assert len([p for p in (sweep / ".submitit").iterdir() if p.name.isdigit()]) == 2
    for job in JOBS:
        assert (sweep / job / "done").exists() and not (sweep / job / "failed").exists()


def test_steps_equal_the_basic_launcher(launched, smoke_reference):
    _, sweep, _ = launched
    for job in JOBS:
        pd.testing.assert_frame_equal(steps_without_timings(sweep / job / "steps.csv"),
                                      steps_without_timings(smoke_reference / job / "steps.csv"))


def test_table_equals_the_basic_launcher(launched, smoke_reference):
    _, sweep, _ = launched
    # written by the report callback on the launching process, after every job finished
    table = pd.read_csv(sweep / "table.csv")
    pd.testing.assert_frame_equal(table, pd.read_csv(smoke_reference / "table.csv"))
    assert (table["n"] == 2).all()
    assert "(2)" in (sweep / "table.md").read_text()


def test_slurm_launcher_config_makes_the_sbatch_script(tmp_path, monkeypatch):
    """`hydra/launcher=slurm` with the documented overrides gives the sbatch options it promises. No cluster
    here: the parameters go through submitit's own SLURM executor (as hydra-submitit-launcher passes them)
    up to the script it would submit; a stand-in `srun` on PATH satisfies its check for a cluster."""
    submitit = pytest.importorskip("submitit", reason="the `cluster` extra is not installed")
    from hydra import compose, initialize_config_dir
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from omegaconf import OmegaConf

    from alrun.cli import config_dir

    (tmp_path / "srun").write_text("#!/bin/sh\nexit 1\n")
    (tmp_path / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    overrides = ["+experiment=noise", "hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                 "hydra.launcher.timeout_min=1440", "hydra.launcher.mem_gb=64"]
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
    assert params.pop("_target_").endswith("SlurmLauncher")
    params.update(name="alrun")
    executor = submitit.AutoExecutor(folder=tmp_path / "submitit", cluster="slurm",
                                     slurm_max_num_timeout=params.pop("max_num_timeout"))
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()
                                  if k != "submitit_folder"})
    script = executor._executor._make_submission_file_text("python -m submitit.core._submit x", "uid")
    for line in ("--partition=gpu", "--gpus-per-node=1", "--time=1440", "--mem=64GB", "--cpus-per-task=8",
                 "--ntasks-per-node=1", "--signal=USR2@120"):
        assert f"#SBATCH {line}\n" in script
    assert executor._executor.max_num_timeout == 3  # a job cut at its time limit is requeued and resumes


def test_slurm_launcher_is_alruns_on_the_plugins():
    """`hydra/launcher=slurm` names alrun's launcher (skips finished jobs, adopts running ones, reports a
    cancelled one), which Hydra finds among its plugins."""
    pytest.importorskip("submitit", reason="the `cluster` extra is not installed")
    from hydra.core.plugins import Plugins
    from omegaconf import OmegaConf

    from alrun.cli import config_dir, under_submitit
    from alrun.launch.launchers import SlurmLauncher as AlrunLauncher

    target = OmegaConf.load(f"{config_dir()}/hydra/launcher/slurm.yaml")["_target_"]
    assert target == "hydra_plugins.alrun_slurm_launcher.slurm_launcher.SlurmLauncher"
    found = Plugins.instance().class_name_to_class[target]
    # on hydra-submitit-launcher's (named, not compared: Hydra's plugin scan may load that module a second time)
    plugin = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert issubclass(found, AlrunLauncher) and plugin in {f"{c.__module__}.{c.__name__}" for c in found.__mro__}
    # its jobs run in processes of their own: a job's fatal sentence goes to its error.txt, not a bare exit
    assert under_submitit(OmegaConf.create({"launcher": {"_target_": target}}))
