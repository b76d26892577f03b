"""Figures of notebook 01b_far_species: transfer balanced accuracy with bootstrap intervals (dummy
and ceiling marked), and cell-type trees with any species' colours."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from scprior.plotting.figures import figure_title

_PALETTE = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def transfer_intervals(intervals: pd.DataFrame, per_seed: pd.DataFrame, *, directions: Sequence[str],
                       labels: Mapping[str, str] | None = None, baselines: Sequence[str] = (),
                       dataset: str = "", simulated: bool = False) -> plt.Figure:
    """One panel per direction: balanced accuracy per method (bar = estimate over seeds, whisker =
    95% bootstrap interval over target cells, dots = single seeds); dummy and ceiling as lines.

    ``intervals``: index (method, direction), columns ``bal``, ``bal_low``, ``bal_high``, ``dummy``,
    ``ceiling``; ``per_seed``: rows with ``method`` and ``transfer_bal_acc[<direction>]``.
    """
    lab = labels or {}
    methods = list(dict.fromkeys(intervals.index.get_level_values(0)))
    fig, axes = plt.subplots(1, len(directions), figsize=(6.0 * len(directions), 0.5 * len(methods) + 2.2),
                             squeeze=False, sharey=True)
    for ax, d in zip(axes[0], directions):
        sub = intervals.xs(d, level=1).reindex(methods)
        y = np.arange(len(methods))
        colors = ["0.6" if m in baselines else "#1f77b4" for m in methods]
        ax.barh(y, sub["bal"], color=colors, alpha=0.8)
        ax.errorbar(sub["bal"], y, xerr=[sub["bal"] - sub["bal_low"], sub["bal_high"] - sub["bal"]], fmt="none",
                    ecolor="black", capsize=3)
        for i, m in enumerate(methods):
            vals = per_seed.loc[per_seed["method"] == m, f"transfer_bal_acc[{d}]"].to_numpy()
            ax.scatter(vals, np.full(len(vals), i) + np.linspace(-0.2, 0.2, len(vals)), s=10, color="black", zorder=3)
        ax.axvline(float(sub["best_constant"].mean()), color="0.3", ls=":", label="best constant prediction")
        ax.axvline(float(sub["bal_ceiling"].mean()), color="#d62728", ls="--",
                   label="ceiling (share of target types with a counterpart)")
        ax.set_yticks(y, [lab.get(m, m) + (" (baseline)" if m in baselines else "") for m in methods])
        ax.set_xlim(0, 1)
        ax.set_xlabel(f"{d}: balanced accuracy (target labels unseen)")
        ax.legend(loc="lower right", fontsize=7)
    fig.suptitle(figure_title("Cross-species label transfer, SATURN's protocol (bar: mean over seeds; whisker: 95% "
                              "bootstrap interval over cells; dots: seeds)", dataset=dataset, simulated=simulated))
    fig.tight_layout()
    return fig


def tree_panels(trees: Mapping[str, tuple[np.ndarray, pd.DataFrame]], *, scores: Mapping[str, float] | None = None,
                labels: Mapping[str, str] | None = None, dataset: str = "", simulated: bool = False) -> plt.Figure:
    """Dendrograms of species x cell-type centroids, one panel per method, leaves coloured by species.

    ``trees``: method -> (linkage, centroids indexed by (species, cell_type)); ``scores``: the
    centroid-matching score shown under each title.
    """
    from scipy.cluster.hierarchy import dendrogram

    species = sorted({s for _, c in trees.values() for s, _ in c.index})
    colors = dict(zip(species, _PALETTE))
    n = len(trees)
    height = max(len(c) for _, c in trees.values()) * 0.2 + 1.8
    fig, axes = plt.subplots(1, n, figsize=(5.6 * n, height), squeeze=False)
    for ax, (name, (link, cents)) in zip(axes[0], trees.items()):
        dendrogram(link, labels=[f"{s} · {t}" for s, t in cents.index], orientation="left", ax=ax, color_threshold=0,
                   above_threshold_color="0.4")
        for tick in ax.get_yticklabels():
            tick.set_color(colors.get(tick.get_text().split(" · ")[0], "black"))
            tick.set_fontsize(7)
        title = (labels or {}).get(name, name)
        if scores is not None and name in scores:
            title += f"\ncentroid matching {scores[name]:.2f}"
        ax.set_title(title)
        ax.set_xlabel("cosine distance")
    key = ", ".join(f"{s} {c}" for s, c in zip(species, ("red", "blue", "green", "purple")))
    fig.suptitle(figure_title(f"Cross-species cell-type trees (centroids; {key})", dataset=dataset,
                              simulated=simulated))
    fig.tight_layout()
    return fig
