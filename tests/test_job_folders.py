"""Job folders named by the settings that vary across the sweep (alrun/launch/job_folders.py): a long command
fits, a too-long name is hashed the same way every time, and folders of older sweeps are resumed."""

from __future__ import annotations

import json

from alrun.launch.job_folders import MAX_NAME_BYTES, job_name, shortened, varying_keys
from alrun.loop.checkpoint import read_checkpoint, save_checkpoint
from tests.conftest import LAUNCHERS, THREADS, run_alrun

# the MNIST setup on digits, shrunk to seconds, with more constant settings: named the old way
# (every override) its job folders would pass 255 bytes
CONSTANT = ["dataset=digits", "model=mlp", "initial_labelled=20", "initial_balanced=true", "query_size=10",
            "max_labelled=40", "pool_fraction=0.5", "train.schedule=early_stopping", "train.validation_size=30",
            "train.patience=3", "train.min_updates=20", "report.sizes=[20,30,40]", "report.target_accuracy=0.5",
            "train.lr=0.001", "train.weight_decay=0.0", "train.batch_size=32", "mc_samples=3", "epochs=5",
            "train.momentum=0.9", "model.dropout=0.5"]


def folders(sweep):
    """The job folders of SWEEP (those holding a job.json)."""
    return sorted(p.parent.name for p in sweep.glob("*/job.json"))


def test_varying_keys_come_from_the_command_line_and_the_config():
    params = {"heuristic": "bald,entropy,random", "seed": "0,1,2"}
    assert varying_keys(["scale=smoke"], params) == {"heuristic", "seed"}
    # the command line wins over hydra.sweeper.params, as in Hydra's basic sweeper
    assert varying_keys(["heuristic=bald", "seed=0", "train.lr=0.1,0.2"], params) == {"train.lr"}
    assert varying_keys(["+experiment=noise", "seed=range(3)", "lambda=0.1,0.1"], None) == {"seed"}


def test_a_name_holds_the_varying_keys_heuristic_and_seed_in_hydras_order():
    job = ["scale=smoke", "train.lr=0.1", "seed=1", "heuristic=bald", "epochs=5", "+experiment=noise",
           "dataset.root=/data/x"]
    assert job_name(job, {"train.lr", "dataset.root"}, ["scale", "experiment", "dataset.root"]) == \
        "heuristic=bald,seed=1,train.lr=0.1"


def test_a_long_name_is_shortened_with_a_stable_hash():
    name = "heuristic=bald,seed=0,study=" + "é" * 200
    short = shortened(name)
    assert len(short.encode()) <= MAX_NAME_BYTES and short == shortened(name)
    assert short.startswith("heuristic=bald,seed=0,study=é") and short != shortened(name + "x")


def test_the_long_command_runs_with_folders_named_by_what_varies(tmp_path):
    sweep = tmp_path / "sweep"
    old_name = ",".join(sorted(CONSTANT + ["heuristic=random", "seed=1"]))
    assert len(old_name.encode()) > 255  # what Hydra's override_dirname would have named a folder
    run_alrun([*CONSTANT, "heuristic=bald,random", "seed=0,1", *LAUNCHERS["joblib"], f"hydra.sweep.dir={sweep}"],
              tmp_path, env=THREADS)
    assert folders(sweep) == [f"heuristic={h},seed={s}" for h in ("bald", "random") for s in (0, 1)]
    assert (sweep / "table.md").is_file() and (sweep / "summary.csv").is_file()
    meta = json.loads((sweep / "heuristic=random,seed=1" / "job.json").read_text())
    assert meta["config"]["train.patience"] == 3 and meta["overrides"]["train.patience"] == "3"  # constants


def test_a_varying_setting_names_the_folders_under_submitit(tmp_path):
    sweep = tmp_path / "sweep"
    run_alrun(["scale=smoke", "heuristic=bald", "seed=0", "epochs=2", "train.lr=0.001,0.01",
               *LAUNCHERS["submitit_local"], f"hydra.sweep.dir={sweep}"], tmp_path, env=THREADS)
    assert folders(sweep) == ["heuristic=bald,seed=0,train.lr=0.001", "heuristic=bald,seed=0,train.lr=0.01"]


def test_a_too_long_name_is_hashed_and_found_again(tmp_path):
    sweep = tmp_path / "sweep"
    # two experiments whose one varying value is long: caps on the training set of 150 digits (both above its size)
    studies = ["1" + "0" * 149, "2" + "0" * 149]
    args = ["scale=smoke", "heuristic=bald", "seed=0", "max_labelled=30", f"dataset.max_train={','.join(studies)}",
            f"hydra.sweep.dir={sweep}"]
    run_alrun(args, tmp_path, env=THREADS)
    names = folders(sweep)
    assert len(names) == 2 and all(len(n.encode()) <= MAX_NAME_BYTES for n in names)
    assert all(n.startswith("dataset.max_train=") and n[-13] == "-" for n in names)
    for name in names:  # the whole settings are in job.json
        assert json.loads((sweep / name / "job.json").read_text())["overrides"]["dataset.max_train"] in studies
    again = run_alrun(args, tmp_path, env=THREADS)
    assert folders(sweep) == names and again.stdout.count("resuming") + again.stderr.count("resuming") == 2


def test_a_folder_named_the_old_way_is_resumed(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["scale=smoke", "heuristic=bald", "seed=0", "epochs=2", "max_labelled=30", f"hydra.sweep.dir={sweep}"]
    run_alrun([*args, "hydra.sweep.subdir=${hydra.job.override_dirname}"], tmp_path, env=THREADS)
    old = "epochs=2,heuristic=bald,max_labelled=30,seed=0"
    assert folders(sweep) == [old]
    steps = (sweep / old / "steps.csv").read_text()
    proc = run_alrun(args, tmp_path, env=THREADS)
    assert folders(sweep) == [old] and f"resuming {sweep / old} after" in proc.stdout + proc.stderr
    assert (sweep / old / "steps.csv").read_text() == steps
    # a folder of the same job under any other name (a sweep whose varying keys differed) is found by job.json
    (sweep / old).rename(sweep / "renamed")
    proc = run_alrun(args, tmp_path, env=THREADS)
    assert folders(sweep) == ["renamed"] and f"resuming {sweep / 'renamed'} after" in proc.stdout + proc.stderr


def test_a_sweep_extended_by_a_setting_its_jobs_lack_gets_folders_of_its_own(tmp_path):
    # the same heuristics and seed again with a heuristic setting swept beside them on the command line
    # (Hydra alone stops at the default heuristic, which lacks the key): new folders, the finished jobs
    # untouched, and the report tells the two settings apart
    sweep = tmp_path / "sweep"
    base = ["scale=smoke", "seed=0", "max_labelled=30", f"hydra.sweep.dir={sweep}"]
    run_alrun([*base, "heuristic=typiclust,random"], tmp_path, env=THREADS)
    before = {p.relative_to(sweep): p.read_bytes() for p in sweep.glob("heuristic=typiclust,seed=0/*") if p.is_file()}
    run_alrun([*base, "heuristic=typiclust,coreset", "heuristic.embedding=input"], tmp_path, env=THREADS)
    # a name no earlier job holds stays as short as ever; a taken one gains the setting that differs
    assert folders(sweep) == ["heuristic.embedding=input,heuristic=typiclust,seed=0", "heuristic=coreset,seed=0",
                              "heuristic=random,seed=0", "heuristic=typiclust,seed=0"]
    assert {p: (sweep / p).read_bytes() for p in before} == before
    new = json.loads((sweep / "heuristic.embedding=input,heuristic=typiclust,seed=0" / "job.json").read_text())
    assert new["overrides"]["heuristic.embedding"] == "input"
    table = (sweep / "table.md").read_text()
    assert "typiclust(embedding=input)" in table and "typiclust(embedding=head)" in table


def test_a_folder_holding_another_config_is_refused_before_anything_is_written(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["scale=smoke", "heuristic=bald", "seed=0", "max_labelled=30", f"hydra.sweep.dir={sweep}"]
    run_alrun(args, tmp_path, env=THREADS)
    job = sweep / "heuristic=bald,seed=0"
    state = read_checkpoint(job / "checkpoint.json")
    save_checkpoint(job / "checkpoint.json", {**state, "fingerprint": "0" * 16})  # other code defaults, say
    (job / "done").unlink()  # an unfinished job of that other config: this one would resume it
    files = {p.name: p.read_bytes() for p in job.iterdir() if p.is_file()}
    proc = run_alrun(args, tmp_path, check=False, env=THREADS)
    assert proc.returncode == 2 and "holds a job with a different config" in proc.stderr
    assert {p.name: p.read_bytes() for p in job.iterdir() if p.is_file()} == files


def test_a_sweep_extended_in_reverse_gets_a_folder_of_its_own(tmp_path):
    """A setting only the earlier job set (`train.lr=0.01`, then the same command without it): the new job is named
    by its own value of it and runs; the earlier job's files stay as they were; the same command again resumes it."""
    sweep = tmp_path / "sweep"
    base = ["scale=smoke", "heuristic=random", "seed=0", "max_labelled=30", f"hydra.sweep.dir={sweep}"]
    run_alrun([*base, "train.lr=0.01"], tmp_path, env=THREADS)
    old = sweep / "heuristic=random,seed=0"
    before = {p.name: p.read_bytes() for p in old.iterdir() if p.is_file()}
    run_alrun(base, tmp_path, env=THREADS)
    assert folders(sweep) == ["heuristic=random,seed=0", "heuristic=random,seed=0,train.lr=0.001"]
    assert (sweep / "heuristic=random,seed=0,train.lr=0.001" / "done").exists()
    assert {p.name: p.read_bytes() for p in old.iterdir() if p.is_file()} == before
    again = run_alrun(base, tmp_path, env=THREADS)
    assert len(folders(sweep)) == 2 and "resuming" in again.stdout + again.stderr


def test_a_refused_job_under_submitit_writes_nothing_into_the_other_configs_folder(tmp_path):
    """A finished job of another config (its checkpoint's fingerprint, as other code defaults would give) in the
    folder a submitit job resolves to: the sweep says so in one sentence and exits 2; that folder is untouched
    and holds no `failed` marker, so the report does not list the finished job as failed."""
    sweep = tmp_path / "sweep"
    args = ["scale=smoke", "heuristic=bald", "seed=0", "max_labelled=30", f"hydra.sweep.dir={sweep}"]
    run_alrun(args, tmp_path, env=THREADS)
    job = sweep / "heuristic=bald,seed=0"
    state = read_checkpoint(job / "checkpoint.json")
    save_checkpoint(job / "checkpoint.json", {**state, "fingerprint": "0" * 16})
    # alrun's files; cli.log is Hydra's and submitit's job log, which they open in the folder before alrun runs
    files = {p.name: p.read_bytes() for p in job.iterdir() if p.is_file() and p.name != "cli.log"}
    proc = run_alrun([*args, *LAUNCHERS["submitit_local"]], tmp_path, check=False, env=THREADS)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"alrun: error: The folder {job} holds a job with a different config" in proc.stderr
    assert {p.name: p.read_bytes() for p in job.iterdir() if p.is_file() and p.name != "cli.log"} == files
    from alrun.report import failed_jobs

    assert not (job / "failed").exists() and failed_jobs(sweep) == []
