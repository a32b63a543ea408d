"""The learning curves as a PNG (matplotlib): one line per group, a band over seeds."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from alrun.report.frames import METRIC_TITLES


def plot_curves(summary: pd.DataFrame, groups: list[str], path: Path, metrics=("test_nll", "test_acc")) -> None:
    """Learning curves against labelled size: one line per group, a band of +- 1 std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics), 4.2), squeeze=False)
    keyed = summary.assign(_group=summary[groups].astype(str).agg(", ".join, axis=1) if groups else "all")
    # colour = heuristic, line style = the other swept settings, so a study's grid stays readable
    others = [g for g in groups if g != "heuristic"]
    heuristic_names = sorted(summary["heuristic"].astype(str).unique()) if "heuristic" in groups else []
    other_values = sorted(summary[others].astype(str).agg(", ".join, axis=1).unique()) if others else []
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = ["-", "--", ":", "-.", (0, (5, 1)), (0, (1, 3))]

    def style_of(part: pd.DataFrame) -> dict:
        first = part.iloc[0]
        out: dict = {}
        if heuristic_names:
            out["color"] = colours[heuristic_names.index(str(first["heuristic"])) % len(colours)]
        if other_values:
            key = ", ".join(str(first[g]) for g in others)
            out["linestyle"] = styles[other_values.index(key) % len(styles)]
        return out

    for ax, metric in zip(axes[0], metrics, strict=True):
        for label, part in keyed.groupby("_group", sort=True):
            stats = part.groupby("labelled")[metric].agg(["mean", "std", "count"]).reset_index()
            line = ax.plot(stats["labelled"], stats["mean"], label=label, linewidth=1.6, **style_of(part))[0]
            std = stats["std"].fillna(0.0)
            ax.fill_between(stats["labelled"], stats["mean"] - std, stats["mean"] + std,
                            color=line.get_color(), alpha=0.18, linewidth=0)
        ax.set_xlabel("labelled items")
        ax.set_ylabel(METRIC_TITLES.get(metric, metric))
        ax.grid(alpha=0.3)
    axes[0][0].legend(title=", ".join(groups) if groups else None, fontsize=8)
    n_seeds = summary.groupby(groups)["job"].nunique().min() if groups else summary["job"].nunique()
    fig.suptitle(f"Mean over seeds (at least {n_seeds} per line), band = +- 1 std")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
