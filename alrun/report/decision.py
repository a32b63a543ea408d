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

import math
from dataclasses import dataclass

import numpy as np

from alrun.report.endpoints import ENDPOINTS, Endpoint, aubc, default_target, labels_to_reach  # noqa: F401

ALPHA = 0.05
# c^2, the prior precision of the standardised effect (mean / sd of the per-seed difference): prior sd
# 1/c = 2, the size of effects active learning curves show. Chosen by the seeds it takes at 80% power:
# within one seed of the best c^2 for standardised effects 1 to 4 at levels 0.05 to 0.0125 (c^2 = 0.05 is
# faster only below 5 seeds, c^2 = 1 only above 30).
PRIOR_PRECISION = 0.25

# decision words
BETTER, WORSE, EQUIVALENT, UNDECIDED, NOT_TESTABLE = "better", "worse", "equivalent", "no decision", "not testable"


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
