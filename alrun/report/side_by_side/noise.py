"""Table 1, label noise: the paper's cells beside the reference runs at the paper's sizes and at `scale=cpu`.
"""

from __future__ import annotations

import json

import numpy as np

from alrun.report import stats
from alrun.report.side_by_side.common import (
    CPU,
    NAMES,
    PAPER_SIZES,
    cells,
    count_text,
    fmt,
    fmt_gain,
    gains,
    joined,
    load,
    mean_of,
    note,
    paper_sizes,
    paper_table,
    significant,
    table,
    verdict,
    yes_no,
)

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
