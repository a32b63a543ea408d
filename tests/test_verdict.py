"""Rows keyed on every setting a sweep varies, statistics that cannot overclaim, and the verdict, on job
folders written by hand (as alrun writes them: steps.csv and a job.json holding the flat config) and on one
real sweep."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alrun.core.errors import AlrunError
from alrun.report import write_report
from tests.conftest import run_alrun

BASE = {"seed": 0, "query_size": 10, "initial_labelled": 10, "initial_balanced": False, "max_labelled": 30,
        "pool_fraction": 1.0, "mc_samples": 4, "epochs": 5, "lambda": 0.0, "delta": 0, "train.lr": 0.001,
        "train.schedule": "fixed", "model.name": "auto", "model.dropout": 0.5, "dataset.name": "digits",
        "heuristic.name": "bald", "study": "baseline", "device": "auto", "report.sizes": None,
        "data_dir": "data", "grid.seeds": "0,1"}


def write_job(sweep: Path, heuristic: str, seed: int, acc: list[float], nll: list[float] | None = None,
              labelled: list[int] | None = None, folder: str | None = None, **config) -> Path:
    """One finished job as alrun writes it; `config` overrides BASE's flat keys (e.g. **{"train.lr": 0.01})."""
    flat = {**BASE, **config, "seed": seed, "heuristic.name": heuristic}
    name = folder or ",".join([*(f"{k}={v}" for k, v in sorted(config.items())), f"heuristic={heuristic}",
                               f"seed={seed}"])
    job = sweep / name
    job.mkdir(parents=True)
    labelled = labelled or [10 + 10 * i for i in range(len(acc))]
    nll = nll or [1.0 - a for a in acc]
    pd.DataFrame({"step": range(len(acc)), "labelled": labelled, "test_nll": nll, "test_acc": acc,
                  "test_f1_macro": acc, **{f"f1_{c}": acc for c in "abcd"},
                  "time_train": 1.0, "time_infer": 0.1, "time_acquire": 0.0}).to_csv(job / "steps.csv", index=False)
    settings = {"heuristic": heuristic, "seed": seed, "lambda": flat["lambda"], "delta": flat["delta"],
                "query_size": flat["query_size"], "pool_fraction": flat["pool_fraction"], "epochs": flat["epochs"],
                "dataset": "digits", "model": "mlp", "mc_samples": flat["mc_samples"]}
    (job / "job.json").write_text(json.dumps({"settings": settings, "config": flat, "overrides": {},
                                              "study": "baseline", "report_sizes": None}))
    (job / "done").write_text("")
    return job


def rows(report, metric: str = "test_acc", labelled: int = 30) -> pd.DataFrame:
    table = report.table
    return table[(table["metric"] == metric) & (table["labelled"] == labelled)]


@pytest.mark.parametrize("key, values", [("initial_balanced", (True, False)), ("train.lr", (0.001, 0.01)),
                                         ("model.dropout", (0.25, 0.5))])
def test_a_swept_setting_gives_one_row_per_value(tmp_path, key, values):
    for value in values:
        for heuristic in ("bald", "random"):
            for seed in (0, 1):
                write_job(tmp_path, heuristic, seed, [0.5, 0.6 + 0.01 * seed, 0.7], **{key: value})
    report = write_report(tmp_path)
    assert report.group_columns == [key, "heuristic"]
    final = rows(report)
    assert len(final) == 4 and set(final["n"]) == {2}
    table = pd.read_csv(tmp_path / "table.csv")
    assert key in table.columns and key in pd.read_csv(tmp_path / "summary.csv").columns
    # paired within each value: two comparisons of 2 seeds, never one of 4
    paired = report.table[report.table["metric"] == "paired_aubc_test_acc"]
    assert len(paired) == 2 and set(paired["n"]) == {2}
    assert f"| {key} | heuristic |" in report.markdown


def test_a_heuristics_own_settings_are_in_its_label(tmp_path):
    for beta in (1.0, 4.0):
        for seed in (0, 1):
            write_job(tmp_path, "power_bald", seed, [0.5, 0.6, 0.7 + beta / 100], **{"heuristic.beta": beta})
    for seed in (0, 1):
        write_job(tmp_path, "random", seed, [0.5, 0.55, 0.6])
    report = write_report(tmp_path)
    assert report.group_columns == ["heuristic"]
    final = rows(report).set_index("heuristic")
    assert set(final.index) == {"power_bald(beta=1)", "power_bald(beta=4)", "random"}
    assert set(final["n"]) == {2}
    assert final.loc["power_bald(beta=4)", "mean"] == pytest.approx(0.74)
    assert any(line.startswith("power_bald(beta=4): ") for line in report.verdict_lines)


def test_two_jobs_with_the_same_settings_and_seed_stop_the_report(tmp_path):
    write_job(tmp_path, "bald", 0, [0.5, 0.6, 0.7], folder="first/heuristic=bald,seed=0")
    write_job(tmp_path, "bald", 0, [0.5, 0.6, 0.8], folder="second/heuristic=bald,seed=0")
    with pytest.raises(AlrunError, match="first/heuristic=bald,seed=0 and second/heuristic=bald,seed=0"):
        write_report(tmp_path)


def test_a_setting_random_lacks_is_said(tmp_path):
    for lr in (0.001, 0.01):
        for seed in (0, 1):
            write_job(tmp_path, "bald", seed, [0.5, 0.6, 0.7], **{"train.lr": lr})
    for seed in (0, 1):
        write_job(tmp_path, "random", seed, [0.5, 0.55, 0.6], **{"train.lr": 0.001})
    report = write_report(tmp_path)
    assert "No random run at train.lr=0.01: its heuristics have no paired comparison." in report.notes
    assert "train.lr=0.01: no random run at these settings, so bald cannot be compared with it" \
        in " ".join(report.verdict_lines)
    paired = report.table[report.table["metric"] == "paired_aubc_test_acc"]
    assert paired["train.lr"].tolist() == [0.001]


def test_a_difference_of_one_test_item_on_every_seed_is_not_testable(tmp_path):
    """Each seed: bald is one test item (of 150) ahead at 20 and 30 labels: std 0, no interval, no p."""
    for seed in (0, 1):
        base = 0.5 + 0.1 * seed
        write_job(tmp_path, "random", seed, [base, base + 0.1, base + 0.2])
        write_job(tmp_path, "bald", seed, [base, base + 0.1 + 1 / 150, base + 0.2 + 1 / 150])
        write_job(tmp_path, "entropy", seed, [base, base + 0.1, base + 0.2])
    report = write_report(tmp_path)
    cell = rows(report, "paired_test_acc").set_index("heuristic").loc["bald"]
    assert cell["mean"] == pytest.approx(1 / 150) and math.isnan(cell["p_value"]) and math.isnan(cell["ci_low"])
    assert "+0.007 not testable (2)" in report.markdown
    penalty = report.table[report.table["metric"] == "penalty_test_acc"].set_index(["heuristic", "versus"])
    assert penalty["mean"].sum() == 0  # never a win
    assert any(line.startswith("bald: not testable.") for line in report.verdict_lines)


def decided_sweep(sweep: Path, seeds: int = 10) -> None:
    """bald ahead of random by about 0.04 AUBC accuracy with a small spread; entropy ahead by about 0.01, noisy."""
    rng = np.random.default_rng(0)
    for seed in range(seeds):
        start = 0.3
        random = [start, 0.5, 0.6, 0.7]
        write_job(sweep, "random", seed, random)
        write_job(sweep, "bald", seed, [start] + [a + 0.05 + rng.normal(0, 0.005) for a in random[1:]])
        write_job(sweep, "entropy", seed, [start] + [a + 0.02 + rng.normal(0, 0.03) for a in random[1:]])


def test_verdict_decided_and_no_decision_with_one_seed_count_for_the_sweep(tmp_path):
    decided_sweep(tmp_path, seeds=6)
    report = write_report(tmp_path)
    bald = next(line for line in report.verdict_lines if line.startswith("bald:"))
    # the decision, then the number it rests on, then the rest named descriptive
    assert bald.startswith("bald: better than random. AUBC accuracy +0.04")
    assert "over 6 seeds (anytime-valid, Holm over 2 comparisons: 95% family-wise). Descriptive: AUBC NLL" in bald
    entropy = next(line for line in report.verdict_lines if line.startswith("entropy:"))
    assert entropy.startswith("entropy: no decision. AUBC accuracy +0.01")
    assert "fewer" not in entropy  # no saving phrased as a result beside "no decision"
    rows = report.verdict.set_index(["heuristic", "metric"])
    assert rows.loc[("bald", "aubc_test_acc"), "decision"] == "better"
    assert rows.loc[("bald", "aubc_test_acc"), "role"] == "primary"
    assert rows.loc[("entropy", "labels_saved"), "role"] == "descriptive"
    # Holm's step-down: bald at 0.05 / 2, entropy at 0.05 once bald is rejected; each interval at its level
    assert rows.loc[("bald", "aubc_test_acc"), "level"] == pytest.approx(0.025)
    assert rows.loc[("entropy", "aubc_test_acc"), "level"] == pytest.approx(0.05)
    assert rows.loc[("bald", "aubc_test_acc"), "ci_low"] > 0
    # one seed count for the sweep, the last line, for the rule the verdict uses
    from alrun.report import decision as dc
    from alrun.report import seed_hint as sh

    curves = report.summary.pivot_table(index=["heuristic", "seed"], columns="labelled", values="test_acc")
    aubc = pd.Series(dc.aubc(curves.columns.to_numpy(), curves.to_numpy()), index=curves.index)
    d = (aubc["entropy"] - aubc["random"]).to_numpy()
    # entropy is tested at 0.05 / (2 - 1) once bald is decided
    needed = int(sh.seeds_to_decide(d.mean(), d.std(ddof=1), 6, 0.05, 0.01))
    last = report.verdict_lines[-1]
    assert last.startswith(f"To decide entropy: {needed} seeds in all should do it")
    assert f"'until=decided max_seeds={needed}'" in last  # a summary without its sweep: the words to add
    assert sum("seeds in all" in line for line in report.verdict_lines) == 1
    # first in table.md, last in the terminal
    assert report.markdown.index("## Verdict") < report.markdown.index("## test NLL")
    assert report.verdict_lines[0] in report.markdown


def test_labels_saved_against_a_hand_computation(tmp_path):
    """Labels to accuracy 0.7, interpolated, each side on its own curve of the same seed."""
    # seed 0: random reaches 0.7 between 30 (0.6) and 40 (0.8): 35; bald between 20 (0.6) and 30 (0.8): 25
    # seed 1: random between 30 (0.65) and 40 (0.75): 35; bald between 20 (0.5) and 30 (0.9): 25
    # seed 2: random between 20 (0.6) and 30 (0.8): 25; bald between 20 (0.68) and 30 (0.78): 22
    write_job(tmp_path, "random", 0, [0.3, 0.5, 0.6, 0.8])
    write_job(tmp_path, "random", 1, [0.3, 0.5, 0.65, 0.75])
    write_job(tmp_path, "random", 2, [0.3, 0.6, 0.8, 0.82])
    write_job(tmp_path, "bald", 0, [0.3, 0.6, 0.8, 0.85])
    write_job(tmp_path, "bald", 1, [0.3, 0.5, 0.9, 0.92])
    write_job(tmp_path, "bald", 2, [0.3, 0.68, 0.78, 0.8])
    report = write_report(tmp_path, target_accuracy=0.7)
    saved = report.verdict.set_index(["heuristic", "metric"]).loc[("bald", "labels_saved")]
    assert saved["mean"] == pytest.approx((10 + 10 + 3) / 3) and saved["target"] == pytest.approx(0.7)
    bald = next(line for line in report.verdict_lines if line.startswith("bald:"))
    assert "labels to accuracy 0.700 (paired by seed): bald 24, random 32, saved +8" in bald
    # a seed that never reaches it counts at the budget, and says so
    write_job(tmp_path, "entropy", 0, [0.3, 0.4, 0.5, 0.6])
    write_job(tmp_path, "entropy", 1, [0.3, 0.6, 0.7, 0.72])
    write_job(tmp_path, "entropy", 2, [0.3, 0.6, 0.8, 0.82])
    report = write_report(tmp_path, target_accuracy=0.7)
    entropy = next(line for line in report.verdict_lines if line.startswith("entropy:"))
    assert "not reached within 40 labels by entropy on 1 of 3 seeds (counted at the budget)" in entropy
    # a target already reached at the start saves nothing, and says so rather than "with 10 labels"
    report = write_report(tmp_path, target_accuracy=0.3)
    bald = next(line for line in report.verdict_lines if line.startswith("bald:"))
    assert "reached at the start (10 labels) on every seed, nothing to save" in bald


def test_chance_level_is_said_instead_of_a_verdict(tmp_path):
    # four classes: chance is 0.25
    for seed in (0, 1, 2):
        write_job(tmp_path, "random", seed, [0.25, 0.26, 0.25 + seed / 100], nll=[1.39, 1.38, 1.38])
        write_job(tmp_path, "bald", seed, [0.25, 0.27, 0.26], nll=[1.39, 1.37, 1.38])
    report = write_report(tmp_path)
    assert len(report.verdict_lines) == 1
    line = report.verdict_lines[0]
    assert line.startswith("all heuristics are at chance level (accuracy 0.2") and "for 4 classes" in line
    assert "this comparison says nothing" in line
    assert set(report.verdict["decision"]) == {"chance level"}


def test_an_overconfident_model_above_chance_accuracy_is_not_called_chance_level():
    from alrun.report.verdict import chance_reason

    assert chance_reason(0.35, 2.54, 10) is None  # NLL above log(10) = 2.30, accuracy 3.5 x chance
    assert chance_reason(0.18, 2.54, 10).startswith("accuracy 0.18 for 10 classes")
    assert chance_reason(float("nan"), 2.25, 10).startswith("NLL 2.25, near log(10)")  # no accuracy: the NLL


def test_sizes_follow_the_budget_and_dropped_sizes_are_said(tmp_path):
    for heuristic in ("bald", "random"):
        write_job(tmp_path, heuristic, 0, [0.3, 0.4, 0.5, 0.6, 0.7])  # 10 .. 50 labels
    report = write_report(tmp_path, sizes=[10, 20, 100])
    assert report.sizes == [10, 20, 50]
    assert "Sizes 100 of report.sizes were left out: no job reached them" in report.notes[0]
    assert write_report(tmp_path).sizes == [10, 20, 40, 50]  # thirds of the way from 10 to 50, and 50


def test_a_real_sweep_over_an_unplanned_setting(tmp_path):
    """`initial_balanced=true,false` through the CLI: one row per value with n = seeds, paired within it."""
    sweep = tmp_path / "sweep"
    run_alrun(["scale=smoke", "heuristic=bald,random", "seed=0,1", "initial_balanced=true,false",
               "max_labelled=30", f"hydra.sweep.dir={sweep}"], tmp_path)
    table = pd.read_csv(sweep / "table.csv")
    final = table[(table["metric"] == "test_acc") & (table["labelled"] == 30)]
    assert len(final) == 4 and set(final["n"]) == {2} and set(final["initial_balanced"]) == {True, False}
    paired = table[table["metric"] == "paired_aubc_test_acc"]
    assert len(paired) == 2 and set(paired["n"]) == {2}
    assert (sweep / "table.md").read_text().splitlines()[2] == "## Verdict"


def test_a_sweep_without_random_says_so_once(tmp_path):
    for fraction in (1.0, 0.25):
        for seed in (0, 1):
            write_job(tmp_path, "bald", seed, [0.5, 0.6, 0.7], pool_fraction=fraction)
    report = write_report(tmp_path)
    assert report.verdict_lines == ["No random run in this sweep, so bald cannot be compared with it: the tables "
                                    "compare the settings (add heuristic=random for a verdict)."]
    assert report.verdict.empty


def _with_classes(job: Path, dataset: str, classes: list[str]) -> None:
    """Make a written job one of `dataset` with its own per-class F1 columns (and no recorded class count, as
    older jobs: the count is read from the columns the job fills)."""
    steps = pd.read_csv(job / "steps.csv")
    steps = steps.drop(columns=[c for c in steps.columns if c.startswith("f1_")])
    for name in classes:
        steps[f"f1_{name}"] = steps["test_acc"]
    steps.to_csv(job / "steps.csv", index=False)
    meta = json.loads((job / "job.json").read_text())
    meta["settings"]["dataset"] = dataset
    meta["config"]["dataset.name"] = dataset
    (job / "job.json").write_text(json.dumps(meta))


def test_a_two_data_set_sweep_keeps_chance_level_per_data_set(tmp_path):
    """MNIST and Fashion-MNIST, 10 classes each under different names (20 f1 columns in the summary): a data set
    at accuracy 0.15 is at chance for its own 10 classes, not judged against 1/20."""
    for seed in range(3):
        for heuristic in ("bald", "random"):
            job = write_job(tmp_path, heuristic, seed, [0.12, 0.14, 0.15], folder=f"mnist/{heuristic},{seed}")
            _with_classes(job, "mnist", [str(c) for c in range(10)])
            job = write_job(tmp_path, heuristic, seed, [0.5, 0.7, 0.8 + 0.01 * seed],
                            folder=f"fashion/{heuristic},{seed}")
            _with_classes(job, "fashion_mnist", ["shirt", "boot", "bag", "coat", "dress", "pullover", "sandal",
                                                 "sneaker", "trouser", "tshirt"])
    report = write_report(tmp_path)
    lines = " ".join(report.verdict_lines)
    assert "dataset=mnist: all heuristics are at chance level (accuracy 0.15 for 10 classes, chance 0.10" in lines
    assert "dataset=fashion_mnist: bald: " in lines and "fashion_mnist: all heuristics" not in lines
    # recorded in job.json, the job's own count wins over its columns
    from alrun.report.verdict import job_classes

    summary = report.summary.assign(n_classes=np.where(report.summary["dataset"] == "mnist", 4, 10))
    assert set(job_classes(summary)[summary[summary["dataset"] == "mnist"]["job"].unique()]) == {4}


def test_the_declared_primary_endpoint_comes_first(tmp_path):
    decided_sweep(tmp_path, seeds=6)
    report = write_report(tmp_path, primary="aubc_nll")
    bald = next(line for line in report.verdict_lines if line.startswith("bald:"))
    assert bald.startswith("bald: better than random. AUBC NLL +0.04") and "Descriptive: AUBC accuracy" in bald
    assert "decided on AUBC NLL (report.primary)" in report.markdown
    report = write_report(tmp_path, primary="labels_to_target", target_accuracy=0.65)
    bald = next(line for line in report.verdict_lines if line.startswith("bald:"))
    assert bald.startswith("bald: better than random. labels saved to the target +")
    with pytest.raises(AlrunError, match="report.primary=auc is not allowed"):
        write_report(tmp_path, primary="auc")


def test_as_good_as_random_is_an_answer(tmp_path):
    """A heuristic within a hair of random on every seed: 'no better than random within +-0.01'."""
    rng = np.random.default_rng(5)
    for seed in range(8):
        random = [0.3, 0.5 + rng.normal(0, 0.03), 0.6 + rng.normal(0, 0.03), 0.7]
        write_job(tmp_path, "random", seed, random)
        write_job(tmp_path, "entropy", seed, [random[0]] + [a + rng.normal(0, 0.001) for a in random[1:]])
    report = write_report(tmp_path)
    entropy = next(line for line in report.verdict_lines if line.startswith("entropy:"))
    assert entropy.startswith("entropy: no better than random within +-0.01 AUBC accuracy. AUBC accuracy ")
    assert not any(line.startswith("To decide") for line in report.verdict_lines)
    report = write_report(tmp_path, equivalence_margin=0)  # 0: no equivalence verdicts
    assert next(line for line in report.verdict_lines if line.startswith("entropy:")).startswith(
        "entropy: no decision.")


def test_the_seeds_command_pasted_adds_seeds_to_the_same_study(tmp_path):
    """The verdict's last line names the sweep's own overrides (its multirun.yaml), until=decided and the
    same folder; pasted, it runs the same study there in rounds: the old
    seeds kept, the new ones beside them."""
    import shlex

    from alrun.report.resume import seeds_command, until_command
    from alrun.report.verdict import Verdict
    from alrun.report.write import seeds_line

    sweep = tmp_path / "sweep"
    run_alrun(["scale=smoke", "dataset=digits", "heuristic=bald,random", "seed=0,1", "max_labelled=30",
               f"hydra.sweep.dir={sweep}"], tmp_path)
    command = seeds_command(sweep, 3)
    words = shlex.split(command)
    assert words[0] == "alrun" and words[-2:] == ["seed=range(0,3)", f"hydra.sweep.dir={sweep}"]
    assert words[1:-2] == ["scale=smoke", "dataset=digits", "heuristic=bald,random", "max_labelled=30"]
    # the verdict's line offers until=decided: the sweep's seeds the first round, more until decided or at N
    until = until_command(sweep, 3)
    line = seeds_line(sweep, Verdict([], pd.DataFrame(), 3, ["bald"]))
    assert f"run `{until}`" in line
    until_words = shlex.split(until)
    assert until_words[1:] == ["scale=smoke", "dataset=digits", "heuristic=bald,random", "seed=0,1",
                               "max_labelled=30", "until=decided", "max_seeds=3", f"hydra.sweep.dir={sweep}"]
    before = {p.parent.name: (p.parent / "steps.csv").read_text() for p in sweep.glob("*/done")}
    run_alrun(until_words[1:], tmp_path)
    after = {p.parent.name: p.parent for p in sweep.glob("*/done")}
    assert sorted(after) == sorted(f"heuristic={h},seed={s}" for h in ("bald", "random") for s in range(3))
    assert all((after[name] / "steps.csv").read_text() == text for name, text in before.items())  # kept as they were
    configs = {name: json.loads((folder / "job.json").read_text())["config"] for name, folder in after.items()}
    shared = {k: v for k, v in configs["heuristic=bald,seed=0"].items() if k not in ("seed", "heuristic.name")}
    assert all({k: c[k] for k in shared} == shared for c in configs.values())
    assert json.loads((after["heuristic=bald,seed=2"] / "job.json").read_text())["n_classes"] == 10


def _sweep_folder(folder: Path, task: list[str]) -> Path:
    """A sweep folder's multirun.yaml as Hydra writes it (only the part alrun reads)."""
    folder.mkdir(parents=True)
    lines = ["hydra:", "  overrides:", "    hydra:", f"    - hydra.sweep.dir={folder}", "    task:",
             *(f"    - {o}" for o in task)]
    (folder / "multirun.yaml").write_text("\n".join(lines) + "\n")
    return folder


def test_a_command_that_drops_the_folders_dataset_is_refused_in_one_sentence(tmp_path):
    sweep = _sweep_folder(tmp_path / "npz_sweep", ["dataset=npz", "dataset.path=data/x.npz", "seed=0,1"])
    proc = run_alrun(["seed=range(0,4)", f"hydra.sweep.dir={sweep}"], tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    [error] = [line for line in proc.stderr.splitlines() if line.startswith("alrun: error:")]
    assert "drops dataset=npz" in error
    assert "run `alrun dataset=npz dataset.path=data/x.npz 'seed=range(0,4)' hydra.sweep.dir=" in error
    assert not list(sweep.rglob("job.json"))


def test_adding_seeds_or_sweeping_an_unfixed_setting_still_extends_the_folder(tmp_path):
    from alrun.launch.study_folder import study_change
    from alrun.report.resume import seeds_command

    sweep = _sweep_folder(tmp_path / "s", ["scale=smoke", "heuristic=bald,random", "seed=0,1"])
    folder = f"hydra.sweep.dir={sweep}"
    assert study_change(["scale=smoke", "seed=range(0,6)", folder]) is None
    assert study_change(["scale=smoke", "heuristic=bald,random,entropy", "lambda=0,0.1", folder]) is None
    assert study_change(shlex_split(seeds_command(sweep, 5))[1:]) is None  # the verdict's own line
    assert "changes scale=smoke to scale=laptop" in study_change(["scale=laptop", folder])
    assert study_change(["dataset=mnist"]) is None  # a new folder of its own


def shlex_split(text: str) -> list[str]:
    import shlex

    return shlex.split(text)
