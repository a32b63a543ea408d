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
    """bald ahead of random by about 0.05 accuracy with a small spread; entropy level with random, noisy."""
    rng = np.random.default_rng(0)
    for seed in range(seeds):
        start = 0.3
        random = [start, 0.5, 0.6, 0.7]
        write_job(sweep, "random", seed, random)
        write_job(sweep, "bald", seed, [start] + [a + 0.05 + rng.normal(0, 0.005) for a in random[1:]])
        write_job(sweep, "entropy", seed, [start] + [a + rng.normal(0, 0.05) for a in random[1:]])


def test_verdict_decided_and_no_decision_with_a_seed_estimate(tmp_path):
    decided_sweep(tmp_path, seeds=3)
    report = write_report(tmp_path)
    text = "\n".join(report.verdict_lines)
    bald = next(line for line in report.verdict_lines if line.startswith("bald:"))
    assert bald.startswith("bald: better than random. AUBC accuracy +0.0") and "(Holm), 3 seeds" in bald
    entropy = next(line for line in report.verdict_lines if line.startswith("entropy:"))
    assert entropy.startswith("entropy: no decision.") and "seeds would detect a difference this size" in entropy
    # the estimate is the paired t power calculation on the observed spread
    from alrun.report import stats
    acc = report.verdict.set_index(["heuristic", "metric"]).loc[("entropy", "aubc_test_acc")]
    paired = report.table[(report.table["metric"] == "paired_aubc_test_acc")].set_index("heuristic").loc["entropy"]
    assert f"about {stats.seeds_for_power(paired['mean'], paired['std'])} seeds" in entropy
    assert acc["decision"] == "no decision" and report.verdict.set_index(["heuristic", "metric"]).loc[
        ("bald", "aubc_test_acc"), "decision"] == "better"
    # first in table.md, last in the terminal
    assert report.markdown.index("## Verdict") < report.markdown.index("## test NLL")
    assert text.splitlines()[0] in report.markdown


def test_labels_saved_against_a_hand_computation(tmp_path):
    # random ends at 0.70 mean (0.69, 0.71) at 40 labels; bald reaches 0.70 at 30 (seed 0) and 20 (seed 1)
    write_job(tmp_path, "random", 0, [0.3, 0.5, 0.6, 0.69])
    write_job(tmp_path, "random", 1, [0.3, 0.5, 0.6, 0.71])
    write_job(tmp_path, "bald", 0, [0.3, 0.6, 0.7, 0.75])
    write_job(tmp_path, "bald", 1, [0.3, 0.72, 0.74, 0.76])
    report = write_report(tmp_path)
    saved = report.verdict.set_index(["heuristic", "metric"]).loc[("bald", "labels_saved")]
    # needs 30 and 20: mean 25, saved 40 - 25 = 15 labels; t interval with 1 dof: 15 +- tan(0.475 pi) * 5
    half = math.tan(0.475 * math.pi) * 5
    assert saved["mean"] == pytest.approx(15) and saved["ci_low"] == pytest.approx(15 - half)
    bald = next(line for line in report.verdict_lines if line.startswith("bald:"))
    assert "Reaches random's final accuracy (0.700 at 40 labels) with 25 labels" in bald
    assert "38% fewer labels" in bald  # 15 / 40
    # a seed that never reaches it is counted as such
    write_job(tmp_path, "entropy", 0, [0.3, 0.4, 0.5, 0.6])
    write_job(tmp_path, "entropy", 1, [0.3, 0.6, 0.7, 0.72])
    report = write_report(tmp_path)
    entropy = next(line for line in report.verdict_lines if line.startswith("entropy:"))
    assert "on 1 of 2 seeds (not within its budget on seed 0)" in entropy


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
