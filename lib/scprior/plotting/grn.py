"""GRN figures: pooled PR curves, EPR per TF and method, one TF's top predicted targets as a network."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from scprior.plotting.figures import figure_title


def pr_curves(curves: Mapping[str, pd.DataFrame], *, dataset: str, truth: str, simulated: bool,
              ax: plt.Axes | None = None) -> plt.Figure:
    """Precision-recall curves (all scored TF-gene pairs pooled) per method, with the random level."""
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(5.5, 4.5))
    for method, c in curves.items():
        ax.plot(c["recall"], c["precision"], label=method, lw=1.6 if "deletion" in method else 1.0)
    if curves:
        ax.axhline(next(iter(curves.values()))["random"].iloc[0], color="grey", ls="--", lw=1, label="random level")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, None),
           title=figure_title(f"Precision-recall vs {truth}", dataset=dataset, simulated=simulated))
    ax.legend(fontsize="small", ncol=2)
    return fig


def epr_per_tf(per_tf: pd.DataFrame, *, dataset: str, truth: str, simulated: bool, metric: str = "epr",
               max_tfs: int = 40) -> plt.Figure:
    """Heatmap of a per-TF metric (default EPR; 1 = random) for every method."""
    table = per_tf.pivot_table(index="tf", columns="method", values=metric)
    order = table.mean(axis=1).sort_values(ascending=False).index[:max_tfs]
    table = table.loc[order]
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * table.shape[1], 1.5 + 0.22 * len(table)))
    vmax = max(2.0, float(np.nanpercentile(table.to_numpy(), 95))) if table.size else 2.0
    im = ax.imshow(table.to_numpy(), aspect="auto", cmap="RdBu_r", vmin=0, vmax=vmax)
    ax.set_xticks(range(table.shape[1]), table.columns, rotation=45, ha="right")
    ax.set_yticks(range(len(table)), table.index, fontsize="x-small")
    fig.colorbar(im, ax=ax, label=f"{metric} (1 = random)")
    ax.grid(False)
    ax.set_title(figure_title(f"{metric.upper()} per TF vs {truth}", dataset=dataset, simulated=simulated))
    return fig


def tf_network(scores: pd.Series, true_targets: Sequence[str], *, tf: str, method: str, dataset: str,
               simulated: bool, top_n: int = 15) -> plt.Figure:
    """The TF and its ``top_n`` highest-scoring genes as a star network; true targets in green."""
    import networkx as nx

    top = scores.drop(labels=[tf], errors="ignore").sort_values(ascending=False).head(top_n)
    truth = set(true_targets)
    g = nx.DiGraph()
    g.add_node(tf)
    for gene, s in top.items():
        g.add_edge(tf, gene, weight=float(s))
    pos = nx.shell_layout(g, nlist=[[tf], list(top.index)])
    fig, ax = plt.subplots(figsize=(6, 6))
    w = top.to_numpy()
    widths = 0.5 + 3.5 * (w - w.min()) / (np.ptp(w) or 1.0)
    nx.draw_networkx_edges(g, pos, ax=ax, width=list(widths), edge_color="0.6", arrows=True, arrowsize=10)
    colours = ["#d9822b" if n == tf else ("#3a9e4f" if n in truth else "#c8c8c8") for n in g.nodes]
    nx.draw_networkx_nodes(g, pos, ax=ax, node_color=colours, node_size=900)
    nx.draw_networkx_labels(g, pos, ax=ax, font_size=7)
    hits = sum(n in truth for n in top.index)
    ax.set_title(figure_title(f"{tf}: top {len(top)} by {method} ({hits} true targets, green)",
                              dataset=dataset, simulated=simulated))
    ax.axis("off")
    return fig


def summary_bars(summaries: Mapping[str, pd.DataFrame], *, dataset: str, simulated: bool,
                 metric: str = "auprc_ratio") -> plt.Figure:
    """Mean ``metric`` over TFs with 95 % bootstrap intervals, one panel per truth."""
    n = len(summaries)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.8), squeeze=False)
    for ax, (truth, summ) in zip(axes[0], summaries.items(), strict=True):
        y = summ[metric].to_numpy()
        lo, hi = summ.get(f"{metric}_lo"), summ.get(f"{metric}_hi")
        err = None if lo is None else np.vstack([y - lo.to_numpy(), hi.to_numpy() - y])
        ax.bar(range(len(y)), y, yerr=err, color="#4c72b0", capsize=3)
        ax.axhline(1.0, color="grey", ls="--", lw=1)
        ax.set_xticks(range(len(y)), summ.index, rotation=45, ha="right")
        ax.set_title(f"{truth} ({int(summ['n_tfs'].max())} TFs)", fontsize="small")
        ax.set_ylabel(f"{metric} (mean over TFs)")
    fig.suptitle(figure_title(f"{metric} per method (1 = random)", dataset=dataset, simulated=simulated))
    fig.tight_layout()
    return fig
