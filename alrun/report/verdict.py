"""The verdict: one sentence per heuristic (per row key) against Random, first in table.md and last in the
terminal, and its numbers as long rows (table.csv, the tracker).

Decided on the whole curve of test accuracy (its AUBC, paired by seed, Holm-adjusted within the accuracy
table), with the NLL's AUBC beside it and the labels a heuristic needs to reach Random's final accuracy.
Pure functions over the report's frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from alrun.report import stats
from alrun.train.fit_guard import flag_sentence

REFERENCE = "random"
DECIDING = "test_acc"  # the verdict's metric: a team asks how accurate the model gets for its labels
BESIDE = "test_nll"
POWER = 0.8
# near chance: accuracy within this share of the way from 1/C to 1, or NLL within this share of log C
CHANCE_ACCURACY_SHARE = 0.1
CHANCE_NLL_SHARE = 0.1
COLUMNS = ["heuristic", "versus", "metric", "n", "mean", "ci_low", "ci_high", "p_value", "p_holm", "decision"]


@dataclass(frozen=True)
class Verdict:
    """What :func:`verdict` found: the sentences, and their numbers as long rows."""

    lines: list[str]
    rows: pd.DataFrame  # others..., heuristic, versus, metric (aubc_test_acc, aubc_test_nll, labels_saved), n,
    # mean (gain: positive = better than random; labels_saved: labels fewer than random's budget), ci_low,
    # ci_high, p_value, p_holm, decision


def n_classes(summary: pd.DataFrame) -> int | None:
    """The number of classes, from the per-class F1 columns of steps.csv (None when there are none)."""
    count = sum(1 for c in summary.columns if c.startswith("f1_") and c != "f1_reduced")
    return count or None


def chance_reason(accuracy: float, nll: float, classes: int | None) -> str | None:
    """Why a model at these final numbers is at chance level (which guard fired), or None.

    The accuracy decides when there is one: an overconfident model can have an NLL above log C and still
    classify far better than chance (0.35 for 10 classes after 300 updates on 20 labels); the NLL only
    where no accuracy was recorded."""
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


def _p_text(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def _interval(low: float, high: float, fmt: str = "+.3f") -> str:
    return f"[{low:{fmt}}, {high:{fmt}}]"


def labels_needed(summary: pd.DataFrame, heuristic: str, target: float) -> pd.Series:
    """Per seed, the first labelled size at which `heuristic`'s test accuracy reaches `target` (NaN: never
    within its budget). summary: the steps of one setting."""
    part = summary[summary["heuristic"] == heuristic]
    return part.groupby("seed").apply(
        lambda steps: stats.labels_to_target(steps["labelled"].to_numpy(), steps[DECIDING].to_numpy(), target),
        include_groups=False)


def random_final(summary: pd.DataFrame) -> tuple[float, int] | None:
    """(Random's mean final test accuracy, its budget: the largest labelled size its jobs reached), from
    the jobs that reached that budget; None without Random."""
    part = summary[summary["heuristic"] == REFERENCE]
    if part.empty:
        return None
    budget = int(part["labelled"].max())
    finals = part[part["labelled"] == budget]
    return float(finals[DECIDING].mean()), budget


def _labels_saved(summary: pd.DataFrame, heuristic: str) -> tuple[dict, str]:
    """(the labels_saved row's numbers, the sentence on them) for one heuristic of one setting."""
    target, budget = random_final(summary)
    needed = labels_needed(summary, heuristic, target)
    reached = needed.dropna()
    where = f"random's final accuracy ({target:.3f} at {budget} labels)"
    row = {"metric": "labels_saved", "n": int(needed.size), "mean": float("nan"), "ci_low": float("nan"),
           "ci_high": float("nan"), "p_value": float("nan"), "p_holm": float("nan")}
    if needed.empty:
        return row, ""
    if len(reached) < len(needed):
        missed = ", ".join(str(s) for s in needed.index[needed.isna()])
        return row, (f"Reaches {where} on {len(reached)} of {len(needed)} seeds (not within its budget on seed "
                     f"{missed}).")
    result = stats.paired_test(np.full(len(needed), float(budget)), needed.to_numpy())
    saved = result.mean
    row.update(mean=saved, ci_low=result.ci_low, ci_high=result.ci_high, p_value=result.p_value)
    mean_needed = budget - saved
    share = saved / budget
    spread = "" if math.isnan(result.ci_low) else \
        f" [{budget - result.ci_high:.0f}, {budget - result.ci_low:.0f}]"
    if saved > 0:
        amount = f"{share:.0%} fewer labels"
    elif saved == 0:
        amount = "as many labels"
    else:
        amount = f"{-share:.0%} more labels"
    return row, f"Reaches {where} with {mean_needed:.0f} labels{spread}: {amount}."


def _seeds_hint(result_mean: float, result_std: float, n: int) -> str:
    needed = stats.seeds_for_power(result_mean, result_std, POWER)
    if needed is None:
        return "no difference in sight: one this small would take over 1000 seeds to detect"
    if needed <= n:
        return f"{needed} seeds should detect a difference this size; the Holm adjustment over the table held it back"
    return (f"about {needed} seeds would detect a difference this size (paired t, {POWER:.0%} power): "
            f"`'seed=range(0,{needed})'` with the same hydra.sweep.dir resumes this sweep")


def _gain_row(paired: pd.DataFrame, metric: str) -> pd.Series | None:
    rows = paired[paired["metric"] == f"paired_aubc_{metric}"]
    return rows.iloc[0] if len(rows) else None


def _decide(row: pd.Series) -> str:
    if int(row["n"]) < 2:
        return "not testable"
    if math.isnan(row["p_value"]):
        return "not testable"
    p = row["p_holm"] if "p_holm" in row and not math.isnan(row["p_holm"]) else row["p_value"]
    if p < stats.ALPHA and row["mean"] > 0:
        return "better"
    if p < stats.ALPHA and row["mean"] < 0:
        return "worse"
    return "no decision"


def _heuristic_line(name: str, acc: pd.Series, nll: pd.Series | None, saved: str) -> tuple[str, str]:
    """(decision, the sentence) of one heuristic against Random from its AUBC rows."""
    decision = _decide(acc)
    n = int(acc["n"])
    gain = f"AUBC accuracy {acc['mean']:+.3f}"
    beside = ""
    if nll is not None and not math.isnan(nll["mean"]):
        beside = f"; AUBC NLL {nll['mean']:+.3f}" + (
            f" {_interval(nll['ci_low'], nll['ci_high'])}" if not math.isnan(nll["ci_low"]) else "")
    if decision in ("better", "worse"):
        words = "better than random" if decision == "better" else "worse than random"
        p = acc["p_holm"] if "p_holm" in acc and not math.isnan(acc["p_holm"]) else acc["p_value"]
        text = (f"{name}: {words}. {gain} {_interval(acc['ci_low'], acc['ci_high'])}, {_p_text(p)} (Holm), "
                f"{n} seeds{beside}.")
        return decision, f"{text} {saved}".rstrip()
    if decision == "not testable":
        if n < 2:
            why = "one seed has no spread to test against; run seeds 0 to 4 (`'seed=range(0,5)'`)"
        else:
            why = "every seed gives the same difference, so there is no spread to test it against"
        seeds = "1 seed" if n == 1 else f"{n} seeds"
        return decision, f"{name}: not testable. {gain} over {seeds}{beside}; {why}. {saved}".rstrip()
    text = (f"{name}: no decision. {gain} {_interval(acc['ci_low'], acc['ci_high'])} over {n} seeds{beside}; "
            f"{_seeds_hint(acc['mean'], acc['std'], n)}. {saved}")
    return decision, text.rstrip()


def verdict(summary: pd.DataFrame, paired: pd.DataFrame, groups: list[str]) -> Verdict:
    """The verdict of a sweep: per setting (the row keys other than heuristic), each heuristic against Random.

    summary: every step of every job (heuristic labels as in the tables); paired: the report's paired rows
    (paired_aubc_<metric> with p_holm); groups: the row keys, heuristic last.
    """
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
    classes = n_classes(summary)
    lines: list[str] = []
    rows: list[dict] = []
    settings = summary.groupby(others, dropna=False, sort=True) if others else [((), summary)]
    fit_line = None  # the under-fitting guard's sentence on a setting, appended after that setting's lines
    for key, part in settings:
        if fit_line:
            lines.append(fit_line)
        key = key if isinstance(key, tuple) else (key,)
        where = dict(zip(others, key, strict=True))
        prefix = ", ".join(f"{k}={v}" for k, v in where.items())
        lead = f"{prefix}: " if prefix else ""
        fit_line = fit_sentence(part, lead)
        names = sorted(set(part["heuristic"]) - {REFERENCE})
        if REFERENCE not in set(part["heuristic"]):
            lines.append(f"{lead}no random run at these settings, so {', '.join(names)} cannot be compared with it "
                         "(add heuristic=random).")
            continue
        budget = int(part["labelled"].max())
        finals = part[part["labelled"] == part.groupby("job")["labelled"].transform("max")]
        at_chance = {}
        for name, final in finals.groupby("heuristic"):
            reason = chance_reason(float(final[DECIDING].mean()), float(final[BESIDE].mean())
                                   if BESIDE in final.columns else float("nan"), classes)
            if reason:
                at_chance[name] = reason
        if len(at_chance) == part["heuristic"].nunique():
            reason = at_chance[REFERENCE]
            lines.append(f"{lead}all heuristics are at chance level ({reason} at {budget} labels): this comparison "
                         "says nothing; fit the model (e.g. train.schedule=early_stopping) or check the data.")
            for name in names:
                rows.append({**where, "heuristic": name, "versus": REFERENCE, "metric": f"aubc_{DECIDING}",
                             "n": int(part[part["heuristic"] == name]["seed"].nunique()), "decision": "chance level"})
            continue
        mine = paired
        for column, value in where.items():
            mine = mine[mine[column].astype(str) == str(value)] if column in mine.columns else mine
        for name in names:
            own = mine[mine["heuristic"] == name] if not mine.empty else mine
            acc = _gain_row(own, DECIDING) if not own.empty else None
            nll = _gain_row(own, BESIDE) if not own.empty else None
            label = f"{lead}{name}"
            if name in at_chance:
                lines.append(f"{label}: at chance level ({at_chance[name]}): its comparison with random says "
                             "nothing.")
                rows.append({**where, "heuristic": name, "versus": REFERENCE, "metric": f"aubc_{DECIDING}",
                             "decision": "chance level"})
                continue
            if acc is None:
                lines.append(f"{label}: no whole curve to compare (its jobs or random's did not finish their "
                             "budget).")
                continue
            saved_row, saved_text = _labels_saved(part, name)
            decision, text = _heuristic_line(label, acc, nll, saved_text)
            lines.append(text)
            for metric, frame_row in ((f"aubc_{DECIDING}", acc), (f"aubc_{BESIDE}", nll)):
                if frame_row is None:
                    continue
                rows.append({**where, "heuristic": name, "versus": REFERENCE, "metric": metric,
                             **{c: frame_row[c] for c in ("n", "mean", "ci_low", "ci_high", "p_value")},
                             "p_holm": frame_row.get("p_holm", float("nan")), "decision": decision})
            rows.append({**where, "heuristic": name, "versus": REFERENCE, **saved_row, "decision": decision})
    if fit_line:
        lines.append(fit_line)
    frame = pd.DataFrame(rows, columns=[*others, *COLUMNS])
    return Verdict(lines, frame)


def fit_sentence(part: pd.DataFrame, lead: str = "") -> str | None:
    """The under-fitting guard's sentence on one setting's steps (their `fit_flag`, see :mod:`alrun.train.fit_guard`),
    or None when none is flagged or the steps predate the guard."""
    if "fit_flag" not in part.columns:
        return None
    noise = part["lambda"].dropna().unique() if "lambda" in part.columns else []
    sentence = flag_sentence(part["fit_flag"].tolist(), float(noise[0]) if len(noise) == 1 else None)
    return f"{lead}{sentence}" if sentence else None
