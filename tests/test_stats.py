"""AUBC, labels to a target accuracy and the paired statistics, against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from alrun.report.stats import (
    aubc,
    holm,
    labels_to_target,
    median_and_range,
    paired_against,
    paired_test,
    penalty_matrix,
    per_job_curves,
    seeds_for_power,
)

# Student's t with 2 degrees of freedom has a closed form: two-sided p of t is 1 - t / sqrt(2 + t^2), and
# its 97.5% quantile is sqrt(2 a^2 / (1 - a^2)) with a = 0.95
T975_DF2 = math.sqrt(2 * 0.95**2 / (1 - 0.95**2))  # 4.3027


def test_aubc_is_the_trapezoid_over_the_budget_range():
    # 10 * (0.5 + 0.7) / 2 + 10 * (0.7 + 0.6) / 2 = 12.5 over a range of 20
    assert aubc(np.array([0, 10, 20]), np.array([0.5, 0.7, 0.6])) == pytest.approx(0.625)
    # order of the steps does not matter; uneven steps weigh by their width: (5 * 1.5 + 15 * 2.5) / 20
    assert aubc(np.array([25, 10, 5]), np.array([3.0, 2.0, 1.0])) == pytest.approx((5 * 1.5 + 15 * 2.5) / 20)
    assert aubc(np.array([100]), np.array([0.4])) == pytest.approx(0.4)  # one step: its value
    assert math.isnan(aubc(np.array([]), np.array([])))


def test_labels_to_target_first_size_that_reaches_it():
    labelled, acc = np.array([10, 20, 30, 40]), np.array([0.5, 0.8, 0.7, 0.9])
    assert labels_to_target(labelled, acc, 0.8) == 20  # reached exactly counts
    assert labels_to_target(labelled, acc, 0.85) == 40
    assert math.isnan(labels_to_target(labelled, acc, 0.95))  # never reached


def test_paired_test_by_hand():
    # differences 0.2, 0.3, 0.1: mean 0.2, std 0.1, t = 0.2 / (0.1 / sqrt 3) = sqrt 12, 2 dof
    result = paired_test(np.array([0.3, 0.5, 0.4]), np.array([0.1, 0.2, 0.3]))
    assert result.n == 3 and result.mean == pytest.approx(0.2) and result.std == pytest.approx(0.1)
    half = T975_DF2 * 0.1 / math.sqrt(3)
    assert (result.ci_low, result.ci_high) == (pytest.approx(0.2 - half), pytest.approx(0.2 + half))
    assert result.p_value == pytest.approx(1 - math.sqrt(12 / 14))  # 0.0742: not significant
    assert not result.significant


def test_paired_test_tie_missing_and_too_few():
    tie = paired_test(np.array([0.5, 0.6, 0.7]), np.array([0.5, 0.6, 0.7]))
    assert (tie.n, tie.mean, tie.ci_low, tie.ci_high, tie.p_value) == (3, 0.0, 0.0, 0.0, 1.0)
    assert not tie.significant
    # a NaN on one side (a seed that side lacks) drops that pair: 2 pairs, differences 1 and 3
    missing = paired_test(np.array([2.0, np.nan, 4.0]), np.array([1.0, 0.0, 1.0]))
    assert missing.n == 2 and missing.mean == pytest.approx(2.0) and missing.std == pytest.approx(math.sqrt(2))
    one = paired_test(np.array([2.0]), np.array([1.0]))
    assert one.n == 1 and one.mean == 1.0 and math.isnan(one.p_value) and not one.significant


def jobs(rows):
    return pd.DataFrame(rows, columns=["lambda", "heuristic", "seed", "value"])


def test_paired_against_random_pairs_by_seed_and_signs_the_gain():
    frame = jobs([
        (0, "random", 0, 0.9), (0, "random", 1, 1.0), (0, "random", 2, 1.1),
        (0, "bald", 0, 0.7), (0, "bald", 1, 0.7), (0, "bald", 2, 1.0),  # seed-wise gains 0.2, 0.3, 0.1
        (0, "entropy", 0, 0.8), (0, "entropy", 2, 1.0),  # seed 1 missing: gains 0.1, 0.1
        (0.1, "random", 0, 1.0), (0.1, "bald", 0, 1.0),  # one seed, a tie
    ])
    out = paired_against(frame, "value", by=["lambda"], higher_is_better=False).set_index(["lambda", "heuristic"])
    bald = out.loc[(0, "bald")]
    assert (bald["n"], bald["versus"]) == (3, "random")
    assert bald["mean"] == pytest.approx(0.2)  # NLL(random) - NLL(bald): positive, BALD better
    assert bald["p_value"] == pytest.approx(1 - math.sqrt(12 / 14))
    assert bald["ci_high"] == pytest.approx(0.2 + T975_DF2 * 0.1 / math.sqrt(3))
    entropy = out.loc[(0, "entropy")]
    # a constant difference over the 2 paired seeds: zero spread, nothing to test it against (scipy: p = 0)
    assert entropy["n"] == 2 and entropy["mean"] == pytest.approx(0.1) and math.isnan(entropy["p_value"])
    assert math.isnan(entropy["ci_low"]) and math.isnan(entropy["ci_high"])
    tie = out.loc[(0.1, "bald")]
    assert tie["n"] == 1 and tie["mean"] == 0.0 and math.isnan(tie["p_value"])
    # accuracy-like values: the sign flips
    up = paired_against(frame, "value", by=["lambda"], higher_is_better=True).set_index(["lambda", "heuristic"])
    assert up.loc[(0, "bald"), "mean"] == pytest.approx(-0.2)
    assert paired_against(frame[frame.heuristic != "random"], "value", by=["lambda"]).empty


def test_penalty_matrix_counts_significant_wins_per_ordered_pair():
    rows = []
    # point A: a > b > c by about 0.1 per step, with a small seed-wise spread (significant)
    # point B: a and b tie exactly, c better than both (significant), 4 seeds
    for seed, eps in enumerate((0.0, 0.01, -0.01, 0.005)):
        rows += [("A", "a", seed, 0.9 + eps), ("A", "b", seed, 0.8 - eps), ("A", "c", seed, 0.7 + 2 * eps)]
        rows += [("B", "a", seed, 0.5), ("B", "b", seed, 0.5), ("B", "c", seed, 0.6 + eps)]
    # point C: c's only seed has no partner: nothing is compared there
    rows += [("C", "a", 0, 0.1), ("C", "c", 1, 0.9)]
    points = pd.DataFrame(rows, columns=["point", "heuristic", "seed", "value"])
    matrix, n_points = penalty_matrix(points)
    assert n_points == 2  # C had no pair to test
    expected = pd.DataFrame([[0, 1, 1], [0, 0, 1], [1, 1, 0]], index=["a", "b", "c"], columns=["a", "b", "c"])
    assert (matrix.to_numpy() == expected.to_numpy()).all()
    # lower is better: every win turns into a loss
    flipped, _ = penalty_matrix(points, higher_is_better=False)
    assert (flipped.to_numpy() == expected.to_numpy().T).all()


def test_per_job_curves_aubc_and_target():
    summary = pd.DataFrame({
        "job": ["j1"] * 3 + ["j2"] * 3, "heuristic": ["bald"] * 3 + ["random"] * 3, "seed": [0] * 6,
        "labelled": [10, 20, 30] * 2, "test_acc": [0.5, 0.7, 0.9, 0.4, 0.5, 0.6],
        "test_nll": [2.0, 1.0, 1.0, 2.0, 2.0, 2.0],
    })
    out = per_job_curves(summary, ["heuristic", "seed"], ("test_acc", "test_nll"), targets=(0.7, 0.9))
    j1, j2 = out.set_index("job").loc["j1"], out.set_index("job").loc["j2"]
    assert j1["aubc_test_acc"] == pytest.approx(0.7) and j1["aubc_test_nll"] == pytest.approx(1.25)
    assert j1["labels_to_target_0.7"] == 20 and math.isnan(j2["labels_to_target_0.7"])
    assert j1["labels_to_target_0.9"] == 30 and math.isnan(j2["labels_to_target_0.9"])
    assert (j1["first_labelled"], j1["last_labelled"]) == (10, 30)


def test_median_and_range_count_a_seed_that_never_reached_as_beyond_the_budget():
    assert median_and_range(np.array([30.0, 10.0, 20.0])) == (20.0, 10.0, 30.0)
    assert median_and_range(np.array([10.0, 20.0])) == (15.0, 10.0, 20.0)
    assert median_and_range(np.array([10.0, np.nan, 20.0])) == (20.0, 10.0, math.inf)
    assert median_and_range(np.array([10.0, np.nan])) == (math.inf, 10.0, math.inf)
    assert median_and_range(np.array([np.nan])) == (math.inf, math.inf, math.inf)


def test_zero_spread_is_not_testable_and_never_a_win():
    """Two seeds that each differ by exactly one test item (1/150): std 0, no interval, no p, no win."""
    a, b = np.array([0.54, 0.61333333]), np.array([0.53333333, 0.60666666])
    result = paired_test(a, b)
    assert result.mean == pytest.approx(1 / 150, abs=1e-6)
    assert not result.testable and not result.significant and math.isnan(result.ci_low)
    points = pd.DataFrame([("A", "x", 0, 0.54), ("A", "x", 1, 0.61), ("A", "y", 0, 0.53), ("A", "y", 1, 0.60)],
                          columns=["point", "heuristic", "seed", "value"])
    matrix, n_points = penalty_matrix(points)
    assert n_points == 0 and matrix.to_numpy().sum() == 0
    # identical sides stay a tested tie
    assert paired_test(a, a).p_value == 1.0


def test_holm_by_hand():
    adjusted = holm(np.array([0.01, 0.04, np.nan, 0.03]))
    assert adjusted[[0, 1, 3]] == pytest.approx([0.03, 0.06, 0.06]) and math.isnan(adjusted[2])
    assert holm(np.array([0.5, 0.9])) == pytest.approx([1.0, 1.0])


def test_seeds_for_power_matches_the_textbook_value():
    # a paired t-test needs 10 pairs to detect an effect of one standard deviation at 80% power (alpha 0.05)
    assert seeds_for_power(1.0, 1.0) == 10
    assert seeds_for_power(0.0, 1.0) is None and seeds_for_power(1e-4, 1.0) is None
