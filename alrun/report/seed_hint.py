"""The seeds that would decide what a sweep leaves undecided: the power of the verdict's own confidence
sequence at the level Holm tests each comparison at, planned on an upper bound of the spread seen.
Pure functions over numpy arrays, as in alrun.report.decision, whose decisions they plan for."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import special, stats

from alrun.report.decision import ALPHA, BETTER, PRIOR_PRECISION, UNDECIDED, WORSE, Family, critical_t

POWER = 0.8  # the hint's seeds decide a comparison of the observed size with this probability
# the hint plans with this upper confidence bound of the per-seed spread, not the spread seen: the sd of 3
# seeds is below the true one in 63% of sweeps, and a plug-in hint then asks for too few (Browne 1995)
SPREAD_CONFIDENCE = 0.7
MAX_HINT_SEEDS = 100  # the hint never asks for more; a comparison that would need more is said to be out of reach
QUADRATURE = 64  # points over the sample sd's distribution in the hint's power



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
