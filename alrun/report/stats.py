"""Statistics of learning curves: area under the budget curve, labels to a target, paired tests.

Pure functions over arrays and pandas frames; :mod:`alrun.report.frames` turns them into tables.

Conventions (Lüth et al. 2023; Werner et al. 2024):
- AUBC: the trapezoid area under metric-against-labelled-size, divided by the budget range, so it reads
  in the metric's own unit (the curve's mean over the budget).
- A paired comparison pairs the two heuristics' jobs of the same seed (the same initial labels and
  weights); seeds that only one side has drop out. "gain" is signed so that positive means the first
  heuristic is better (for NLL: NLL(reference) - NLL(heuristic), the paper's active gain).
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import integrate, stats

ALPHA = 0.05  # significance level of the paired tests and the penalty matrix
LOWER_IS_BETTER = ("test_nll",)


def lower_is_better(metric: str) -> bool:
    """True for NLL-like metrics (also their AUBC, "aubc_test_nll"), False for accuracy-like ones."""
    return any(metric.endswith(name) for name in LOWER_IS_BETTER)


def aubc(labelled: np.ndarray, values: np.ndarray) -> float:
    """Area under the learning curve values[i] at labelled[i], trapezoid, normalised by the budget range.

    labelled: [S] labelled sizes (any order, sorted here); values: [S]. A single step has no range:
    its value is returned. NaN when there is no step.
    """
    labelled = np.asarray(labelled, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if labelled.size == 0:
        return float("nan")
    order = np.argsort(labelled, kind="stable")
    x, y = labelled[order], values[order]
    span = x[-1] - x[0]
    if span == 0:
        return float(y.mean())
    return float(integrate.trapezoid(y, x) / span)


def labels_to_target(labelled: np.ndarray, accuracy: np.ndarray, target: float) -> float:
    """The smallest labelled size at which `accuracy` reaches `target` (>=); NaN when it never does.

    labelled, accuracy: [S], one job's steps.
    """
    labelled = np.asarray(labelled, dtype=np.float64)
    accuracy = np.asarray(accuracy, dtype=np.float64)
    reached = labelled[accuracy >= target]
    return float(reached.min()) if reached.size else float("nan")


def target_column(target: float) -> str:
    """The per-job column of the labels needed to reach test accuracy `target`: labels_to_target_0.9."""
    return f"labels_to_target_{target:g}"


def per_job_curves(summary: pd.DataFrame, keys: list[str], metrics: tuple[str, ...],
                   targets: Sequence[float] = ()) -> pd.DataFrame:
    """One row per job: `keys` (constant within a job), `last_labelled`, `aubc_<metric>` for each metric
    the summary has, and for each target accuracy :func:`target_column` (NaN: never reached).

    summary: one row per step, with columns job, labelled, the keys and the metrics.
    """
    rows = []
    for job, steps in summary.groupby("job", sort=True):
        row = {"job": job, **{k: steps[k].iloc[0] for k in keys}, "last_labelled": int(steps["labelled"].max()),
               "first_labelled": int(steps["labelled"].min())}
        for metric in metrics:
            if metric in steps.columns:
                row[f"aubc_{metric}"] = aubc(steps["labelled"].to_numpy(), steps[metric].to_numpy())
        if "test_acc" in steps.columns:
            for target in targets:
                row[target_column(target)] = labels_to_target(steps["labelled"].to_numpy(),
                                                              steps["test_acc"].to_numpy(), target)
        rows.append(row)
    return pd.DataFrame(rows)


def median_and_range(labels: np.ndarray) -> tuple[float, float, float]:
    """(median, min, max) over seeds of the labels each needed to reach a target, [S] with NaN for a seed
    that never did: such a seed counts as more than any budget (inf), so the median is inf when half or more
    of the seeds never reached it, and the max is inf when any did not. All NaN: (inf, inf, inf)."""
    values = np.sort(np.where(np.isnan(np.asarray(labels, dtype=np.float64)), np.inf, labels))
    if values.size == 0:
        return math.inf, math.inf, math.inf
    mid = values.size // 2
    median = values[mid] if values.size % 2 else (values[mid - 1] + values[mid]) / 2
    return float(median), float(values[0]), float(values[-1])


@dataclass(frozen=True)
class Paired:
    """A paired comparison of two heuristics over seeds: difference a - b, signed by the caller."""

    n: int  # seeds both sides have
    mean: float  # mean of the per-seed differences
    std: float  # their std (ddof=1); NaN below 2 seeds
    ci_low: float  # 95% confidence interval of the mean difference (t distribution, n - 1 dof)
    ci_high: float
    p_value: float  # two-sided paired t-test (scipy.stats.ttest_rel); 1.0 for identical sides

    @property
    def significant(self) -> bool:
        """True when the difference is significant at ALPHA (and so has a sign)."""
        return bool(self.p_value < ALPHA) and self.mean != 0

    @property
    def testable(self) -> bool:
        """False for a non-zero difference with no spread over 2+ seeds (or below 2 seeds): no interval, no p."""
        return not np.isnan(self.p_value)


def paired_test(a: np.ndarray, b: np.ndarray, confidence: float = 0.95) -> Paired:
    """Paired t-test of a against b, position i of both being the same seed; NaN pairs drop out.

    a, b: [n]. Below 2 pairs there is no interval and no test (NaN). Identical sides (every difference
    0) give p = 1 and the interval [0, 0], where scipy would answer NaN. A non-zero difference that is the
    same on every seed has no spread to test it against (scipy would answer p = 0): not testable, NaN.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    diff = a - b
    n = int(diff.size)
    if n == 0:
        return Paired(0, float("nan"), float("nan"), float("nan"), float("nan"), float("nan"))
    mean = float(diff.mean())
    if n < 2:
        return Paired(n, mean, float("nan"), float("nan"), float("nan"), float("nan"))
    std = float(diff.std(ddof=1))
    if not np.any(diff):
        return Paired(n, 0.0, 0.0, 0.0, 0.0, 1.0)
    if std <= 1e-9 * max(1.0, abs(mean)):  # every seed differs by the same amount: no spread to test against
        return Paired(n, mean, 0.0, float("nan"), float("nan"), float("nan"))
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # a constant non-zero difference: t = inf, p = 0
        result = stats.ttest_rel(a, b)
        interval = result.confidence_interval(confidence_level=confidence)
    return Paired(n, mean, std, float(interval.low), float(interval.high), float(result.pvalue))


def _by_seed(frame: pd.DataFrame, heuristic: str, value: str) -> pd.Series:
    part = frame[frame["heuristic"] == heuristic]
    return part.groupby("seed")[value].first()


def paired_against(frame: pd.DataFrame, value: str, by: list[str], reference: str = "random",
                   higher_is_better: bool = True) -> pd.DataFrame:
    """Every heuristic against `reference`, paired by seed, within each group of `by`.

    frame: one row per job (columns heuristic, seed, `value` and `by`). Returns one row per (group,
    heuristic): by..., heuristic, versus, n, mean (the gain: positive = the heuristic is better), std,
    ci_low, ci_high, p_value. Empty when the reference is not in the frame.
    """
    rows = []
    groups = frame.groupby(by, dropna=False, sort=True) if by else [((), frame)]
    for key, part in groups:
        key = key if isinstance(key, tuple) else (key,)
        if reference not in set(part["heuristic"]):
            continue
        ref = _by_seed(part, reference, value)
        for heuristic in sorted(set(part["heuristic"]) - {reference}):
            mine = _by_seed(part, heuristic, value)
            seeds = ref.index.union(mine.index)
            a, b = mine.reindex(seeds).to_numpy(), ref.reindex(seeds).to_numpy()
            result = paired_test(a, b) if higher_is_better else paired_test(b, a)
            rows.append({**dict(zip(by, key, strict=True)), "heuristic": heuristic, "versus": reference,
                         "n": result.n, "mean": result.mean, "std": result.std, "ci_low": result.ci_low,
                         "ci_high": result.ci_high, "p_value": result.p_value})
    columns = [*by, "heuristic", "versus", "n", "mean", "std", "ci_low", "ci_high", "p_value"]
    return pd.DataFrame(rows, columns=columns)


def penalty_matrix(points: pd.DataFrame, value: str = "value", point: str = "point",
                   higher_is_better: bool = True) -> tuple[pd.DataFrame, int]:
    """How often each heuristic is significantly better than each other one.

    points: one row per (point, heuristic, seed) with the compared `value`; a point is one place the
    heuristics are compared (e.g. a swept setting x a labelled size, or an AUBC). Returns (matrix, the
    number of points where some pair had 2 seeds or more to test): matrix.loc[i, j] = the points at which
    i beats j by a paired t-test at p < ALPHA (pairs by seed, missing seeds drop out). The diagonal is 0.
    """
    names = sorted(points["heuristic"].unique())
    matrix = pd.DataFrame(0, index=pd.Index(names, name="better"), columns=pd.Index(names, name="than"))
    compared = 0
    for _, part in points.groupby(point, sort=True):
        tested = False
        for i, j in itertools.permutations(sorted(part["heuristic"].unique()), 2):
            a, b = _by_seed(part, i, value), _by_seed(part, j, value)
            seeds = a.index.union(b.index)
            x, y = a.reindex(seeds).to_numpy(), b.reindex(seeds).to_numpy()
            result = paired_test(x, y) if higher_is_better else paired_test(y, x)
            tested = tested or not np.isnan(result.p_value)
            if result.significant and result.mean > 0:
                matrix.loc[i, j] += 1
        compared += tested
    return matrix, compared


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (NaN entries stay NaN, outside the family).

    p_values: [m]. Returns [m] adjusted p-values, each in [0, 1], monotone in the raw order.
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full_like(p, np.nan)
    tested = np.flatnonzero(~np.isnan(p))
    m = tested.size
    if m == 0:
        return out
    order = tested[np.argsort(p[tested], kind="stable")]
    scaled = (m - np.arange(m)) * p[order]
    out[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return out


def seeds_for_power(mean: float, std: float, power: float = 0.8, alpha: float = ALPHA, limit: int = 1000) -> int | None:
    """The fewest seeds a two-sided paired t-test needs to detect a true difference `mean` with per-seed
    spread `std` at `power` (noncentral t). None when it would take more than `limit` seeds (or mean is 0)."""
    if not np.isfinite(mean) or not np.isfinite(std) or mean == 0:
        return None
    if std == 0:
        return 2
    effect = abs(mean) / std
    for n in range(2, limit + 1):
        df = n - 1
        critical = stats.t.ppf(1 - alpha / 2, df)
        noncentrality = effect * np.sqrt(n)
        achieved = stats.nct.sf(critical, df, noncentrality) + stats.nct.cdf(-critical, df, noncentrality)
        if achieved >= power:
            return n
    return None
