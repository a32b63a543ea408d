"""The learning curves as a PNG (matplotlib): a band over seeds, one line per heuristic, and one row of panels per
combination of the other settings when more than the heuristic varies (20 lines in one panel cannot be read)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from alrun.report.frames import METRIC_TITLES

PANEL_SIZE = (5.2, 3.4)  # inches per panel: two metrics side by side fit a page at 100 dpi


def _shown(value: object) -> str:
    """4 for 4.0 (a setting read back from CSV), the value's text otherwise."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def split_keys(groups: list[str]) -> tuple[str | None, list[str]]:
    """(the setting each line of a panel stands for, the settings that make the panels): the heuristic draws
    the lines when it varies (else the last varying setting), each combination of the others is a row of
    panels; with one setting varying, one row."""
    if not groups:
        return None, []
    line = "heuristic" if "heuristic" in groups else groups[-1]
    return line, [g for g in groups if g != line]


def plot_curves(summary: pd.DataFrame, groups: list[str], path: Path, metrics=("test_nll", "test_acc")) -> None:
    """Learning curves against labelled size: one column of panels per metric, one row per combination of the
    settings other than the heuristic, a line per heuristic with a band of +- 1 std over seeds; the legend sits
    outside the panels, and the figure is cropped to what it holds, so no title is cut."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    line_key, facet_keys = split_keys(groups)
    facets = ([tuple(k) if isinstance(k, tuple) else (k,) for k, _ in summary.groupby(facet_keys, sort=True)]
              if facet_keys else [()])
    lines = sorted(summary[line_key].astype(str).unique()) if line_key else ["all"]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = ["-", "--", ":", "-."]
    from matplotlib.ticker import MaxNLocator

    # constrained layout leaves room for the figure's title and the legend outside the panels (tight_layout
    # lets the title overlap the first row's titles)
    fig, axes = plt.subplots(len(facets), len(metrics), squeeze=False, sharex=True, layout="constrained",
                             figsize=(PANEL_SIZE[0] * len(metrics), PANEL_SIZE[1] * len(facets) + 0.6))
    for row, facet in enumerate(facets):
        part = summary
        for key, value in zip(facet_keys, facet, strict=True):
            part = part[part[key] == value]
        facet_title = ", ".join(f"{k}={_shown(v)}" for k, v in zip(facet_keys, facet, strict=True))
        for col, metric in enumerate(metrics):
            ax = axes[row][col]
            for i, name in enumerate(lines):
                one = part[part[line_key].astype(str) == name] if line_key else part
                if one.empty:
                    continue
                stats = one.groupby("labelled")[metric].agg(["mean", "std"]).reset_index()
                colour = colours[i % len(colours)]
                style = styles[(i // len(colours)) % len(styles)]  # past ten lines, the colours repeat dashed
                ax.plot(stats["labelled"], stats["mean"], label=name, color=colour, linestyle=style, linewidth=1.6)
                std = stats["std"].fillna(0.0)
                ax.fill_between(stats["labelled"], stats["mean"] - std, stats["mean"] + std, color=colour,
                                alpha=0.18, linewidth=0)
            ax.set_title(f"{METRIC_TITLES.get(metric, metric)}" + (f"  ({facet_title})" if facet_title else ""),
                         fontsize=10)
            ax.set_ylabel(METRIC_TITLES.get(metric, metric))
            ax.grid(alpha=0.3)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # labelled sizes are counts
            if row == len(facets) - 1:
                ax.set_xlabel("labelled items")
    handles, labels = [], []
    for ax in axes.flat:  # every line once, from whichever panel drew it
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    if line_key:
        fig.legend(handles, labels, title=line_key, loc="outside right upper", fontsize=9, frameon=False)
    n_seeds = summary.groupby(groups)["job"].nunique().min() if groups else summary["job"].nunique()
    fig.suptitle(f"Mean over seeds (at least {n_seeds} per line), band = +- 1 std")
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100, bbox_inches="tight")  # the legend outside the panels is kept in the picture
    plt.close(fig)
    tmp.replace(path)
