"""`alrun ... until=decided max_seeds=N seeds_per_round=K`: its arguments, its stop rule, and a real run in rounds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alrun.launch import until
from alrun.launch.until import Plan, UntilError, run_rounds, seed_override, split
from alrun.report.resume import sweep_overrides
from tests.conftest import run_alrun


def test_no_until_leaves_the_command_alone():
    argv = ["scale=smoke", "seed=0,1"]
    assert split(argv) == (None, argv)


def test_until_is_stripped_and_the_rounds_grow_by_seeds_per_round():
    plan, rest = split(["scale=smoke", "until=decided", "max_seeds=7", "seeds_per_round=2", "heuristic=bald"])
    assert rest == ["scale=smoke", "heuristic=bald"]
    assert plan == Plan(7, 2, (0, 1))
    assert plan.rounds() == [(0, 1), (0, 1, 2, 3), (0, 1, 2, 3, 4, 5), (0, 1, 2, 3, 4, 5, 6)]
    assert seed_override((0, 1, 2)) == "seed=range(0,3)"


def test_defaults_and_the_launchers_width():
    plan, _ = split(["until=decided"])
    assert (plan.max_seeds, plan.per_round) == (30, 2)
    plan, rest = split(["until=decided", "hydra/launcher=joblib", "hydra.launcher.n_jobs=4"])
    assert plan.per_round == 4 and plan.first == (0, 1, 2, 3)
    assert rest == ["hydra/launcher=joblib", "hydra.launcher.n_jobs=4"]


def test_seeds_given_are_the_first_round():
    plan, rest = split(["until=decided", "max_seeds=6", "seed=range(3,6)"])
    assert rest == [] and plan.first == (3, 4, 5)
    assert plan.rounds() == [(3, 4, 5), (3, 4, 5, 0, 1), (3, 4, 5, 0, 1, 2)]
    assert seed_override((3, 4, 5, 0, 1)) == "seed=3,4,5,0,1"


@pytest.mark.parametrize("argv, words", [
    (["until=decided", "max_seeds=2"], "max_seeds=2"),
    (["until=decided", "seeds_per_round=0"], "seeds_per_round=0"),
    (["until=forever"], "until=forever"),
    (["until=decided", "max_seeds=many"], "max_seeds=many"),
    (["max_seeds=10"], "go with until=decided"),
])
def test_bad_values_are_one_sentence(argv, words, capsys):
    with pytest.raises(UntilError, match=words):
        split(argv)
    assert until.main(argv, "unused") == 2
    err = capsys.readouterr().err
    assert err.startswith("alrun: error: ") and err.count("\n") == 1


def test_the_stop_rule_stops_once_every_comparison_is_decided(tmp_path):
    ran, said = [], []
    verdicts = iter([(1, 2), (2, 2), (2, 2)])  # decided after round 2
    code = run_rounds(Plan(10, 2, (0, 1)), ["scale=smoke"], str(tmp_path), run=lambda cmd: ran.append(cmd) or 0,
                      read=lambda folder: next(verdicts), say=said.append)
    assert code == 0 and len(ran) == 2
    assert ran[1][-2:] == ["seed=range(0,4)", f"hydra.sweep.dir={tmp_path}"]
    assert said[:2] == ["round 1: 2 seeds, 1 of 2 comparisons decided", "round 2: 4 seeds, 2 of 2 comparisons decided"]
    assert "decided after 2 rounds" in said[2]
    assert json.loads((tmp_path / "until.json").read_text())["round"] == 2


def test_an_interrupted_round_stops_the_rounds(tmp_path):
    ran, said = [], []
    code = run_rounds(Plan(10, 2, (0, 1)), [], str(tmp_path), run=lambda cmd: ran.append(cmd) or 130,
                      read=lambda folder: (0, 1), say=said.append)
    assert code == 130 and len(ran) == 1 and "the same command resumes" in said[0]


def test_rounds_on_digits_stop_at_max_seeds_and_resume(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["scale=smoke", "heuristic=bald,random", "until=decided", "max_seeds=4", "seeds_per_round=2",
            f"hydra.sweep.dir={sweep}"]
    proc = run_alrun(args, tmp_path)
    out = proc.stdout
    assert "round 1: 2 seeds, 0 of 1 comparisons decided" in out, out
    assert "round 2: 4 seeds, 0 of 1 comparisons decided" in out, out
    assert "stopped at max_seeds=4 after 2 rounds with 1 of 1 comparisons undecided" in out
    done = sorted(p.parent.name for p in sweep.glob("*/done"))
    assert done == [f"heuristic={h},seed={s}" for h in ("bald", "random") for s in range(4)]
    assert "read after round 2 (4 seeds of at most 4)" in (sweep / "table.md").read_text()
    stamps = {p: p.stat().st_mtime_ns for p in sweep.glob("*/steps.csv")}
    again = run_alrun(args, tmp_path).stdout
    assert "round 2: 4 seeds" in again
    assert {p: p.stat().st_mtime_ns for p in sweep.glob("*/steps.csv")} == stamps  # no job ran again
    task, _ = sweep_overrides(sweep)  # the study's own command: a pasted resume line runs the same study
    assert not [o for o in task if o.split("=")[0] in ("until", "max_seeds", "seeds_per_round")], task


def test_the_folder_until_chooses_reads_the_users_config_dir(tmp_path):
    """With no hydra.sweep.dir, the folder is the one Hydra would choose, read with the user's --config-dir too:
    an experiment there that names its study lands in results/<that study>/<time>, not results/baseline/."""
    from alrun.cli import config_dir

    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "mine.yaml").write_text("# @package _global_\nstudy: my_study\n")
    argv = ["--config-dir", str(tmp_path), "+experiment=mine", "scale=smoke"]
    folder, named = until.sweep_folder(argv, config_dir())
    assert not named and folder.split("/")[-2] == "my_study"
    assert until.compose_overrides(["-cd", "conf", "hydra.searchpath=[pkg://x.conf]", "seed=1"]) == [
        "seed=1", f"hydra.searchpath=[pkg://x.conf,file://{(Path('conf')).resolve()}]"]
    assert until.sweep_folder([*argv, "hydra.sweep.dir=out"], config_dir()) == ("out", True)
