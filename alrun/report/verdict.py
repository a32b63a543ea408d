"""The verdict: one decision per heuristic per setting against Random, on one declared primary endpoint, first
in table.md and last in the terminal, and its numbers as long rows (table.csv, the tracker).

The primary endpoint (report.primary: the AUBC of test accuracy unless declared otherwise) is compared paired
by seed; the family for Holm's correction is the primary comparisons of the sweep (heuristics x settings);
each is decided with an anytime-valid confidence sequence (alrun.report.decision), so a verdict read again after
seeds are added is still valid. Every other number in a sentence is labelled descriptive and uses the same
level. Pure functions over the report's frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from alrun.report import decision as dc
from alrun.report import seed_hint as sh
from alrun.report.wording import fmt as _fmt
from alrun.report.wording import interval as _interval
from alrun.train.fit_guard import flag_sentence

REFERENCE = "random"
ACCURACY, NLL = "test_acc", "test_nll"
PRIMARY_DEFAULT = "aubc_accuracy"
chance_reason = dc.chance_reason  # where the verdict's callers found it before
COLUMNS = ["heuristic", "versus", "metric", "role", "n", "mean", "ci_low", "ci_high", "level", "p_value", "p_holm",
           "target", "decision"]
# the endpoint's key -> the verdict rows' metric name (the tracker's keys: verdict/<metric>/...)
ROW_METRIC = {"aubc_accuracy": "aubc_test_acc", "aubc_nll": "aubc_test_nll", "accuracy_at_budget": "final_test_acc",
              "labels_to_target": "labels_saved"}


@dataclass(frozen=True)
class Verdict:
    """What :func:`verdict` found: the sentences, their numbers as long rows, and the seeds that would decide
    what is undecided (one number for the sweep)."""

    lines: list[str]
    rows: pd.DataFrame  # others..., heuristic, versus, metric, role (primary / descriptive), n, mean (gain:
    # positive = better than random; labels_saved: labels fewer than random's own), ci_low, ci_high, level
    # (the confidence sequence's alpha: Holm's level of the comparison), p_value (anytime-valid), p_holm,
    # target (labels_saved: the accuracy both were timed to), decision
    hint_seeds: int | None = None  # seeds in all that would decide the undecided comparisons within reach
    undecided: list[str] = field(default_factory=list)  # their labels ("bald", "lambda=0.1: bald")


@dataclass(frozen=True)
class Options:
    """The verdict's declared settings (report.primary, report.target_accuracy, report.equivalence_margin)."""

    primary: str = PRIMARY_DEFAULT
    target: float | None = None  # the accuracy labels are counted to; None: dc.default_target per pair
    margin: float | None = None  # the equivalence margin in the primary's unit; None: the endpoint's default
    alpha: float = dc.ALPHA

    @property
    def endpoint(self) -> dc.Endpoint:
        return dc.ENDPOINTS[self.primary]

    @property
    def equivalence(self) -> float:
        return self.endpoint.margin if self.margin is None else float(self.margin)


def job_classes(summary: pd.DataFrame) -> pd.Series:
    """Each job's own class count: the `n_classes` its job.json recorded, else the number of per-class F1
    columns its own rows fill (a two-data-set sweep's summary holds both sets' columns; each job fills its
    own). Indexed by job; NaN where neither is known."""
    per_class = [c for c in summary.columns if c.startswith("f1_") and c != "f1_reduced"]
    filled = summary.groupby("job")[per_class].apply(lambda rows: rows.notna().any().sum()) if per_class \
        else pd.Series(0, index=summary["job"].unique())
    counts = filled.astype(float).where(filled > 0)
    if "n_classes" in summary.columns:
        recorded = pd.to_numeric(summary.groupby("job")["n_classes"].first(), errors="coerce")
        counts = recorded.combine_first(counts)
    return counts


@dataclass
class _Pair:
    """One heuristic against Random at one setting: curves on the sizes both share, seed i of each the same."""

    where: dict
    label: str  # "bald" or "lambda=0.1: bald"
    name: str
    sizes: np.ndarray  # [K]
    seeds: list  # [S]
    random_acc: np.ndarray  # [S, K]
    heuristic_acc: np.ndarray
    random_nll: np.ndarray | None
    heuristic_nll: np.ndarray | None


def _curves(part: pd.DataFrame, name: str, metric: str, seeds: list, sizes: np.ndarray) -> np.ndarray | None:
    if metric not in part.columns:
        return None
    mine = part[part["heuristic"] == name].pivot_table(index="seed", columns="labelled", values=metric,
                                                       aggfunc="first")
    return mine.reindex(index=seeds, columns=sizes).to_numpy(dtype=np.float64)


def _pair(part: pd.DataFrame, name: str, where: dict, label: str) -> _Pair | None:
    """The curves of `name` and Random at one setting, on the seeds both ran to the setting's budget and the
    sizes all of those jobs share; None when no seed pairs."""
    both = part[part["heuristic"].isin([name, REFERENCE])]
    last = both.groupby("job")["labelled"].max()
    budget = last.max()
    full_jobs = set(last.index[last == budget])
    full = both[both["job"].isin(full_jobs)]
    by_side = full.groupby("heuristic")["seed"].unique()
    if name not in by_side.index or REFERENCE not in by_side.index:
        return None
    seeds = sorted(set(by_side[name]) & set(by_side[REFERENCE]))
    if not seeds:
        return None
    full = full[full["seed"].isin(seeds)]
    shared = full.groupby("job")["labelled"].apply(set)
    sizes = np.array(sorted(set.intersection(*shared.tolist())), dtype=np.float64)
    acc_r, acc_h = (_curves(full, h, ACCURACY, seeds, sizes) for h in (REFERENCE, name))
    nll_r, nll_h = (_curves(full, h, NLL, seeds, sizes) for h in (REFERENCE, name))
    return _Pair(where, label, name, sizes, seeds, acc_r, acc_h, nll_r, nll_h)


def _differences(pair: _Pair, key: str, target: float | None) -> np.ndarray:
    """Per-seed differences [S] of endpoint `key`, signed so positive = the heuristic is better."""
    x = pair.sizes
    if key == "aubc_accuracy":
        return dc.aubc(x, pair.heuristic_acc) - dc.aubc(x, pair.random_acc)
    if key == "aubc_nll":
        if pair.random_nll is None:
            return np.full(len(pair.seeds), np.nan)
        return dc.aubc(x, pair.random_nll) - dc.aubc(x, pair.heuristic_nll)
    if key == "accuracy_at_budget":
        return pair.heuristic_acc[:, -1] - pair.random_acc[:, -1]
    if key == "labels_to_target":
        goal = _target(pair, target)
        need_r, _ = dc.labels_to_reach(x, pair.random_acc, goal)
        need_h, _ = dc.labels_to_reach(x, pair.heuristic_acc, goal)
        return need_r - need_h
    raise KeyError(key)


def _target(pair: _Pair, target: float | None) -> float:
    if target is not None:
        return float(target)
    return float(dc.default_target(pair.random_acc[:, 0], pair.random_acc[:, -1], pair.heuristic_acc[:, -1]))


def chance_reason_of(part: pd.DataFrame, classes: int | None) -> dict[str, str]:
    """{heuristic: why it is at chance level} over one setting's final steps (each job's last)."""
    finals = part[part["labelled"] == part.groupby("job")["labelled"].transform("max")]
    out = {}
    for name, final in finals.groupby("heuristic"):
        reason = dc.chance_reason(float(final[ACCURACY].mean()) if ACCURACY in final.columns else float("nan"),
                                  float(final[NLL].mean()) if NLL in final.columns else float("nan"), classes)
        if reason:
            out[name] = reason
    return out


def _confidence_words(n_family: int, alpha: float) -> str:
    if n_family <= 1:
        return f"anytime-valid {1 - alpha:.0%}"
    return f"anytime-valid, Holm over {n_family} comparisons: {1 - alpha:.0%} family-wise"


def _seeds_for_an_interval(level: float) -> int:
    """The fewest seeds whose confidence sequence at `level` can exclude anything."""
    sizes = np.arange(2, 200)
    finite = np.isfinite(dc.critical_t(sizes, level))
    return int(sizes[np.argmax(finite)]) if finite.any() else 200


def _labels_text(pair: _Pair, options: Options, level: float, decision: str) -> tuple[dict, str]:
    """(the labels_saved row, its descriptive sentence) of one pair."""
    goal = _target(pair, options.target)
    saved = dc.labels_saved(pair.sizes, pair.random_acc, pair.heuristic_acc, goal, level)
    n = int(saved.n)
    row = {"metric": "labels_saved", "role": "descriptive", "n": n, "mean": float(saved.saved),
           "ci_low": float(saved.low), "ci_high": float(saved.high), "level": level, "target": goal}
    where = f"labels to accuracy {goal:.3f} (paired by seed)"
    if bool(saved.at_start):
        row.update(mean=0.0, ci_low=0.0, ci_high=0.0)
        return row, f"{where}: reached at the start ({pair.sizes[0]:.0f} labels) on every seed, nothing to save"
    missing = []
    if int(saved.censored_random):
        missing.append(f"random on {int(saved.censored_random)}")
    if int(saved.censored_heuristic):
        missing.append(f"{pair.name} on {int(saved.censored_heuristic)}")
    never = f"; not reached within {pair.sizes[-1]:.0f} labels by {' and '.join(missing)} of {n} seeds" \
        if missing else ""
    if not bool(saved.estimable):
        row.update(mean=float("nan"), ci_low=float("nan"), ci_high=float("nan"))
        return row, f"{where}: not estimable{never}"
    spread = _interval(float(saved.low), float(saved.high), "+.0f") if bool(saved.bounded) else ""
    if not bool(saved.bounded):
        row.update(ci_low=float("nan"), ci_high=float("nan"))
    share = ""
    if decision == dc.BETTER and float(saved.low) > 0 and float(saved.random_needs) > 0:
        share = f", {float(saved.saved) / float(saved.random_needs):.0%} fewer"
    counted = " (counted at the budget)" if missing else ""
    return row, (f"{where}: {pair.name} {float(saved.heuristic_needs):.0f}, random {float(saved.random_needs):.0f}, "
                 f"saved {_fmt(float(saved.saved), '+.0f')}{spread}{share}{never}{counted}")


def verdict(summary: pd.DataFrame, groups: list[str], options: Options | None = None) -> Verdict:
    """The verdict of a sweep: per setting (the row keys other than heuristic), each heuristic against Random.

    summary: every step of every job (heuristic labels as in the tables); groups: the row keys, heuristic last.
    """
    options = options or Options()
    if "heuristic" not in groups or "seed" not in summary.columns:
        return Verdict(["One heuristic or no seeds recorded: there is nothing to compare with Random."],
                       pd.DataFrame(columns=COLUMNS))
    others = [g for g in groups if g != "heuristic"]
    if REFERENCE not in set(summary["heuristic"]):
        names = ", ".join(sorted(set(summary["heuristic"].astype(str))))
        lines = [f"No random run in this sweep, so {names} cannot be compared with it: the tables compare the "
                 "settings (add heuristic=random for a verdict)."]
        for key, part in (summary.groupby(others, dropna=False, sort=True) if others else [((), summary)]):
            key = key if isinstance(key, tuple) else (key,)
            prefix = ", ".join(f"{k}={v}" for k, v in zip(others, key, strict=True))
            lines.append(fit_sentence(part, f"{prefix}: " if prefix else ""))
        return Verdict([line for line in lines if line], pd.DataFrame(columns=COLUMNS))
    classes_of_job = job_classes(summary)
    # first pass: every setting's lines that need no family (chance level, no random), and the pairs
    entries: list[tuple[str, object]] = []  # ("line", text) | ("pair", _Pair) | ("fit", text), in order
    rows: list[dict] = []
    settings = summary.groupby(others, dropna=False, sort=True) if others else [((), summary)]
    for key, part in settings:
        key = key if isinstance(key, tuple) else (key,)
        where = dict(zip(others, key, strict=True))
        prefix = ", ".join(f"{k}={v}" for k, v in where.items())
        lead = f"{prefix}: " if prefix else ""
        names = sorted(set(part["heuristic"]) - {REFERENCE})
        fit_line = fit_sentence(part, lead)
        if REFERENCE not in set(part["heuristic"]):
            entries.append(("line", f"{lead}no random run at these settings, so {', '.join(names)} cannot be "
                                    "compared with it (add heuristic=random)."))
            if fit_line:
                entries.append(("line", fit_line))
            continue
        classes = dc.setting_classes(classes_of_job.reindex(part["job"].unique()).to_numpy(dtype=np.float64))
        at_chance = chance_reason_of(part, classes)
        budget = int(part["labelled"].max())
        if len(at_chance) == part["heuristic"].nunique():
            entries.append(("line", f"{lead}all heuristics are at chance level ({at_chance[REFERENCE]} at {budget} "
                                    "labels): this comparison says nothing; fit the model (e.g. "
                                    "train.schedule=early_stopping) or check the data."))
            for name in names:
                rows.append({**where, "heuristic": name, "versus": REFERENCE, "metric": ROW_METRIC[options.primary],
                             "role": "primary", "n": int(part[part["heuristic"] == name]["seed"].nunique()),
                             "decision": "chance level"})
            if fit_line:
                entries.append(("line", fit_line))
            continue
        for name in names:
            label = f"{lead}{name}"
            if name in at_chance:
                entries.append(("line", f"{label}: at chance level ({at_chance[name]}): its comparison with random "
                                        "says nothing."))
                rows.append({**where, "heuristic": name, "versus": REFERENCE, "metric": ROW_METRIC[options.primary],
                             "role": "primary", "decision": "chance level"})
                continue
            pair = _pair(part, name, where, label)
            if pair is None:
                entries.append(("line", f"{label}: no seed that both it and random ran to the budget, so no paired "
                                        "comparison (their jobs did not finish)."))
                continue
            entries.append(("pair", pair))
        if fit_line:
            entries.append(("line", fit_line))
    pairs = [p for kind, p in entries if kind == "pair"]
    family, hint = _family(pairs, options)
    lines: list[str] = []
    index = 0
    for kind, item in entries:
        if kind == "line":
            lines.append(item)
            continue
        text, pair_rows = _sentence(item, index, family, options, bool(hint.out_of_reach[index]))
        lines.append(text)
        rows.extend(pair_rows)
        index += 1
    undecided = [p.label for i, p in enumerate(pairs) if family is not None and family.decision[i] == dc.UNDECIDED
                 and not hint.out_of_reach[i]]
    seeds = None if hint is None or np.isnan(hint.seeds) else int(hint.seeds)
    if family is not None and seeds is None and any(family.n[i] < 2 for i in range(len(pairs))):
        seeds = 5  # a first spread to plan with
    frame = pd.DataFrame(rows, columns=[*others, *COLUMNS])
    return Verdict(lines, frame, seeds, undecided)


def _family(pairs: list[_Pair], options: Options) -> tuple[dc.Family | None, sh.Hint | None]:
    """The decisions of the sweep's primary comparisons (one family) and the seeds that would decide the rest."""
    if not pairs:
        return None, None
    width = max(len(p.seeds) for p in pairs)
    d = np.full((len(pairs), width), np.nan)
    for i, p in enumerate(pairs):
        diffs = _differences(p, options.primary, options.target)
        d[i, :diffs.size] = diffs
    family = dc.decide(d, options.alpha, options.equivalence)
    hint = sh.sweep_hint(family, options.alpha, options.equivalence)
    return family, hint


def _sentence(pair: _Pair, i: int, family: dc.Family, options: Options, out_of_reach: bool = False
              ) -> tuple[str, list[dict]]:
    """(the sentence, its rows) of comparison i of the family."""
    endpoint = options.endpoint
    decision = str(family.decision[i])
    n, mean = int(family.n[i]), float(family.mean[i])
    level = float(family.level[i]) if not math.isnan(family.level[i]) else options.alpha
    size = int(family.size[i])
    spec = endpoint.unit_format
    low, high = float(family.low[i]), float(family.high[i])
    number = f"{endpoint.label} {_fmt(mean, spec)}{_interval(low, high, spec)} over {n} seed{'s' if n != 1 else ''}"
    how = _confidence_words(size, options.alpha)
    if math.isfinite(low) and math.isfinite(high):
        rests = f"{number} ({how})"
    elif n >= 2 and decision == dc.UNDECIDED:
        rests = (f"{number} ({how}; {n} seeds are too few for an interval at this level, "
                 f"{_seeds_for_an_interval(level)} are needed)")
    else:
        rests = number
    words = {dc.BETTER: "better than random", dc.WORSE: "worse than random", dc.UNDECIDED: "no decision",
             dc.NOT_TESTABLE: "not testable",
             dc.EQUIVALENT: f"no better than random within +-{options.equivalence:g} {endpoint.label}"}[decision]
    if decision == dc.NOT_TESTABLE:
        why = ("one seed has no spread to test against; run seeds 0 to 4 (`'seed=range(0,5)'`)" if n < 2 else
               "every seed gives the same difference, so there is no spread to test it against")
        rests = f"{number}; {why}"
    if decision == dc.UNDECIDED and out_of_reach:
        rests += f"; at this size and spread more than {sh.MAX_HINT_SEEDS} seeds would be needed to decide it"
    descriptive, rows = _descriptive(pair, i, family, options, level, decision)
    text = f"{pair.label}: {words}. {rests}."
    if descriptive:
        text += f" Descriptive: {'; '.join(descriptive)}."
    primary_row = {**pair.where, "heuristic": pair.name, "versus": REFERENCE, "metric": ROW_METRIC[options.primary],
                   "role": "primary", "n": n, "mean": mean, "ci_low": low if math.isfinite(low) else float("nan"),
                   "ci_high": high if math.isfinite(high) else float("nan"), "level": level,
                   "p_value": float(family.p[i]), "p_holm": float(family.p_holm[i]),
                   "target": _target(pair, options.target) if options.primary == "labels_to_target" else float("nan")}
    out = [primary_row, *rows]
    for row in out:
        row["decision"] = decision
    return text, out


def _descriptive(pair: _Pair, i: int, family: dc.Family, options: Options, level: float, decision: str
                 ) -> tuple[list[str], list[dict]]:
    """The numbers beside the decision, each at the decision's level (an interval no surer than it)."""
    texts, rows = [], []
    for key in ("aubc_accuracy", "aubc_nll"):
        if key == options.primary:
            continue
        d = _differences(pair, key, options.target)
        if np.isnan(d).all():
            continue
        n, mean, _, low, high = dc.confidence_sequence(d, level)
        endpoint = dc.ENDPOINTS[key]
        texts.append(f"{endpoint.label} {float(mean):+.3f}{_interval(float(low), float(high), '+.3f')}")
        rows.append({**pair.where, "heuristic": pair.name, "versus": REFERENCE, "metric": ROW_METRIC[key],
                     "role": "descriptive", "n": int(n), "mean": float(mean),
                     "ci_low": float(low) if np.isfinite(low) else float("nan"),
                     "ci_high": float(high) if np.isfinite(high) else float("nan"), "level": level})
    if options.primary != "labels_to_target":
        row, text = _labels_text(pair, options, level, decision)
        rows.append({**pair.where, "heuristic": pair.name, "versus": REFERENCE, **row})
        texts.append(text)
    return texts, rows


def fit_sentence(part: pd.DataFrame, lead: str = "") -> str | None:
    """The under-fitting guard's sentence on one setting's steps (their `fit_flag`, see :mod:`alrun.train.fit_guard`),
    or None when none is flagged or the steps predate the guard."""
    if "fit_flag" not in part.columns:
        return None
    noise = part["lambda"].dropna().unique() if "lambda" in part.columns else []
    sentence = flag_sentence(part["fit_flag"].tolist(), float(noise[0]) if len(noise) == 1 else None)
    return f"{lead}{sentence}" if sentence else None
