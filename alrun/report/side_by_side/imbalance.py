"""Table 3, class imbalance on CIFAR-100 (`+experiment=imbalance`).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from alrun.report.side_by_side.common import (
    CPU,
    NAMES,
    PAPER_SIZES,
    cells,
    count_text,
    fmt,
    fmt_gain,
    gains,
    load,
    mean_of,
    note,
    paper_sizes,
    paper_table,
    significant,
    table,
    yes_no,
)

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
