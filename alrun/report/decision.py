"""The verdict's statistics: one primary comparison per heuristic and setting against Random, decided with
an anytime-valid confidence sequence, Holm over the family of primary comparisons, labels saved paired by
seed against Random's own curve, and the seeds that would decide what is still undecided.

Pure functions over numpy arrays (no pandas, no files): the report builds the arrays, this module answers.
Shapes are written as ``[..., S]`` (S seeds, last axis; leading axes are anything: comparisons, simulated
sweeps) and ``[..., S, K]`` (K labelled sizes). A NaN seed is a seed one side lacks and drops out.

The decision rule
-----------------
Per comparison the per-seed differences d_1..d_n (signed so that positive means the heuristic is better) are
taken as i.i.d. normal with unknown mean and variance. The test of "mean = mu0" is the scale-invariant
Gaussian-mixture t-test martingale of Wang & Ramdas (2023), the proper-prior version of Lai's (1976)
t-confidence sequence: with S_n = sum(d_i - mu0) and V_n = sum((d_i - mu0)^2),

    M_n(mu0) = sqrt(c^2 / (n + c^2)) * (V_n / (V_n - S_n^2 / (n + c^2)))^(n / 2),

the likelihood ratio of the scale-invariant statistic (d_1/|d_1|, ..., d_n/|d_1|) under a N(0, 1/c^2)
prior on the standardised mean (mu - mu0)/sigma against mu = mu0. It is a nonnegative martingale with
M_1 = 1 in the filtration of that statistic, so Ville's inequality gives P(sup_n M_n(mu) >= 1/alpha) <= alpha:
the set {mu : M_n(mu) < 1/alpha} is a (1 - alpha) confidence sequence, valid at every n at once -- after
any number of added seeds, read as often as one likes, stopped when it looks good. Solved for mu it is a
t-interval with a larger critical value:

    mean +- t*(n, alpha) * sd / sqrt(n),
    t*^2 = (1 - q)(n + c^2)(n - 1) / (n - (1 - q)(n + c^2)),   q = (alpha * sqrt(c^2 / (n + c^2)))^(2 / n),

and the whole real line while n <= (1 - q)(n + c^2) (too few seeds to exclude anything). The sequence is a
function of the sums only, so the order in which seeds arrived does not change it.

References: T. L. Lai (1976), "On confidence sequences", Annals of Statistics 4(2); H. Wang and A. Ramdas
(2023), "Anytime-valid t-tests and confidence sequences for Gaussian means with unknown variance",
arXiv:2310.03722 (Sequential Analysis, 2025). Holm (1979), "A simple sequentially rejective multiple test
procedure", Scandinavian Journal of Statistics 6(2).

Holm's step-down over the family's anytime-valid p-values (p = min(1, 1/M_n(0))) keeps the family-wise error
at alpha at every reading at once: the first true null Holm rejects at any time has p <= alpha / m0, and each
of the m0 true nulls' martingales crosses m0 / alpha with probability at most alpha / m0 over all time.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import special, stats

ALPHA = 0.05
# c^2, the prior precision of the standardised effect (mean / sd of the per-seed difference): prior sd
# 1/c = 2, the size of effects active learning curves show. Chosen by the seeds it takes at 80% power:
# within one seed of the best c^2 for standardised effects 1 to 4 at levels 0.05 to 0.0125 (c^2 = 0.05 is
# faster only below 5 seeds, c^2 = 1 only above 30).
PRIOR_PRECISION = 0.25
POWER = 0.8  # the hint's seeds decide a comparison of the observed size with this probability
# the hint plans with this upper confidence bound of the per-seed spread, not the spread seen: the sd of 3
# seeds is below the true one in 63% of sweeps, and a plug-in hint then asks for too few (Browne 1995)
SPREAD_CONFIDENCE = 0.7
MAX_HINT_SEEDS = 100  # the hint never asks for more; a comparison that would need more is said to be out of reach
QUADRATURE = 64  # points over the sample sd's distribution in the hint's power

# decision words
BETTER, WORSE, EQUIVALENT, UNDECIDED, NOT_TESTABLE = "better", "worse", "equivalent", "no decision", "not testable"


@dataclass(frozen=True)
class Endpoint:
    """A primary endpoint: how one job's curve becomes one number, and which way is better."""

    key: str  # report.primary's value
    label: str  # its words in a sentence
    higher_is_better: bool
    margin: float  # the default equivalence margin, in the endpoint's unit (report.equivalence_margin)
    unit_format: str  # how its differences print


ENDPOINTS = {
    "aubc_accuracy": Endpoint("aubc_accuracy", "AUBC accuracy", True, 0.01, "+.3f"),
    "aubc_nll": Endpoint("aubc_nll", "AUBC NLL", False, 0.02, "+.3f"),
    "accuracy_at_budget": Endpoint("accuracy_at_budget", "accuracy at the budget", True, 0.01, "+.3f"),
    # labels random needs minus labels the heuristic needs (positive: the heuristic saves labels)
    "labels_to_target": Endpoint("labels_to_target", "labels saved to the target", True, 10.0, "+.0f"),
}


# --- curves -> one number per job ------------------------------------------------------------------------

def aubc(labelled_k: np.ndarray, values_sk: np.ndarray) -> np.ndarray:
    """Area under each curve, trapezoid over the labelled sizes, divided by the budget range (the curve's
    mean over the budget, in the metric's unit).

    labelled_k: [K] increasing sizes shared by the curves; values_sk: [..., K]. Returns [...]. One size: its
    value.
    """
    x = np.asarray(labelled_k, dtype=np.float64)
    y = np.asarray(values_sk, dtype=np.float64)
    if x.size == 1:
        return y[..., 0]
    area = np.sum((y[..., 1:] + y[..., :-1]) * np.diff(x) / 2.0, axis=-1)
    return area / (x[-1] - x[0])


def labels_to_reach(labelled_k: np.ndarray, accuracy_sk: np.ndarray, target: np.ndarray | float
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Labels each curve needs to reach `target`, interpolated linearly between the two sizes around its
    first crossing, and whether it never reached it within the budget (censored).

    labelled_k: [K] increasing sizes, the first the shared start; accuracy_sk: [..., K]; target: broadcasts
    to [...]. Returns (labels [...], censored [...] bool). A curve already at the target at the start needs
    the start (it cannot need fewer labels than it was given, and on one seed every heuristic starts from
    the same labels, so both sides then need the same); otherwise the crossing lies strictly after the
    start. A censored curve's labels are the budget, labels[-1]: the least it could have needed, and the
    same rule for Random and the heuristic, so a renamed Random gains nothing from it.
    """
    x = np.asarray(labelled_k, dtype=np.float64)
    acc = np.asarray(accuracy_sk, dtype=np.float64)
    target = np.broadcast_to(np.asarray(target, dtype=np.float64), acc.shape[:-1])[..., None]
    reached = acc >= target
    censored = ~reached.any(axis=-1)
    first = np.argmax(reached, axis=-1)  # 0 where never reached: masked below
    before = np.maximum(first - 1, 0)
    a_hi = np.take_along_axis(acc, first[..., None], axis=-1)[..., 0]
    a_lo = np.take_along_axis(acc, before[..., None], axis=-1)[..., 0]
    x_hi, x_lo = x[first], x[before]
    rise = a_hi - a_lo
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(rise > 0, (target[..., 0] - a_lo) / rise, 1.0)
    labels = np.where(first == 0, x[0], x_lo + np.clip(share, 0.0, 1.0) * (x_hi - x_lo))
    labels = np.where(censored, x[-1], labels)
    return labels, censored


def default_target(start_s: np.ndarray, final_random_s: np.ndarray, final_heuristic_s: np.ndarray,
                   share: float = 0.9) -> np.ndarray:
    """The target accuracy when report.target_accuracy is not set: `share` of the way from the mean start
    accuracy to the mean final accuracy of the pair (Random and the heuristic together).

    start_s, final_*_s: [..., S] accuracies at the shared start and at the budget per seed (NaN: a seed one
    side lacks, left out). Returns [...].

    Why this rule: it is a function of each seed's *pair* of curves that does not change when the two are
    swapped on any seed, so for a heuristic that is Random renamed every per-seed saving is as likely
    negative as positive (the savings are sign-symmetric) -- a target from Random's curves alone (its mean
    final accuracy, the old rule) is not, and Random itself reaches its own mean final accuracy on about
    half its seeds only at the budget. 90% of the way keeps the target below what most seeds reach, so few
    are censored.
    """
    pair = np.concatenate([np.asarray(final_random_s, np.float64), np.asarray(final_heuristic_s, np.float64)],
                          axis=-1)
    start = np.nanmean(np.asarray(start_s, np.float64), axis=-1)
    return start + share * (np.nanmean(pair, axis=-1) - start)


# --- the confidence sequence ------------------------------------------------------------------------------

def _moments(d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, mean, sd ddof=1) over the last axis, NaN entries left out; sd NaN below 2 seeds."""
    d = np.asarray(d, dtype=np.float64)
    keep = ~np.isnan(d)
    n = keep.sum(axis=-1)
    total = np.where(keep, d, 0.0).sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = total / n
        dev = np.where(keep, d - mean[..., None], 0.0)
        sd = np.sqrt((dev**2).sum(axis=-1) / (n - 1))
    sd = np.where(n >= 2, sd, np.nan)
    return n, mean, sd


def critical_t(n: np.ndarray | int, alpha: np.ndarray | float, c2: float = PRIOR_PRECISION) -> np.ndarray:
    """t*(n, alpha): the confidence sequence is mean +- t* sd / sqrt(n). inf where n seeds cannot exclude
    any value at this level (and below 2 seeds). n, alpha: broadcast together."""
    n = np.asarray(n, dtype=np.float64)
    alpha = np.asarray(alpha, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_q = (2.0 / n) * (np.log(alpha) + 0.5 * np.log(c2 / (n + c2)))
        one_minus_q = -np.expm1(log_q)
        room = n - one_minus_q * (n + c2)
        t2 = one_minus_q * (n + c2) * (n - 1) / room
    return np.where((room > 0) & (n >= 2), np.sqrt(np.where(room > 0, t2, 0.0)), np.inf)


def log_e_value(d: np.ndarray, mu0: float = 0.0, c2: float = PRIOR_PRECISION) -> np.ndarray:
    """log M_n(mu0) over the last axis of d [..., S] (NaN seeds left out). Returns [...]; 0 (M = 1, no
    evidence) below 2 seeds or when every difference equals mu0."""
    d = np.asarray(d, dtype=np.float64) - mu0
    keep = ~np.isnan(d)
    n = keep.sum(axis=-1).astype(np.float64)
    s = np.where(keep, d, 0.0).sum(axis=-1)
    v = np.where(keep, d * d, 0.0).sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rest = v - s * s / (n + c2)  # > 0 whenever v > 0 (Cauchy-Schwarz: s^2 <= n v < (n + c^2) v)
        log_m = 0.5 * np.log(c2 / (n + c2)) + 0.5 * n * (np.log(v) - np.log(rest))
    return np.where((n >= 2) & (v > 0), log_m, 0.0)


def anytime_p(d: np.ndarray, mu0: float = 0.0, c2: float = PRIOR_PRECISION) -> np.ndarray:
    """The anytime-valid p-value of mean = mu0: min(1, 1 / M_n(mu0)); P(p <= a at any n) <= a under it."""
    return np.minimum(1.0, np.exp(-log_e_value(d, mu0, c2)))


def confidence_sequence(d: np.ndarray, alpha: np.ndarray | float = ALPHA, c2: float = PRIOR_PRECISION
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(n, mean, sd, low, high) of the (1 - alpha) confidence sequence for the mean of d [..., S] at its
    current seeds; alpha broadcasts to [...]. low/high are -inf/+inf where the seeds cannot exclude anything."""
    n, mean, sd = _moments(d)
    t = critical_t(n, alpha, c2)
    # inf * 0 (no interval possible, no spread seen) is still no interval
    with np.errstate(invalid="ignore"):
        radius = np.where(np.isfinite(t) & np.isfinite(sd), t * np.where(np.isfinite(sd), sd, 0.0)
                          / np.sqrt(np.maximum(n, 1)), np.inf)
        return n, mean, sd, mean - radius, mean + radius


# --- the family: Holm, decisions ---------------------------------------------------------------------------

def holm(p: np.ndarray, alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Holm's step-down over the last axis of p [..., m] (NaN: outside the family).

    Returns (adjusted p [..., m], rejected [..., m] bool, level [..., m]): the level each comparison was
    tested at -- alpha / (m - k) at its step k for a rejected one, and for the rest the level of the first
    step that failed, alpha / (m - r) with r rejections (the level the next reading would test them at if
    nothing else changed). NaN level outside the family.
    """
    p = np.asarray(p, dtype=np.float64)
    inside = ~np.isnan(p)
    m = inside.sum(axis=-1, keepdims=True)
    order = np.argsort(np.where(inside, p, np.inf), axis=-1, kind="stable")
    p_sorted = np.take_along_axis(p, order, axis=-1)
    step = np.arange(p.shape[-1])
    step_level = alpha / np.maximum(m - step, 1)
    passes = (p_sorted <= step_level) & (step < m)
    held = np.cumprod(passes, axis=-1).astype(bool)  # step-down: stops at the first failure
    r = held.sum(axis=-1, keepdims=True)
    adjusted_sorted = np.minimum(np.maximum.accumulate(np.where(step < m, (m - step) * p_sorted, 0.0), axis=-1), 1.0)
    level_sorted = np.where(held, step_level, alpha / np.maximum(m - r, 1))
    inverse = np.argsort(order, axis=-1)
    adjusted = np.where(inside, np.take_along_axis(adjusted_sorted, inverse, axis=-1), np.nan)
    rejected = np.take_along_axis(held, inverse, axis=-1) & inside
    level = np.where(inside, np.take_along_axis(level_sorted, inverse, axis=-1), np.nan)
    return adjusted, rejected, level


@dataclass(frozen=True)
class Family:
    """The decisions of one family of primary comparisons, arrays of shape [..., m]."""

    decision: np.ndarray  # str: better, worse, equivalent, no decision, not testable
    n: np.ndarray  # seeds both sides have
    mean: np.ndarray  # mean per-seed difference (positive: the heuristic is better)
    sd: np.ndarray
    low: np.ndarray  # the confidence sequence at `level`
    high: np.ndarray
    level: np.ndarray  # Holm's level for this comparison (NaN: outside the family)
    p: np.ndarray  # anytime-valid p of "no difference"
    p_holm: np.ndarray
    size: np.ndarray  # the family's size m (comparisons that could be tested)


def decide(d: np.ndarray, alpha: float = ALPHA, margin: float | np.ndarray = 0.0, c2: float = PRIOR_PRECISION
           ) -> Family:
    """Decide each primary comparison of a family from its per-seed differences.

    d: [..., m, S] per-seed differences, signed so positive = the heuristic is better (NaN: a missing seed);
    margin: the equivalence margin, broadcast to [..., m] (0: no equivalence verdicts). A comparison is
    better / worse when Holm rejects "no difference" (its confidence sequence at Holm's level excludes 0),
    equivalent when not, and its confidence sequence at that level lies inside (-margin, +margin): both
    one-sided tests of |mean| >= margin reject, anytime-valid like the rest. Fewer than 2 seeds, or a
    non-zero difference with no spread (the same few test items on every seed, where a normal model says
    nothing), is not testable and stays outside the family.
    """
    d = np.asarray(d, dtype=np.float64)
    n, mean, sd = _moments(d)
    flat = (sd <= 1e-9 * np.maximum(1.0, np.abs(mean))) & (np.abs(mean) > 0)
    testable = (n >= 2) & ~flat
    p = np.where(testable, anytime_p(d, 0.0, c2), np.nan)
    p_holm, rejected, level = holm(p, alpha)
    _, _, _, low, high = confidence_sequence(d, np.where(testable, level, alpha), c2)
    margin = np.broadcast_to(np.asarray(margin, dtype=np.float64), mean.shape)
    inside = (low > -margin) & (high < margin) & (margin > 0)
    decision = np.full(mean.shape, UNDECIDED, dtype=object)
    decision[inside] = EQUIVALENT
    decision[rejected & (mean > 0)] = BETTER
    decision[rejected & (mean < 0)] = WORSE
    decision[~testable] = NOT_TESTABLE
    size = np.broadcast_to(testable.sum(axis=-1, keepdims=True), mean.shape)
    return Family(decision, n, mean, sd, low, high, level, p, p_holm, size)


def decisions_along(d: np.ndarray, alpha: float = ALPHA, margin: float = 0.0, c2: float = PRIOR_PRECISION,
                    first: int = 2) -> np.ndarray:
    """The decisions of a family read after every seed, as a sweep that adds seeds would read them.

    d: [..., m, N] per-seed differences in the order the seeds arrive. Returns [..., m, N - first + 1]:
    column j holds the decisions on the first `first + j` seeds.
    """
    d = np.asarray(d, dtype=np.float64)
    columns = [decide(d[..., :k], alpha, margin, c2).decision for k in range(first, d.shape[-1] + 1)]
    return np.stack(columns, axis=-1)


# --- labels saved -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LabelsSaved:
    """Labels saved against Random's own curve on the same seed, arrays of shape [...]."""

    target: np.ndarray  # the test accuracy both sides are timed to
    n: np.ndarray  # seeds
    random_needs: np.ndarray  # mean over seeds (censored seeds at the budget)
    heuristic_needs: np.ndarray
    saved: np.ndarray  # mean of random's labels minus the heuristic's (positive: fewer labels)
    low: np.ndarray  # its confidence sequence, within [-(budget - start), budget - start]
    high: np.ndarray
    censored_random: np.ndarray  # seeds on which each side never reached the target
    censored_heuristic: np.ndarray
    estimable: np.ndarray  # bool: at most half the seeds have a side that never reached it
    at_start: np.ndarray  # bool: the target is reached at the start on every seed (nothing to save)
    bounded: np.ndarray  # bool: the seeds are enough for an interval at this level (else low, high = +-span)


def labels_saved(labelled_k: np.ndarray, random_sk: np.ndarray, heuristic_sk: np.ndarray,
                 target: np.ndarray | float | None = None, alpha: np.ndarray | float = ALPHA,
                 c2: float = PRIOR_PRECISION) -> LabelsSaved:
    """Per seed, the labels Random needs to reach the target on its own curve minus the labels the heuristic
    needs on the same seed; their mean and confidence sequence.

    labelled_k: [K] sizes both sides share (the first the shared start, the last the budget);
    random_sk, heuristic_sk: [..., S, K] test accuracy (seed i of both is the same seed); target: [...] or
    None for :func:`default_target`; alpha: the level, normally the comparison's own Holm level so that
    this descriptive number cannot look surer than the decision.

    Censoring: a seed that never reaches the target counts at the budget on its side (see
    :func:`labels_to_reach`). That makes a saving against a censored Random a lower bound and a loss of a
    censored heuristic an upper bound, and keeps the rule symmetric. When more than half the seeds have a
    side that never reached the target the mean is mostly that convention: not estimable (the count decides,
    and it does not depend on which side is called Random, so the null symmetry holds). The interval is
    clipped to [-(budget - start), budget - start], the only savings two curves over the same sizes can show.
    """
    x = np.asarray(labelled_k, dtype=np.float64)
    random_sk = np.asarray(random_sk, dtype=np.float64)
    heuristic_sk = np.asarray(heuristic_sk, dtype=np.float64)
    if target is None:
        target = default_target(random_sk[..., 0], random_sk[..., -1], heuristic_sk[..., -1])
    target = np.broadcast_to(np.asarray(target, dtype=np.float64), random_sk.shape[:-2])
    need_r, cens_r = labels_to_reach(x, random_sk, target[..., None])
    need_h, cens_h = labels_to_reach(x, heuristic_sk, target[..., None])
    d = need_r - need_h
    n, saved, _, low, high = confidence_sequence(d, alpha, c2)
    span = x[-1] - x[0]
    bounded = np.isfinite(low) & np.isfinite(high)
    low, high = np.clip(low, -span, span), np.clip(high, -span, span)
    either = (cens_r | cens_h).sum(axis=-1)
    at_start = ((random_sk[..., 0] >= target[..., None]) & (heuristic_sk[..., 0] >= target[..., None])).all(axis=-1)
    return LabelsSaved(target, n, need_r.mean(axis=-1), need_h.mean(axis=-1), saved, low, high,
                       cens_r.sum(axis=-1), cens_h.sum(axis=-1), either * 2 <= n, at_start, bounded)


# --- seeds that decide ------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=256)
def _sd_shares(df: int) -> np.ndarray:
    """The sample sd over the true one at QUADRATURE mid-quantiles of its distribution, df degrees of freedom."""
    u = (np.arange(QUADRATURE) + 0.5) / QUADRATURE
    return np.sqrt(stats.chi2.ppf(u, df) / df)


def decide_probability(mean: np.ndarray, sd: np.ndarray, n: np.ndarray, alpha: np.ndarray,
                       margin: np.ndarray | float = 0.0, c2: float = PRIOR_PRECISION) -> np.ndarray:
    """The probability that the confidence sequence at level alpha decides on n seeds (excludes 0, or lies
    inside (-margin, margin)) when the differences are N(mean, sd^2). Broadcasts its arguments.

    Exact over the sample mean given the sample sd (normal), numerical over the sample sd (its chi
    distribution at QUADRATURE quantiles). Undecided means |mean_hat| <= r and |mean_hat| >= margin - r with
    r = t* sd_hat / sqrt(n): with r < margin / 2 every outcome decides.
    """
    mean, sd, n, alpha, margin = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64)
                                                       for a in (mean, sd, n, alpha, margin)))
    df = np.maximum(n - 1, 1).astype(np.int64)
    # the chi quantiles once per distinct number of seeds (scipy's inverse is the slow part)
    shares = np.empty((*df.shape, QUADRATURE))
    for value in np.unique(df):
        shares[df == value] = _sd_shares(int(value))
    sd_hat = sd[..., None] * shares  # [..., Q]
    se = (sd / np.sqrt(np.maximum(n, 1)))[..., None]
    r = critical_t(n, alpha, c2)[..., None] * sd_hat / np.sqrt(np.maximum(n, 1))[..., None]
    lo = np.maximum(margin[..., None] - r, 0.0)  # undecided: lo <= |mean_hat| <= r
    mu = mean[..., None]
    with np.errstate(invalid="ignore"):
        band = np.where(np.isfinite(r),
                        special.ndtr((r - mu) / se) - special.ndtr((lo - mu) / se)
                        + special.ndtr((-lo - mu) / se) - special.ndtr((-r - mu) / se), 1.0)
    undecided = np.where(r >= lo, np.clip(band, 0.0, 1.0), 0.0)
    return np.where(n >= 2, 1.0 - undecided.mean(axis=-1), 0.0)


def seeds_to_decide(mean: np.ndarray, sd: np.ndarray, n: np.ndarray, alpha: np.ndarray,
                    margin: np.ndarray | float = 0.0, power: float = POWER, limit: int = MAX_HINT_SEEDS,
                    c2: float = PRIOR_PRECISION, spread_confidence: float = SPREAD_CONFIDENCE) -> np.ndarray:
    """The fewest seeds (more than n) at which a comparison whose differences are N(mean, sd'^2) is decided
    with probability `power` at level alpha -- the level Holm tests it at -- by the confidence sequence the
    verdict uses. [...] floats; NaN where more than `limit` seeds would be needed (or no spread is known).

    mean, sd: what the n seeds so far show. The observed mean stands in for the true one; the spread sd' is
    the `spread_confidence` upper confidence bound of the sd from n seeds (chi-square, n - 1 degrees of
    freedom; Browne 1995, "On the use of a pilot sample for sample size determination", Statistics in
    Medicine 14), since a plug-in sd from a few seeds is too small more often than not.
    """
    mean, sd, n, alpha, margin = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64)
                                                       for a in (mean, sd, n, alpha, margin)))
    if spread_confidence > 0.5:
        df = np.maximum(n - 1, 1)
        sd = sd * np.sqrt(df / stats.chi2.ppf(1 - spread_confidence, df))
    need = np.full(mean.shape, np.nan)
    open_ = np.isfinite(mean) & np.isfinite(sd) & (sd > 0)
    # one size at a time over the comparisons still open: the power rises with the seeds, so the first size
    # that reaches it is the answer, and most comparisons stop long before the limit
    for size in range(2, limit + 1):
        ask = open_ & (n < size)
        if not ask.any():
            if not open_.any():
                break
            continue
        prob = decide_probability(mean[ask], sd[ask], float(size), alpha[ask], margin[ask], c2)
        hit = np.zeros(mean.shape, dtype=bool)
        hit[ask] = prob >= power
        need[hit] = size
        open_ &= ~hit
    return need


@dataclass(frozen=True)
class Hint:
    """One seed count for a whole sweep (a family), arrays of shape [...]."""

    seeds: np.ndarray  # total seeds to run, float (NaN: nothing undecided is within reach)
    out_of_reach: np.ndarray  # bool [..., m]: undecided comparisons that would need more than the limit


def sweep_hint(family: Family, alpha: float = ALPHA, margin: np.ndarray | float = 0.0,
               power: float = POWER, limit: int = MAX_HINT_SEEDS, c2: float = PRIOR_PRECISION) -> Hint:
    """The seeds that would decide every undecided comparison of a family that is within reach: the largest
    of their :func:`seeds_to_decide`, each at the level Holm would test it at next, alpha / (m - r) with
    r comparisons rejected (the strictest an undecided one can face; one number for the sweep, not one per
    row). family: arrays [..., m]."""
    undecided = family.decision == UNDECIDED
    rejected = np.isin(family.decision, (BETTER, WORSE))
    m = family.size
    level = alpha / np.maximum(m - rejected.sum(axis=-1, keepdims=True), 1)
    need = np.full(undecided.shape, np.nan)
    if undecided.any():
        need[undecided] = seeds_to_decide(family.mean[undecided], family.sd[undecided], family.n[undecided],
                                          level[undecided], np.broadcast_to(margin, undecided.shape)[undecided],
                                          power, limit, c2)
    out = undecided & np.isnan(need)
    with np.errstate(invalid="ignore"):
        seeds = np.where(np.isnan(need).all(axis=-1), np.nan, np.nanmax(np.where(np.isnan(need), -np.inf, need),
                                                                        axis=-1))
    return Hint(seeds, out)


# --- chance level -----------------------------------------------------------------------------------------

CHANCE_ACCURACY_SHARE = 0.1  # near chance: within this share of the way from 1/C to 1
CHANCE_NLL_SHARE = 0.1  # or (no accuracy) an NLL within this share of log C


def chance_reason(accuracy: float, nll: float, classes: int | None) -> str | None:
    """Why a setting whose final mean accuracy / NLL are these is at chance level for its own class count
    (the jobs' own, never the sweep's), or None. The accuracy decides when there is one: an over-confident
    model can have an NLL above log C and still classify far better than chance."""
    if not classes or classes < 2:
        return None
    chance = 1.0 / classes
    if not math.isnan(accuracy):
        if accuracy <= chance + CHANCE_ACCURACY_SHARE * (1 - chance):
            return f"accuracy {accuracy:.2f} for {classes} classes, chance {chance:.2f}"
        return None
    if not math.isnan(nll) and nll >= (1 - CHANCE_NLL_SHARE) * math.log(classes):
        return f"NLL {nll:.2f}, near log({classes}) = {math.log(classes):.2f} of a uniform guess"
    return None


def setting_classes(job_classes: np.ndarray) -> int | None:
    """One setting's class count from its jobs' own counts [J] (NaN: not recorded): the largest, since a job
    whose pool happened to lack a class still faced the task's classes. None when no job recorded one."""
    counts = np.asarray(job_classes, dtype=np.float64)
    counts = counts[~np.isnan(counts)]
    return int(counts.max()) if counts.size else None
