"""The verdict's statistics, checked by simulation on sweeps whose truth is known (no training: synthetic
learning curves with the structure of real ones), and by hand on small cases.

Every simulated sweep draws from one seeded numpy Generator; the error rates asserted are the issue's,
with three standard errors of the simulation on top.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats

from alrun.report import decision as dc
from alrun.report import seed_hint as sh

SIZES = np.arange(20, 301, 20, dtype=np.float64)  # 15 labelled sizes, the shared start 20, the budget 300


def mean_curve(x: np.ndarray, speedup: float = 1.0) -> np.ndarray:
    """Expected test accuracy at x labels: 0.40 at the start, a plateau near 0.96 from about 200 labels on
    (as digits' curves have: where a noisy curve crosses a mean final accuracy early, which the issue's
    labels rule mistook for a saving). A heuristic with speedup k is where Random is with 20 + k (x - 20)
    labels: it saves labels, and never starts elsewhere."""
    return 0.96 - 0.56 * np.exp(-speedup * (x - 20) / 45.0)


def sweeps(rng: np.random.Generator, count: int, seeds: int, speedup: float = 1.0, arms: int = 1
           ) -> tuple[np.ndarray, np.ndarray]:
    """Simulated sweeps: Random's curves [count, seeds, K] and `arms` heuristics' [count, arms, seeds, K].

    Per seed a shared component (the seed's initial labels and weights: the same for every heuristic, the
    larger early on) and the start itself are common to all sides; each side has its own per-seed level
    (its luck with what it acquired) and per-step noise. speedup: each heuristic's (float or one per arm).
    """
    k = SIZES.size
    shared = rng.normal(0.0, 0.03, (count, 1, seeds, 1)) * np.exp(-(SIZES - 20) / 150.0)
    start = rng.normal(0.0, 0.01, (count, 1, seeds, 1))
    speedups = np.broadcast_to(np.asarray(speedup, dtype=np.float64), (arms,))

    def side(scale: np.ndarray) -> np.ndarray:
        own = rng.normal(0.0, 0.012, (count, scale.shape[0], seeds, 1))
        noise = rng.normal(0.0, 0.008, (count, scale.shape[0], seeds, k))
        curve = mean_curve(SIZES, scale[:, None, None]) + shared + own + noise
        curve[..., 0] = mean_curve(SIZES[:1])[0] + shared[..., 0] + start[..., 0]
        return np.clip(curve, 0.0, 1.0)

    random = side(np.ones(1))[:, 0]
    return random, side(speedups)


def error_bar(rate: float, count: int) -> float:
    """Three standard errors of a simulated rate near `rate` over `count` sweeps."""
    return 3.0 * math.sqrt(rate * (1 - rate) / count)


# --- the confidence sequence, by hand --------------------------------------------------------------------

def test_the_e_value_is_one_on_one_seed_and_matches_its_formula():
    d = np.array([0.03, 0.01, 0.02, -0.005])
    c2 = dc.PRIOR_PRECISION
    n, s, v = 4, d.sum(), (d**2).sum()
    by_hand = math.sqrt(c2 / (n + c2)) * (v / (v - s * s / (n + c2))) ** (n / 2)
    assert math.exp(dc.log_e_value(d)) == pytest.approx(by_hand)
    assert dc.log_e_value(d[:1]) == 0.0  # one seed says nothing about the scale


def test_the_confidence_sequence_is_the_set_the_e_value_does_not_reject():
    rng = np.random.default_rng(1)
    d = rng.normal(0.02, 0.015, 7)
    n, mean, sd, low, high = dc.confidence_sequence(d, 0.05)
    for edge in (low, high):  # at its ends M_n(mu) = 1 / alpha exactly
        assert math.exp(dc.log_e_value(d, float(edge))) == pytest.approx(20.0, rel=1e-6)
    assert math.exp(dc.log_e_value(d, float(mean))) < 20.0


def test_too_few_seeds_exclude_nothing():
    assert np.isinf(dc.critical_t(2, 0.05)) and np.isinf(dc.critical_t(3, 0.025))
    assert np.isfinite(dc.critical_t(5, 0.05))
    # wider than the fixed-n t-interval (the price of reading it at any time), narrowing with seeds
    t = dc.critical_t(np.arange(5, 31), 0.05)
    assert np.all(t > stats.t.ppf(0.975, np.arange(4, 30))) and np.all(np.diff(t) < 0)


def test_the_verdict_does_not_depend_on_the_order_of_the_seeds():
    rng = np.random.default_rng(2)
    d = rng.normal(0.01, 0.02, 9)
    a = dc.confidence_sequence(d)
    b = dc.confidence_sequence(rng.permutation(d))
    assert np.allclose(a[3:], b[3:])


def test_the_e_value_has_mean_one_under_the_null():
    """E[M_n(0)] = 1 at every n, as a test martingale's must be. M_n depends on the seeds only through their
    t statistic, which is Student's t with n - 1 degrees of freedom under the null: integrated exactly (a
    Monte Carlo mean would be noisy, the e-value's tail being heavy)."""
    from scipy import integrate

    c2 = dc.PRIOR_PRECISION
    for n in (2, 3, 5, 10, 30):

        def closed(t: float, n: int = n) -> float:
            share = n * t * t / ((n + c2) * (n - 1 + t * t))
            return math.sqrt(c2 / (n + c2)) * (1 - share) ** (-n / 2)

        total, _ = integrate.quad(lambda t, n=n: closed(t, n) * stats.t.pdf(t, n - 1), -np.inf, np.inf, limit=200)
        assert total == pytest.approx(1.0, abs=1e-6)
    # and the module's e-value is that function of t
    rng = np.random.default_rng(3)
    d = rng.normal(0.3, 1.0, 8)
    t = d.mean() / (d.std(ddof=1) / math.sqrt(8))
    share = 8 * t * t / ((8 + dc.PRIOR_PRECISION) * (7 + t * t))
    assert dc.log_e_value(d) == pytest.approx(0.5 * math.log(dc.PRIOR_PRECISION / (8 + dc.PRIOR_PRECISION))
                                              - 4 * math.log(1 - share))


def test_holm_steps_down_and_says_the_level_of_each():
    p = np.array([0.01, 0.04, 0.03, 0.005, np.nan])
    adjusted, rejected, level = dc.holm(p, 0.05)
    # sorted 0.005, 0.01, 0.03, 0.04 against 0.05/4, 0.05/3, 0.05/2, 0.05/1: the first two pass, 0.03 fails
    assert rejected.tolist() == [True, False, False, True, False]
    assert level[:4] == pytest.approx([0.05 / 3, 0.025, 0.025, 0.0125])
    assert adjusted[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02]) and math.isnan(adjusted[4])


def test_decisions_better_worse_equivalent_and_not_testable():
    rng = np.random.default_rng(4)
    d = np.stack([rng.normal(0.05, 0.01, 12), rng.normal(-0.05, 0.01, 12), rng.normal(0.0, 0.002, 12),
                  rng.normal(0.0, 0.05, 12), np.full(12, 1 / 150)])
    family = dc.decide(d, margin=0.01)
    assert family.decision.tolist() == ["better", "worse", "equivalent", "no decision", "not testable"]
    assert int(family.size[0]) == 4  # the one with no spread stays outside the family
    assert family.low[0] > 0 and family.high[1] < 0 and -0.01 < family.low[2] < family.high[2] < 0.01


# --- error rates by simulation ---------------------------------------------------------------------------

def old_labels_rule_above_zero(random: np.ndarray, heuristic: np.ndarray) -> np.ndarray:
    """The rule the issue reports (for comparison): the first size where the heuristic's curve reaches
    Random's mean final accuracy, against Random's budget as a constant, paired t 95%; [count] bool."""
    target = random[..., -1].mean(axis=-1, keepdims=True)
    reached = heuristic >= target[..., None]
    first = np.where(reached.any(axis=-1), SIZES[np.argmax(reached, axis=-1)], np.nan)
    d = SIZES[-1] - first
    n = (~np.isnan(d)).sum(axis=-1)
    with warnings.catch_warnings():  # sweeps where no seed reached it: NaN, and no interval either way
        warnings.simplefilter("ignore", RuntimeWarning)
        mean, sd = np.nanmean(d, axis=-1), np.nanstd(d, axis=-1, ddof=1)
    all_reached = n == d.shape[-1]  # the old rule printed an interval only when every seed reached it
    return all_reached & (mean - stats.t.ppf(0.975, n - 1) * sd / np.sqrt(n) > 0)


def test_a_renamed_random_saves_no_labels():
    """A null twin's labels-saved interval lies above zero in at most 5% (+ simulation error) of sweeps of
    5 seeds and 15 sizes, at the level of a lone comparison (the least strict a verdict uses)."""
    rng = np.random.default_rng(10)
    count = 4000
    random, twin = sweeps(rng, count, 5)
    saved = dc.labels_saved(SIZES, random, twin[:, 0], alpha=dc.ALPHA)
    above = saved.estimable & (saved.low > 0)
    rate = above.mean()
    assert rate <= 0.05 + error_bar(0.05, count)
    # the same sweeps through the rule the issue measured: it claims savings far more often
    assert old_labels_rule_above_zero(random, twin[:, 0]).mean() > 0.10
    # and every interval is a saving two curves over these sizes can show
    span = SIZES[-1] - SIZES[0]
    assert np.all(saved.low >= -span) and np.all(saved.high <= span)
    assert np.all((saved.heuristic_needs >= SIZES[0]) & (saved.heuristic_needs <= SIZES[-1]))


def test_a_renamed_random_saves_no_labels_against_a_set_target():
    rng = np.random.default_rng(11)
    count = 4000
    random, twin = sweeps(rng, count, 5)
    saved = dc.labels_saved(SIZES, random, twin[:, 0], target=0.85, alpha=dc.ALPHA)
    assert (saved.estimable & (saved.low > 0)).mean() <= 0.05 + error_bar(0.05, count)


def test_a_real_saving_is_found_and_never_starts_at_the_start():
    rng = np.random.default_rng(12)
    random, better = sweeps(rng, 500, 10, speedup=1.6)
    saved = dc.labels_saved(SIZES, random, better[:, 0])
    assert (saved.estimable & (saved.low > 0)).mean() >= 0.8
    assert np.all(saved.heuristic_needs > SIZES[0])


def test_reading_after_every_added_seed_keeps_the_null_below_five_percent():
    """Seeds 3 to 12 added one at a time and the verdict read after each: a renamed Random is called better
    at some reading in at most 5% of sweeps; the fixed-n paired t-test read the same way is not."""
    rng = np.random.default_rng(20)
    count = 3000
    random, twin = sweeps(rng, count, 12)
    d = dc.aubc(SIZES, twin[:, 0]) - dc.aubc(SIZES, random)  # [count, 12]
    path = dc.decisions_along(d[:, None, :], first=3)[:, 0]  # [count, 10]
    ever_better = (path == "better").any(axis=-1).mean()
    assert ever_better <= 0.05 + error_bar(0.05, count)
    fixed = np.zeros(count, dtype=bool)
    for n in range(3, 13):
        t = stats.ttest_1samp(d[:, :n], 0.0, axis=-1)
        fixed |= (t.pvalue < 0.05) & (t.statistic > 0)
    assert fixed.mean() > 0.05 + error_bar(0.05, count)


def test_a_family_of_null_twins_read_at_every_seed_keeps_the_family_wise_error():
    """Four renamed Randoms (one family, Holm), read after every seed from 3 to 12: any of them called
    better or worse at any reading in at most 5% of sweeps."""
    rng = np.random.default_rng(21)
    count = 2000
    random, twins = sweeps(rng, count, 12, arms=4)
    d = dc.aubc(SIZES, twins) - dc.aubc(SIZES, random)[:, None, :]  # [count, 4, 12]
    path = dc.decisions_along(d, first=3)
    wrong = np.isin(path, ("better", "worse")).any(axis=(-1, -2)).mean()
    assert wrong <= 0.05 + error_bar(0.05, count)


def test_the_hints_seeds_decide_a_true_effect():
    """A sweep of 3 seeds with two heuristics that are truly better (one family of 2): where the verdict is
    undecided it asks for one seed count; the same sweep extended to that many seeds decides both in at
    least 70% of sweeps."""
    rng = np.random.default_rng(30)
    count, most, pilot = 1000, 60, 3
    random, heuristics = sweeps(rng, count, most, speedup=np.array([1.3, 1.6]), arms=2)
    d = dc.aubc(SIZES, heuristics) - dc.aubc(SIZES, random)[:, None, :]  # [count, 2, most]
    hint = sh.sweep_hint(dc.decide(d[..., :pilot], margin=0.01), margin=0.01, limit=most)
    asked = ~np.isnan(hint.seeds)
    assert asked.mean() > 0.9  # 3 seeds rarely decide: the hint is what the user gets
    # each sweep extended to the seeds its hint asked for (later seeds masked out)
    upto = np.where(asked, hint.seeds, pilot)[:, None, None]
    later = dc.decide(np.where(np.arange(most) < upto, d, np.nan), margin=0.01)
    decided = (later.decision == "better").all(axis=-1)[asked]
    assert decided.mean() >= 0.70
    assert np.median(hint.seeds[asked]) <= 30


def test_seeds_until_decided_stops_early_on_a_real_effect_and_runs_out_on_a_null_twin():
    """until=decided, 2 seeds a round up to max_seeds=30: on a renamed Random it ends at 30 undecided in most
    sweeps (never better in more than 5%); on a real effect it decides, early."""
    rng = np.random.default_rng(40)
    count, most, per_round = 1500, 30, 2
    random, arms = sweeps(rng, count, most, speedup=np.array([1.0, 1.6]), arms=2)
    d = dc.aubc(SIZES, arms) - dc.aubc(SIZES, random)[:, None, :]  # [count, 2, 30]
    rounds = np.arange(per_round, most + 1, per_round)
    # each arm alone is its own sweep (a family of one): its decision after each round
    path = np.stack([dc.decide(d[:, :, :n, ].reshape(count * 2, 1, n), margin=0.01).decision[:, 0]
                     for n in rounds], axis=-1).reshape(count, 2, rounds.size)
    stopped = path != "no decision"
    stop_at = np.where(stopped.any(axis=-1), rounds[np.argmax(stopped, axis=-1)], most)
    final = np.where(stopped.any(axis=-1), np.take_along_axis(path, np.argmax(stopped, axis=-1)[..., None],
                                                              axis=-1)[..., 0], "no decision")
    null_final, real_final = final[:, 0], final[:, 1]
    # a null twin ends undecided at max_seeds in most sweeps, else (correctly) as no better than random within
    # the margin; called better or worse at some round in at most 5%
    assert (null_final == "no decision").mean() >= 0.8
    assert np.isin(null_final, ("better", "worse")).mean() <= 0.05 + error_bar(0.05, count)
    assert (real_final == "better").mean() >= 0.9
    assert np.median(stop_at[:, 1]) <= 12


def test_a_tiny_spread_lets_a_null_twin_end_as_no_better_than_random():
    rng = np.random.default_rng(41)
    d = rng.normal(0.0, 0.004, (500, 1, 30))
    final = dc.decide(d, margin=0.01).decision[:, 0]
    assert (final == "equivalent").mean() > 0.9 and (final == "better").mean() <= 0.05


def test_equivalence_is_rarely_claimed_at_the_margin():
    """A true difference of exactly the margin: called equivalent in at most 5% of sweeps read every seed."""
    rng = np.random.default_rng(42)
    count = 2000
    d = rng.normal(0.01, 0.01, (count, 1, 30))
    path = dc.decisions_along(d, margin=0.01, first=3)[:, 0]
    assert (path == "equivalent").any(axis=-1).mean() <= 0.05 + error_bar(0.05, count)


# --- chance level ----------------------------------------------------------------------------------------

def test_chance_level_uses_each_settings_own_class_count():
    # MNIST and Fashion-MNIST each have 10 classes; the sweep's 20 f1 columns must not halve the bar
    assert dc.setting_classes(np.array([10, 10, np.nan])) == 10
    assert dc.chance_reason(0.15, math.nan, dc.setting_classes(np.array([10, 10]))) is not None
    assert dc.chance_reason(0.15, math.nan, 20) is None  # what the sweep-wide count would have said
    assert dc.chance_reason(0.8, 3.0, 10) is None  # over-confident but far from chance
    assert dc.setting_classes(np.array([np.nan])) is None
