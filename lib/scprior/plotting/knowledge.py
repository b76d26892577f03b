"""Figures of notebook 00_knowledge: coverage, similarity distributions, function check, gene maps."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from scprior.plotting.figures import figure_title

DATASET = "gene knowledge (NCBI, GO, Swiss-Prot, Ensembl)"


def coverage_bars(cov: pd.DataFrame) -> plt.Figure:
    """Bars of genes covered per embedding (``cov``: ``embedding``, ``gene_set``, ``covered``,
    ``measured``/``borrowed`` counts); borrowed protein vectors are hatched."""
    sets = list(dict.fromkeys(cov["gene_set"]))
    fig, axes = plt.subplots(1, len(sets), figsize=(4.2 * len(sets), 3.6), squeeze=False)
    for ax, name in zip(axes[0], sets):
        sub = cov[cov["gene_set"] == name].reset_index(drop=True)
        x = np.arange(len(sub))
        ax.bar(x, sub["measured"], color="tab:blue", label="own record")
        ax.bar(x, sub["borrowed"], bottom=sub["measured"], color="white", edgecolor="tab:orange",
               hatch="///", label="borrowed from human ortholog")
        for i, row in sub.iterrows():
            ax.text(i, row["covered"], f"{row['fraction']:.0%}", ha="center", va="bottom", fontsize=8)
        ax.set_xticks(x, sub["embedding"], rotation=30, ha="right", fontsize=8)
        ax.set_title(f"{name}\n(n={int(sub['n_genes'].iloc[0])} genes)", fontsize=9)
        ax.set_ylabel("genes with a vector")
        ax.set_ylim(0, 1.15 * max(sub["covered"].max(), 1))
    axes[0][0].legend(fontsize=7, loc="lower left")
    fig.suptitle(figure_title("Gene coverage of each embedding", dataset=DATASET, simulated=False))
    fig.tight_layout()
    return fig


def similarity_distributions(panels: Mapping[str, Mapping]) -> plt.Figure:
    """One panel per check: cosine of related pairs vs random pairs (``related_sim``, ``random_sim``,
    ``auroc``, ``shuffled_auroc`` per panel)."""
    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.4), squeeze=False)
    for ax, (title, res) in zip(axes[0], panels.items()):
        bins = np.linspace(-0.3, 1.0, 53)
        ax.hist(res["random_sim"], bins=bins, alpha=0.6, density=True, label="random pairs", color="grey")
        ax.hist(res["related_sim"], bins=bins, alpha=0.6, density=True, label="related pairs", color="tab:red")
        ax.set_title(f"{title}\nAUROC {res['auroc']:.3f} (shuffled {res['shuffled_auroc']:.3f})", fontsize=9)
        ax.set_xlabel("cosine similarity")
    axes[0][0].set_ylabel("density")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(figure_title("Related genes are closer than random pairs", dataset=DATASET, simulated=False))
    fig.tight_layout()
    return fig


def function_bars(results: pd.DataFrame) -> plt.Figure:
    """Mean cross-validated AUROC of gene-set membership per embedding, with its shuffled control.
    ``results``: ``embedding``, ``auroc``, ``shuffled_auroc`` (one row per set)."""
    long = results.melt(id_vars=["embedding", "set"], value_vars=["auroc", "shuffled_auroc"],
                        var_name="features", value_name="AUROC")
    long["features"] = long["features"].map({"auroc": "embedding", "shuffled_auroc": "shuffled control"})
    fig, ax = plt.subplots(figsize=(1.3 * results["embedding"].nunique() + 3, 3.8))
    sns.barplot(data=long, x="embedding", y="AUROC", hue="features", errorbar=("ci", 95), ax=ax,
                palette=["tab:blue", "lightgrey"])
    ax.axhline(0.5, color="black", lw=0.8, ls="--")
    ax.set_ylim(0.3, 1.0)
    ax.tick_params(axis="x", rotation=30, labelsize=8)
    ax.set_xlabel("")
    ax.set_title(figure_title("Predicting hallmark gene-set membership (5-fold CV)", dataset=DATASET, simulated=False))
    ax.legend(fontsize=7, loc="lower right")
    return fig


def embedding_maps(maps: Mapping[str, pd.DataFrame]) -> plt.Figure:
    """2-D maps of gene embeddings (``maps``: title -> frame with ``x``, ``y``, ``family``);
    genes of no listed family in light grey."""
    n = len(maps)
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 4.6), squeeze=False)
    families = sorted({f for m in maps.values() for f in m["family"] if f})
    palette = dict(zip(families, sns.color_palette("tab10", len(families))))
    for ax, (title, frame) in zip(axes[0], maps.items()):
        other = frame[frame["family"] == ""]
        ax.scatter(other["x"], other["y"], s=2, color="lightgrey", linewidths=0, rasterized=True)
        for fam in families:
            sub = frame[frame["family"] == fam]
            ax.scatter(sub["x"], sub["y"], s=6, color=palette[fam], label=f"{fam} ({len(sub)})", linewidths=0)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{title} (n={len(frame)})", fontsize=9)
    axes[0][-1].legend(fontsize=7, markerscale=2, loc="center left", bbox_to_anchor=(1, 0.5), frameon=False)
    fig.suptitle(figure_title("UMAP of gene embeddings, coloured by gene family", dataset=DATASET, simulated=False))
    fig.tight_layout()
    return fig
