"""Table 2 (query size), Fig. 2/4 (convergence) and the pool subsampling finding.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd

from alrun.report import rows_at_size, stats
from alrun.report.side_by_side.common import (
    CPU,
    NAMES,
    cells,
    fmt_gain,
    gains,
    joined,
    load,
    mean_of,
    note,
    paper_sizes,
    paper_table,
    table,
    yes_no,
)

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
