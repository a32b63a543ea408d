"""The paper's tables beside the reference runs, cell by cell, with the active gain on both sides.

Every number of ours comes from the committed `reference/*/summary.csv`; the paper's from
`paper_tables.md` (its Tables 1-3). `python -m alrun.report.side_by_side` prints the markdown;
`--write` puts it into `results/README.md` between the two `side-by-side` markers (a test checks
that the README holds what this prints).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from alrun.report import read_summary, rows_at_size, stats, summary_file

# the results folder of a source checkout (beside alrun/); --results names another
RESULTS_DIR = Path(__file__).resolve().parents[2] / "results"
PAPER_SIZES, CPU = "`scale=cpu_paper_sizes`", "`scale=cpu`"
START, END = "<!-- side-by-side:start -->", "<!-- side-by-side:end -->"
NAMES = {"bald": "BALD", "entropy": "Entropy", "random": "Random", "batchbald": "BatchBALD", "power_bald": "power-BALD"}


# --- inputs -----------------------------------------------------------------------------------------------


def load(name: str) -> pd.DataFrame:
    return read_summary(summary_file(RESULTS_DIR / "reference" / name))


def paper_table(number: int) -> pd.DataFrame:
    """The paper's Table `number` as a frame: one column per header cell, "0.65 +- 0.01" cells as text."""
    text = (RESULTS_DIR / "paper_tables.md").read_text()
    block = text.split(f"## Table {number}:")[1].split("\n## ")[0]
    lines = [line for line in block.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    return pd.DataFrame(rows, columns=header)


def mean_of(cell: str) -> float:
    return float(cell.split("+-")[0])


def paper_sizes(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if re.fullmatch(r"[\d,]+", c)]


# --- ours -------------------------------------------------------------------------------------------------


def cells(summary: pd.DataFrame, size: int, by: list[str], metric: str = "test_nll") -> pd.DataFrame:
    """mean and std over seeds of `metric` at `size`, per `by`."""
    at = rows_at_size(summary, size)
    return at.groupby(by)[metric].agg(["mean", "std", "count"])


def gains(summary: pd.DataFrame, size: int | None, by: list[str], metric: str = "test_nll") -> pd.DataFrame:
    """Paired gain against Random per (by..., heuristic); size None: on the AUBC of the whole curve."""
    if size is None:
        frame = stats.per_job_curves(summary, [*by, "heuristic", "seed"], (metric,))
        return stats.paired_against(frame, f"aubc_{metric}", by, higher_is_better=False).set_index(
            [*by, "heuristic"])
    at = rows_at_size(summary, size)
    out = stats.paired_against(at, metric, by, higher_is_better=False).set_index([*by, "heuristic"])
    out["read_at"] = at.groupby([*by, "heuristic"])["labelled"].max().reindex(out.index)
    out["size"] = size
    return out


def fmt(mean: float, std: float | None = None, digits: int = 3) -> str:
    if pd.isna(mean):
        return "-"
    return f"{mean:.{digits}f}" if std is None or pd.isna(std) else f"{mean:.{digits}f} +- {std:.{digits}f}"


def fmt_gain(row: pd.Series) -> str:
    """'+0.045 [+0.030, +0.060] p=0.003': the paired mean gain, its 95% interval and the t-test."""
    p = "p<0.001" if row["p_value"] < 0.001 else f"p={row['p_value']:.3f}"
    where = f" @{int(row['read_at'])}" if "read_at" in row and row["read_at"] != row["size"] else ""
    return f"{row['mean']:+.3f} [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}] {p}{where}"


def significant(row: pd.Series) -> bool:
    return bool(row["p_value"] < stats.ALPHA)


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def joined(values, spec: str = "+.3f") -> str:
    """'+0.045 / +0.030 / ...'"""
    return " / ".join(format(v, spec) for v in values)


NOTES: list[tuple[str, str, str]] = []  # (finding, scale, verdict), collected while rendering


def note(finding: str, scale: str, text: str) -> str:
    """Record a verdict for the summary table; returns it for the sentence that states it."""
    NOTES.append((finding, scale, text))
    return text


def verdict(flags: list[bool]) -> str:
    """yes (all), no (none), or partly (k of n)."""
    if all(flags):
        return "yes"
    return "no" if not any(flags) else f"partly ({count_text(flags)})"


def count_text(flags: list[bool]) -> str:
    return f"{sum(flags)} of {len(flags)}"


# --- Table 1: label noise ---------------------------------------------------------------------------------


def noise_section() -> str:
    paper = paper_table(1)
    sizes = paper_sizes(paper)  # "5,000", ...
    ours = load("noise_cpu_paper_sizes")
    n_seeds = ours["seed"].nunique()
    ints = [int(s.replace(",", "")) for s in sizes]
    mine = {size: cells(ours, size, ["lambda", "heuristic"]) for size in ints}
    rows = []
    for _, r in paper.iterrows():
        lam, h = float(r["lambda"]), r["heuristic"].lower()
        row = [r["lambda"], r["heuristic"]]
        for label, size in zip(sizes, ints, strict=True):
            c = mine[size].loc[(lam, h)]
            row += [r[label], fmt(c["mean"], c["std"])]
        rows.append(row)
    header = ["lambda", "heuristic"] + [f"{s} {who}" for s in sizes for who in ("paper", "here")]
    out = [f"### Table 1, label noise: `noise_cpu_paper_sizes` ({n_seeds} seeds) at the paper's sizes\n",
           "Test NLL, mean +- std over seeds; the paper: VGG-16 fine-tuned, 100 per step; here: a head on frozen "
           "EfficientNet-Lite0 features, 500 per step, a quarter of the pool scored.\n",
           table(header, rows)]
    # the active gain, both sides
    paper_mean = {(float(r["lambda"]), r["heuristic"].lower(), s): mean_of(r[s]) for _, r in paper.iterrows()
                  for s in sizes}
    mine_gain = {size: gains(ours, size, ["lambda"]) for size in ints}
    rows = []
    for lam in sorted({k[0] for k in paper_mean}):
        for h in ("bald", "entropy"):
            row = [f"{lam:g}", NAMES[h]]
            for label, size in zip(sizes, ints, strict=True):
                row += [f"{paper_mean[(lam, 'random', label)] - paper_mean[(lam, h, label)]:+.2f}",
                        fmt_gain(mine_gain[size].loc[(lam, h)])]
            rows.append(row)
    out += ["Active gain NLL(Random) - NLL(heuristic) (positive: the heuristic helps). The paper's is the "
            "difference of its published means (2 decimals); ours is paired by seed: mean [95% CI] paired t-test.\n",
            table(header, rows)]
    out.append(noise_findings(paper_mean, sizes, mine_gain, ints, mine, "at the paper's sizes", PAPER_SIZES))
    return "\n".join(out)


def noise_findings(paper_mean: dict, sizes: list[str], mine_gain: dict, ints: list[int], mine: dict,
                   where: str, scale: str) -> str:
    lams = sorted({k[0] for k in paper_mean})
    low, high = lams[0], lams[-1]
    p_gain = {(lam, h): np.mean([paper_mean[(lam, "random", s)] - paper_mean[(lam, h, s)] for s in sizes])
              for lam in lams for h in ("bald", "entropy")}
    m_gain = {(lam, h): np.mean([mine_gain[s].loc[(lam, h), "mean"] for s in ints])
              for lam in lams for h in ("bald", "entropy")}
    beat_p = [paper_mean[(low, "random", s)] > paper_mean[(low, h, s)] for s in sizes for h in ("bald", "entropy")]
    beat_m = [mine_gain[s].loc[(low, h), "mean"] > 0 for s in ints for h in ("bald", "entropy")]
    sig_m = [significant(mine_gain[s].loc[(low, h)]) and mine_gain[s].loc[(low, h), "mean"] > 0
             for s in ints for h in ("bald", "entropy")]
    first = ints[0]
    bald_first = mine_gain[first].loc[(high, "bald")]
    p_bald_first = paper_mean[(high, "random", sizes[0])] - paper_mean[(high, "bald", sizes[0])]
    ent_best_p = [paper_mean[(high, "entropy", s)] < paper_mean[(high, "bald", s)] for s in sizes]
    ent_best_m = [mine[s].loc[(high, "entropy"), "mean"] < mine[s].loc[(high, "bald"), "mean"] for s in ints]
    worse_first = yes_no(bald_first["mean"] < 0)
    shrinks = [m_gain[(high, h)] < m_gain[(low, h)] for h in ("bald", "entropy")]
    shrink = ("yes" if all(shrinks) else "partly" if any(shrinks) else "no: the gain grows with noise") \
        if min(m_gain.values()) > 0 else "no: the gain turns negative"
    lines = [
        f"Findings of the paper, checked {where}:\n",
        f"- *BALD and Entropy beat Random without noise (Fig. 1).* Paper: {count_text(beat_p)} (heuristic, size) "
        f"cells. Here: {count_text(beat_m)}, significant (p < {stats.ALPHA}) at {count_text(sig_m)}. "
        f"Holds: {note('BALD and Entropy beat Random without noise (Fig. 1)', scale, yes_no(all(beat_m)))}.",
        f"- *The gain shrinks with noise but stays useful.* Mean BALD gain over the three sizes at lambda "
        f"{joined(lams, 'g')}: paper {joined(p_gain[(x, 'bald')] for x in lams)}, "
        f"here {joined(m_gain[(x, 'bald')] for x in lams)}; Entropy: paper "
        f"{joined(p_gain[(x, 'entropy')] for x in lams)}, here "
        f"{joined(m_gain[(x, 'entropy')] for x in lams)}. Holds here: "
        f"{'yes' if m_gain[(high, 'bald')] < m_gain[(low, 'bald')] and m_gain[(high, 'bald')] > 0 else 'no'} for BALD "
        f"(the gain {'shrinks' if m_gain[(high, 'bald')] < m_gain[(low, 'bald')] else 'does not shrink'}), "
        f"{'yes' if m_gain[(high, 'entropy')] < m_gain[(low, 'entropy')] else 'no'} for Entropy; it stays "
        f"positive: {yes_no(min(m_gain.values()) > 0)}. Overall: "
        f"{note('the gain shrinks with noise but stays useful (Table 1)', scale, shrink)}.",
        f"- *At lambda {high:g} and the first size BALD is worse than Random.* Paper: gain {p_bald_first:+.2f}. "
        f"Here: {fmt_gain(bald_first)}. Holds: "
        f"{note(f'BALD worse than Random at lambda {high:g}, first size (Table 1)', scale, worse_first)}.",
        f"- *Entropy is the best heuristic under noise (lambda {high:g}).* Entropy's NLL below BALD's at "
        f"{count_text(ent_best_p)} sizes in the paper, {count_text(ent_best_m)} here. Holds: "
        f"{note('Entropy is the best heuristic under noise (Table 1)', scale, verdict(ent_best_m))}.\n",
    ]
    return "\n".join(lines)


def noise_cpu_section() -> str:
    """scale=cpu: the same findings at 1,000 / 2,000 / 3,000 labels of a 10,000 pool (the sizes differ)."""
    paper = paper_table(1)
    sizes = paper_sizes(paper)
    paper_mean = {(float(r["lambda"]), r["heuristic"].lower(), s): mean_of(r[s]) for _, r in paper.iterrows()
                  for s in sizes}
    ours = load("noise_cpu")
    ints = sorted(set(int(x) for x in json.loads(ours["report_sizes"].iloc[0])))
    mine = {size: cells(ours, size, ["lambda", "heuristic"]) for size in ints}
    mine_gain = {size: gains(ours, size, ["lambda"]) for size in ints}
    aubc = gains(ours, None, ["lambda"])
    rows = [[f"{lam:g}", NAMES[h], *[fmt_gain(mine_gain[s].loc[(lam, h)]) for s in ints],
             fmt_gain(aubc.loc[(lam, h)])]
            for lam in sorted(ours["lambda"].unique()) for h in ("bald", "entropy")]
    header = ["lambda", "heuristic", *[f"{s:,} here" for s in ints], "AUBC here"]
    out = [f"### Label noise at `scale=cpu`: `noise_cpu` ({ours['seed'].nunique()} seeds)\n",
           f"The sizes differ from the paper's ({', '.join(f'{s:,}' for s in ints)} labels of a 10,000 pool against "
           f"{', '.join(sizes)} of 50,000), so only the gains and the findings are compared. Paired gain "
           "NLL(Random) - NLL(heuristic), mean [95% CI] paired t-test:\n",
           table(header, rows),
           noise_findings(paper_mean, sizes, mine_gain, ints, mine, "at the CPU scale (paper at its own sizes)", CPU)]
    return "\n".join(out)


# --- Table 3: class imbalance -----------------------------------------------------------------------------


BALD_ROBUST = "BALD beats Random at every size under imbalance (Table 3)"
ENTROPY_WORSE = "Entropy is worse than Random under imbalance (Table 3)"
GROWS = "the gain grows with the number of reduced classes (Table 3)"


def imbalance_section() -> str:
    paper = paper_table(3)
    sizes = paper_sizes(paper)
    ints = [int(s.replace(",", "")) for s in sizes]
    ours = load("imbalance_cpu_paper_sizes")
    seeds = sorted(ours["seed"].unique())
    # Delta = 0 is the lambda = 0 job of the noise sweep (the same job), on the same seeds
    base = load("noise_cpu_paper_sizes")
    base = base[(base["lambda"] == 0) & base["seed"].isin(seeds)]
    both = pd.concat([base, ours], ignore_index=True)
    mine = {size: cells(both, size, ["delta", "heuristic"]) for size in ints}
    mine_gain = {size: gains(both, size, ["delta"]) for size in ints}
    rows = []
    for _, r in paper.iterrows():
        rows.append([f"paper, CIFAR-100, Delta {r['Delta']}", r["heuristic"], *[r[s] for s in sizes]])
    for delta in sorted(both["delta"].unique()):
        for h in ("bald", "entropy", "random"):
            rows.append([f"here, CIFAR-10, Delta {delta}", NAMES[h],
                         *[fmt(mine[s].loc[(delta, h), "mean"], mine[s].loc[(delta, h), "std"]) for s in ints]])
    out = [f"### Table 3, class imbalance: `imbalance_cpu_paper_sizes` ({len(seeds)} seeds) at the paper's sizes\n",
           "The paper reduces Delta of CIFAR-100's 100 classes to 25%; here Delta = 5 of CIFAR-10's 10 (Delta = 0: the "
           "lambda = 0 jobs of `noise_cpu_paper_sizes`, the same seeds). NLL over 100 classes and over 10 are not on "
           "one scale: compare the gains and their signs, not the levels. Test NLL, mean +- std:\n",
           table(["data, Delta", "heuristic", *sizes], rows)]
    p_mean = {(int(r["Delta"]), r["heuristic"].lower(), s): mean_of(r[s]) for _, r in paper.iterrows() for s in sizes}
    deltas_p = sorted({k[0] for k in p_mean})
    rows = []
    for d in deltas_p:
        for h in ("bald", "entropy"):
            rows.append([f"paper, Delta {d}", NAMES[h],
                         *[f"{p_mean[(d, 'random', s)] - p_mean[(d, h, s)]:+.2f}" for s in sizes]])
    for d in sorted(both["delta"].unique()):
        for h in ("bald", "entropy"):
            rows.append([f"here, Delta {d}", NAMES[h], *[fmt_gain(mine_gain[s].loc[(d, h)]) for s in ints]])
    out += ["Active gain NLL(Random) - NLL(heuristic), the paper's from its means, ours paired by seed:\n",
            table(["data, Delta", "heuristic", *sizes], rows)]
    top = max(both["delta"].unique())
    bald_p = [p_mean[(d, "random", s)] > p_mean[(d, "bald", s)] for d in deltas_p for s in sizes]
    bald_m = [mine_gain[s].loc[(top, "bald")] for s in ints]
    ent_p = [p_mean[(d, "random", s)] < p_mean[(d, "entropy", s)] for d in deltas_p for s in sizes]
    ent_m = [mine_gain[s].loc[(top, "entropy"), "mean"] < 0 for s in ints]
    grow_p = [np.mean([p_mean[(d, "random", s)] - p_mean[(d, "bald", s)] for s in sizes]) for d in deltas_p]
    grow_m = [np.mean([mine_gain[s].loc[(d, "bald"), "mean"] for s in ints]) for d in sorted(both["delta"].unique())]
    bald_verdict = yes_no(all(g["mean"] > 0 for g in bald_m)) + (
        "" if all(significant(g) for g in bald_m) else ", in sign (not significant at every size)")
    cpu = load("imbalance_cpu")
    cpu_sizes = sorted(set(json.loads(cpu["report_sizes"].iloc[0])))
    cpu_gain = {s: gains(cpu, s, ["delta"]) for s in cpu_sizes}
    cpu_deltas = sorted(cpu["delta"].unique())
    grow_cpu = [np.mean([cpu_gain[s].loc[(d, "bald"), "mean"] for s in cpu_sizes]) for d in cpu_deltas]
    bald_cpu = [cpu_gain[s].loc[(d, "bald")] for d in cpu_deltas if d > 0 for s in cpu_sizes]
    bald_cpu_verdict = yes_no(all(g["mean"] > 0 for g in bald_cpu)) + (
        "" if all(significant(g) for g in bald_cpu) else ", in sign (not significant at every size)")
    ent_cpu = [cpu_gain[s].loc[(d, "entropy"), "mean"] < 0 for d in cpu_deltas if d > 0 for s in cpu_sizes]
    out += [
        "Findings of the paper, checked:\n",
        f"- *BALD is robust to imbalance and beats Random at every size.* Paper: {count_text(bald_p)} cells. Here "
        f"(Delta {top}): {count_text([g['mean'] > 0 for g in bald_m])} sizes, significant at "
        f"{count_text([significant(g) and g['mean'] > 0 for g in bald_m])} ({len(seeds)} seeds). Holds: "
        f"{note(BALD_ROBUST, PAPER_SIZES, bald_verdict)}; at `scale=cpu` (Delta "
        f"{', '.join(str(d) for d in cpu_deltas if d > 0)}): {count_text([g['mean'] > 0 for g in bald_cpu])} cells, "
        f"significant at {count_text([significant(g) and g['mean'] > 0 for g in bald_cpu])}: "
        f"{note(BALD_ROBUST, CPU, bald_cpu_verdict)}.",
        f"- *Entropy is worse than Random everywhere.* Paper: {count_text(ent_p)} cells. Here (Delta {top}): "
        f"{count_text(ent_m)} sizes; at `scale=cpu` (Delta {', '.join(str(d) for d in cpu_deltas if d > 0)}): "
        f"{count_text(ent_cpu)} cells. Holds: "
        f"{note(ENTROPY_WORSE, PAPER_SIZES, yes_no(all(ent_m)))} at the paper's sizes, "
        f"{note(ENTROPY_WORSE, CPU, yes_no(all(ent_cpu)))} at `scale=cpu`.",
        f"- *The gain of BALD over Random grows with the number of reduced classes.* Mean BALD gain over the sizes, "
        f"paper at Delta {' / '.join(str(d) for d in deltas_p)}: {' / '.join(f'{g:+.3f}' for g in grow_p)} (its own "
        f"table {'rises' if all(np.diff(grow_p) > 0) else 'does not rise steadily'}); here at Delta "
        f"{' / '.join(str(d) for d in sorted(both['delta'].unique()))}: {' / '.join(f'{g:+.3f}' for g in grow_m)}; at "
        f"`scale=cpu` ({cpu['seed'].nunique()} seeds, {', '.join(f'{s:,}' for s in cpu_sizes)} labels) at Delta "
        f"{' / '.join(str(d) for d in cpu_deltas)}: {' / '.join(f'{g:+.3f}' for g in grow_cpu)}. Holds: "
        f"{note(GROWS, PAPER_SIZES, yes_no(all(np.diff(grow_m) > 0)))} at the paper's sizes, "
        f"{note(GROWS, CPU, yes_no(all(np.diff(grow_cpu) > 0)))} at `scale=cpu`.\n",
    ]
    return "\n".join(out)


# --- Table 2: query size ----------------------------------------------------------------------------------


def query_size_section() -> str:
    paper = paper_table(2)
    sizes = paper_sizes(paper)
    first = paper.columns[0]
    p_random = {s: mean_of(paper.loc[paper[first] == "Random", s].iloc[0]) for s in sizes}
    p_rows = paper[paper[first] != "Random"]
    p_gain = {}
    for _, r in p_rows.iterrows():
        q, h = re.match(r"Q = (\d+), (\w+)", r[first]).groups()
        for s in sizes:
            p_gain[(int(q), h.lower(), s)] = p_random[s] - mean_of(r[s])
    ours = load("query_size_cpu")
    ints = sorted(set(json.loads(ours["report_sizes"].iloc[0])))
    mine_gain = {s: gains(ours, s, ["query_size"]) for s in ints}
    aubc = gains(ours, None, ["query_size"])
    rows = []
    for q in sorted({k[0] for k in p_gain}):
        for h in ("bald", "entropy"):
            rows.append([f"paper, Q = {q}", NAMES[h], *[f"{p_gain[(q, h, s)]:+.2f}" for s in sizes], "-"])
    for q in sorted(ours["query_size"].unique()):
        for h in ("bald", "entropy", "batchbald", "power_bald"):
            if (q, h) in aubc.index:
                rows.append([f"here, Q = {q}", NAMES[h], *[fmt_gain(mine_gain[s].loc[(q, h)]) for s in ints],
                             fmt_gain(aubc.loc[(q, h)])])
    qs_p, qs_m = sorted({k[0] for k in p_gain}), sorted(ours["query_size"].unique())
    mid_p, mid_m = sizes[1], ints[1]
    gap_p = [p_gain[(q, "bald", mid_p)] - p_gain[(q, "entropy", mid_p)] for q in qs_p]
    gap_m = [mine_gain[mid_m].loc[(q, "bald"), "mean"] - mine_gain[mid_m].loc[(q, "entropy"), "mean"] for q in qs_m]
    aubc_bald = [aubc.loc[(q, "bald"), "mean"] for q in qs_m]
    if all(np.diff(np.abs(gap_m)) < 0):
        gap_verdict = "yes"
    elif max(abs(g) for g in gap_m) < 0.02:
        widest = max(abs(g) for g in gap_m)
        gap_verdict = f"no: here BALD and Entropy are within {widest:.3f} at every Q, no gap to narrow"
    else:
        gap_verdict = "no"
    if min(aubc_bald) < 0:
        weakens = "yes"
    elif aubc_bald[-1] < aubc_bald[0]:
        weakens = "partly: the gain falls with Q but stays positive"
    else:
        weakens = "no: the gain does not fall with Q"
    out = [f"### Table 2, query size: `query_size_cpu` ({ours['seed'].nunique()} seeds), sizes differ\n",
           f"Here the labelled sizes are {', '.join(f'{s:,}' for s in ints)} of a 10,000 pool (the paper: "
           f"{', '.join(sizes)} of 50,000) and Q = {', '.join(str(q) for q in qs_m)} (the paper: "
           f"{', '.join(str(q) for q in qs_p)}): the gains are compared, column by column in order. Active gain "
           "NLL(Random) - NLL(heuristic); the paper's Random row is shared by every Q. A cell read @N was read at "
           "N labels (Q = 1,000 steps 500, 1,500, 2,500, 3,000; at 500 every heuristic has the same labels).\n",
           table(["", "heuristic", *[f"{a} / {b:,}" for a, b in zip(sizes, ints, strict=True)], "AUBC"], rows),
           "Findings of the paper, checked:\n",
           f"- *BALD weakens at large Q (worse than Random at {sizes[0]} labels with Q = {qs_p[-1]}).* Paper: BALD's "
           f"gain at {sizes[0]} by Q {' / '.join(str(q) for q in qs_p)}: "
           f"{joined((p_gain[(q, 'bald', sizes[0])] for q in qs_p), '+.2f')}. Here BALD's AUBC gain by Q "
           f"{' / '.join(str(q) for q in qs_m)}: {' / '.join(f'{g:+.3f}' for g in aubc_bald)}, positive at every Q. "
           f"Holds: {note('BALD weakens at large Q (Table 2)', CPU, weakens)}"
           f" (Q up to {qs_m[-1]:,} of a 10,000 pool; the paper's Q = 2,000 is not run).",
           f"- *The BALD/Entropy gap at the middle size narrows as Q grows.* Gap gain(BALD) - gain(Entropy): paper at "
           f"{mid_p} by Q {' / '.join(str(q) for q in qs_p)}: {' / '.join(f'{g:+.2f}' for g in gap_p)}; here at "
           f"{mid_m:,} by Q {' / '.join(str(q) for q in qs_m)}: {' / '.join(f'{g:+.3f}' for g in gap_m)}. Holds: "
           f"{note('the BALD/Entropy gap narrows as Q grows (Table 2)', CPU, gap_verdict)}.\n"]
    return "\n".join(out)


# --- figures: convergence, pool size ----------------------------------------------------------------------


def convergence_section() -> str:
    ours = load("convergence_cpu")
    ints = sorted(set(json.loads(ours["report_sizes"].iloc[0])))
    mine_gain = {s: gains(ours, s, ["epochs"]) for s in ints}
    aubc = gains(ours, None, ["epochs"])
    epochs = sorted(ours["epochs"].unique())
    rows = [[str(e), *[fmt_gain(mine_gain[s].loc[(e, "bald")]) for s in ints], fmt_gain(aubc.loc[(e, "bald")])]
            for e in epochs]
    neg = [e for e in epochs if aubc.loc[(e, "bald"), "mean"] < 0]
    pos = [e for e in epochs if aubc.loc[(e, "bald"), "mean"] > 0]
    nll_10 = cells(ours, ints[-1], ["epochs", "heuristic"])
    finding = "under-fitted: negative gain; over-fitted: suffers, still gains (Fig. 2, 4)"
    holds = yes_no(bool(neg) and neg == epochs[:len(neg)] and bool(pos))
    most = epochs[-1]
    return "\n".join([
        f"### Fig. 2 / Fig. 4, under- and over-fitting: `convergence_cpu` ({ours['seed'].nunique()} seeds)\n",
        "The paper shows this as a figure (no table): the active gain NLL(Random) - NLL(BALD) is negative for "
        "under-fitted models; over-fitted ones suffer but still gain. Ours, paired by seed, by fixed epochs per step "
        "(no minimum of updates):\n",
        table(["epochs", *[f"{s:,}" for s in ints], "AUBC"], rows),
        f"Holds: {note(finding, CPU, holds)}: the gain over the whole curve is "
        f"negative at {', '.join(str(e) for e in neg) or 'no'} epochs and positive at "
        f"{', '.join(str(e) for e in pos) or 'no'}. At {most} epochs BALD's NLL at {ints[-1]:,} labels is "
        f"{nll_10.loc[(most, 'bald'), 'mean']:.3f} against {nll_10.loc[(10, 'bald'), 'mean']:.3f} at 10 epochs "
        f"(over-fitting), and Random's {nll_10.loc[(most, 'random'), 'mean']:.3f} against "
        f"{nll_10.loc[(10, 'random'), 'mean']:.3f}.\n"])


def pool_section() -> str:
    ours = load("pool_size_cpu")
    ints = sorted(set(json.loads(ours["report_sizes"].iloc[0])))
    fractions = sorted(ours["pool_fraction"].unique(), reverse=True)
    full = fractions[0]
    curves = stats.per_job_curves(ours, ["pool_fraction", "seed"], ("test_nll",))
    timing = ours[ours["time_acquisition"] > 0].groupby("pool_fraction")["time_acquisition"].mean()

    results: list[stats.Paired] = []

    def versus_full(frame: pd.DataFrame, column: str, fraction: float) -> str:
        a = frame[frame["pool_fraction"] == full].set_index("seed")[column]
        b = frame[frame["pool_fraction"] == fraction].set_index("seed")[column].reindex(a.index)
        result = stats.paired_test(a.to_numpy(), b.to_numpy())  # NLL(full pool) - NLL(fraction)
        results.append(result)
        return f"{result.mean:+.3f} [{result.ci_low:+.3f}, {result.ci_high:+.3f}] p={result.p_value:.3f}"

    rows = []
    for f in fractions[1:]:
        row = [f"{f:g}"]
        for s in ints:
            row.append(versus_full(rows_at_size(ours, s), "test_nll", f))
        row += [versus_full(curves, "aubc_test_nll", f), f"{timing[full] / timing[f]:.1f}x"]
        rows.append(row)
    finding = "a part of the pool (down to 25%) changes nothing, faster (Fig. 5)"
    worse = sum(r.significant and r.mean < 0 for r in results)
    better = sum(r.significant and r.mean > 0 for r in results)
    return "\n".join([
        f"### Fig. 5, scoring part of the pool: `pool_size_cpu` (BALD, {ours['seed'].nunique()} seeds)\n",
        "The paper (on CIFAR-100): scoring a random part of the pool, down to under 25%, changes no heuristic's "
        "performance and makes uncertainty estimation about 3x faster. Ours: NLL(whole pool) - NLL(fraction), paired "
        "by seed (positive: the fraction is better), and the acquisition speed-up:\n",
        table(["fraction", *[f"{s:,}" for s in ints], "AUBC", "acquisition speed-up"], rows),
        f"Holds: {note(finding, CPU, yes_no(worse == 0))}: a part of the pool is significantly worse (p < 0.05) "
        f"in {worse} of "
        f"{len(results)} cells and better in {better} (about {0.05 * len(results):.1f} of {len(results)} tests at "
        f"p < 0.05 are expected by chance); the acquisition is {timing[full] / timing[0.25]:.1f}x faster at 25%.\n"])


def summary_table() -> str:
    """One row per finding of the paper: the verdict at each scale, from the sections' notes."""
    scales = [PAPER_SIZES, CPU]
    findings: dict[str, dict[str, str]] = {}
    for finding, scale, text in NOTES:
        for one in scales:
            if one in scale:
                findings.setdefault(finding, {})[one] = text
    rows = [[finding, *[by_scale.get(one, "not run") for one in scales]] for finding, by_scale in findings.items()]
    return table(["finding of the paper", *[f"holds at {one}" for one in scales]], rows)


def render() -> str:
    NOTES.clear()
    sections = [noise_section(), noise_cpu_section(), imbalance_section(), query_size_section(),
                convergence_section(), pool_section()]
    parts = [
        "## The paper side by side\n",
        "Generated by `python -m alrun.report.side_by_side --write` from the committed `summary.csv` files and the "
        "paper's Tables 1-3 (`paper_tables.md`); do not edit by hand. The paper's numbers are means +- std over its "
        "5 runs with 2 decimals; a gain on its side is the difference of its published means (its runs are not "
        "paired in the tables). Ours are paired by seed: mean [95% CI, t distribution] and the paired t-test's p.\n",
        "Each finding of the paper and whether it holds here (the sections below give the numbers; "
        "\"not run\": no reference run of that study at that scale):\n",
        summary_table(),
        *sections,
        "### Fig. 3 / Fig. 6, MIO-TCD\n",
        "Not compared: there is no reference run of the MIO-TCD study (`+experiment=miotcd` needs the MIO-TCD "
        "classification data, which was not on the machine the reference runs were made on).\n",
    ]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="replace the block in results/README.md")
    parser.add_argument("--results", type=Path, default=None, help="the results folder (default: the checkout's)")
    args = parser.parse_args(argv)
    if args.results is not None:
        global RESULTS_DIR
        RESULTS_DIR = args.results
    text = render()
    if not args.write:
        print(text)
        return 0
    readme = RESULTS_DIR / "README.md"
    content = readme.read_text()
    if START not in content or END not in content:
        print(f"{readme} has no {START} ... {END} block.", file=sys.stderr)
        return 2
    head, rest = content.split(START, 1)
    readme.write_text(head + START + "\n" + text + "\n" + END + rest.split(END, 1)[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
