"""Table 1 where the model memorises the noisy labels (issue #32): the memorising head (`noise_memorise_cpu`)
beside the frozen-feature head trained as `scale=cpu` trains it (`noise_frozen_cpu`), the same data,
features, sizes and seeds, each finding of the paper's Table 1 with paired intervals, and how far each run
fits the wrong labels."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd

from alrun.report import rows_at_size
from alrun.report.side_by_side import common
from alrun.report.side_by_side.common import NAMES, load, mean_of, paper_sizes, paper_table, table
from alrun.report.stats import Paired, paired_test

MEMORISING, FROZEN = "noise_memorise_cpu", "noise_frozen_cpu"
HEURISTICS = ("bald", "entropy")


def by_seed(summary: pd.DataFrame, sizes: list[int], metric: str) -> pd.DataFrame:
    """`metric` per (lambda, heuristic, seed) [rows] at each of `sizes` [columns]."""
    frame = pd.concat([rows_at_size(summary, size).assign(size=size) for size in sizes])
    return frame.pivot_table(index=["lambda", "heuristic", "seed"], columns="size", values=metric)


def seed_gain(nll: pd.DataFrame, lam: float, heuristic: str, sizes: list[int], versus: str = "random"
              ) -> pd.Series:
    """Per seed, NLL(versus) - NLL(heuristic) averaged over `sizes` (positive: the heuristic is better)."""
    return (nll.loc[(lam, versus)][sizes] - nll.loc[(lam, heuristic)][sizes]).mean(axis=1)


def interval(per_seed: pd.Series) -> Paired:
    """The mean of per-seed values with its 95% t interval (a one-sample paired test against 0)."""
    values = per_seed.to_numpy(dtype=np.float64)
    return paired_test(values, np.zeros_like(values))


def cell(result: Paired) -> str:
    return f"{result.mean:+.3f} [{result.ci_low:+.3f}, {result.ci_high:+.3f}]"


def agreement(paper: float, result: Paired) -> str:
    """Whether a run shows the paper's direction: by its interval first, then by its mean."""
    if result.ci_low > 0 or result.ci_high < 0:
        return "yes" if np.sign(result.mean) == np.sign(paper) else "no, the opposite (interval excludes 0)"
    return "same sign, interval includes 0" if np.sign(result.mean) == np.sign(paper) else \
        "no (opposite sign, interval includes 0)"


def findings(nll: pd.DataFrame, sizes: list[int], lams: list[float]) -> dict[str, Paired]:
    """Each Table 1 finding as one per-seed quantity with its interval, its sign as the paper's claim reads."""
    low, high = lams[0], lams[-1]
    out = {}
    for h in HEURISTICS:
        for lam in lams:
            out[f"{h} gain {lam:g}"] = interval(seed_gain(nll, lam, h, sizes))
        out[f"{h} shrink"] = interval(seed_gain(nll, high, h, sizes) - seed_gain(nll, low, h, sizes))
    out["bald first"] = interval(seed_gain(nll, high, "bald", sizes[:1]))
    out["entropy over bald"] = interval(seed_gain(nll, high, "entropy", sizes, versus="bald"))
    return out


def memorisation_rows(name: str, summary: pd.DataFrame, sizes: list[int]) -> list[list[str]]:
    """How far a run's models fit the wrong labels, per noisy lambda: the means over heuristics and seeds."""
    rows = []
    for lam in sorted(x for x in summary["lambda"].unique() if x > 0):
        part = summary[summary["lambda"] == lam]
        at = {size: rows_at_size(part, size) for size in sizes}

        def means(column: str, spec: str, at: dict = at) -> str:
            return " / ".join(format(at[s][column].mean(), spec) for s in sizes)

        rows.append([f"`{name}`", f"{lam:g}", means("noisy_labelled", ".0f"), means("train_acc", ".3f"),
                     means("noisy_fit_acc", ".3f"), means("noisy_true_acc", ".3f")])
    return rows


def cpu_prediction() -> str:
    """gpu_check's predicted Table 1 time as benchmarks/RESULTS.md last recorded it (a CPU run), for the
    sentence; "" when the checkout has none."""
    path = common.RESULTS_DIR.parent / "benchmarks" / "RESULTS.md"
    text = path.read_text() if path.is_file() else ""
    found = re.search(r"gpu_check on (.*?) \(\d+ torch threads\)"
                      r".*?Table 1 at scale=paper, predicted, amp=off\s+([\d,.]+ h)", text, re.S)
    return f"; the last run recorded in benchmarks/RESULTS.md, on {found[1].strip()}, predicts {found[2]}" \
        if found else ""


def memorise_section() -> str:
    paper = paper_table(1)
    labels = paper_sizes(paper)
    paper_nll = {(float(r["lambda"]), r["heuristic"].lower(), s): mean_of(r[s]) for _, r in paper.iterrows()
                 for s in labels}
    runs = {FROZEN: load(FROZEN), MEMORISING: load(MEMORISING)}
    sizes = sorted(set(int(x) for x in json.loads(runs[FROZEN]["report_sizes"].iloc[0])))
    lams = sorted(float(x) for x in runs[FROZEN]["lambda"].unique())
    low, high = lams[0], lams[-1]
    seeds = {name: frame["seed"].nunique() for name, frame in runs.items()}
    ours = {name: findings(by_seed(frame, sizes, "test_nll"), sizes, lams) for name, frame in runs.items()}

    def paper_gain(lam: float, h: str, versus: str = "random", at: list[str] = labels) -> float:
        return float(np.mean([paper_nll[(lam, versus, s)] - paper_nll[(lam, h, s)] for s in at]))

    paper_value = {f"{h} gain {lam:g}": paper_gain(lam, h) for h in HEURISTICS for lam in lams}
    for h in HEURISTICS:
        paper_value[f"{h} shrink"] = paper_gain(high, h) - paper_gain(low, h)
    paper_value["bald first"] = paper_gain(high, "bald", at=labels[:1])
    paper_value["entropy over bald"] = paper_gain(high, "entropy", versus="bald")
    words = {f"{h} gain {lam:g}": f"{NAMES[h]} gain at lambda {lam:g}" for h in HEURISTICS for lam in lams}
    words.update({f"{h} shrink": f"{NAMES[h]}: the gain shrinks with noise (gain at {high:g} minus at {low:g})"
                  for h in HEURISTICS})
    words["bald first"] = f"BALD worse than Random at lambda {high:g}, first size"
    words["entropy over bald"] = f"Entropy best under noise: NLL(BALD) - NLL(Entropy) at lambda {high:g}"
    rows = [[words[key], f"{paper_value[key]:+.3f}", cell(ours[FROZEN][key]), agreement(paper_value[key],
             ours[FROZEN][key]), cell(ours[MEMORISING][key]), agreement(paper_value[key], ours[MEMORISING][key])]
            for key in words]
    fig = [row for name, frame in runs.items() for row in memorisation_rows(name, frame, sizes)]
    bald = {name: ours[name]["bald shrink"] for name in runs}
    shrinks = {name: r.ci_high < 0 for name, r in bald.items()}
    sized = ", ".join(f"{s:,}" for s in sizes)
    out = [
        f"### Table 1 where the model memorises: `{MEMORISING}` beside `{FROZEN}` ({seeds[MEMORISING]} and "
        f"{seeds[FROZEN]} seeds)\n",
        f"Both runs: the `noise` study at `scale=cpu` (frozen EfficientNet-Lite0 features of the same CIFAR-10 "
        f"images, 500 initial labels, 250 per step, read at {sized} labels), the same seeds, so the same initial "
        "labels and the same wrong labels; only the head's training differs (`+experiment=noise_memorise`: "
        "at least 2,000 gradient steps a step, 512 wide, no weight decay; the frozen run trains the scale's "
        "300). Each number is per seed first, then the mean over seeds with its 95% t interval; the paper's "
        "is the difference of its published means at its own sizes (5,000 / 10,000 / 20,000). A gain is "
        "NLL(Random) - NLL(heuristic), averaged over the three sizes.\n",
        "How far each run fits the wrong labels (means over heuristics and seeds, at "
        f"{' / '.join(f'{s:,}' for s in sizes)} labels): `noisy_fit_acc`, the share of the wrongly labelled "
        "items the model predicts as labelled (1 = memorised); `noisy_true_acc`, the share it predicts as their "
        "true class.\n",
        table(["run", "lambda", "wrong labels", "train accuracy", "noisy_fit_acc", "noisy_true_acc"], fig),
        table(["finding of Table 1", "paper", f"`{FROZEN}`", "holds", f"`{MEMORISING}`", "holds"], rows),
    ]
    said = []
    for name, label in ((FROZEN, "the frozen-feature head"), (MEMORISING, "the memorising head")):
        r = bald[name]
        how = ("shrinks with noise (its interval below 0), as in the paper" if shrinks[name] else
               "grows with noise (its interval above 0), unlike the paper" if r.ci_low > 0 else
               "changes with noise by no more than its interval can tell")
        said.append(f"With {label} BALD's gain {how}: gain at {high:g} minus gain at {low:g} {cell(r)} "
                    f"(the paper {paper_value['bald shrink']:+.3f}).")
    follows = shrinks[MEMORISING] and not shrinks[FROZEN]
    out.append(" ".join(said) + " " + (
        "The paper's noise finding follows memorisation here." if follows else
        "Both runs show the paper's finding, memorised or not." if shrinks[FROZEN] and shrinks[MEMORISING] else
        "So memorising the wrong labels alone does not bring back the paper's finding that BALD's gain shrinks "
        "with noise.") + "\n")
    if not shrinks[MEMORISING]:
        out.append(
            "What else differs from the paper: its VGG-16 is fine-tuned end to end (the trunk learns the wrong "
            "labels too, here it is frozen), it labels 100 per step (here 250), trains on augmented images (here "
            "fixed features) and reads the NLL at 5,000-20,000 labels of 50,000 (here 1,000-3,000 of 10,000). "
            "`alrun +experiment=noise scale=paper dataset.download=true` on a GPU runs the paper's own setting; "
            "`python -m benchmarks.gpu_check` on that GPU prints its predicted time (its line \"Table 1 at "
            f"scale=paper, predicted\"{cpu_prediction()}).\n")
    return "\n".join(out)
