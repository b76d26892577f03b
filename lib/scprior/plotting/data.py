"""Figures of notebook 00_data: composition bars, QC violins, UMAPs per dataset."""

from __future__ import annotations

from collections.abc import Mapping

import anndata as ad
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from scprior.plotting.figures import figure_title


def composition_bars(comp: pd.DataFrame, *, simulated: bool = False) -> plt.Figure:
    """Horizontal bars: fraction of each cell type, one colour per dataset."""
    order = comp.groupby("cell_type")["fraction"].max().sort_values(ascending=False).index
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(order) + 1.5))
    sns.barplot(data=comp, y="cell_type", x="fraction", hue="dataset", order=order, ax=ax, orient="h")
    ax.set_xlabel("fraction of cells")
    ax.set_ylabel("")
    ax.set_title(figure_title("Cell-type composition", dataset=", ".join(comp["dataset"].unique()), simulated=simulated))
    return fig


def qc_violins(qc: pd.DataFrame, *, simulated: bool = False) -> plt.Figure:
    """Violins of counts, genes and % mitochondrial per dataset and batch."""
    metrics = [m for m in ("total_counts", "n_genes", "pct_mito") if qc[m].notna().any()]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 4))
    axes = [axes] if len(metrics) == 1 else list(axes)
    data = qc.assign(group=qc["dataset"] + "\n" + qc["batch"])
    for ax, metric in zip(axes, metrics):
        sub = data.dropna(subset=[metric])
        sns.violinplot(data=sub, x="group", y=metric, hue="dataset", ax=ax, cut=0, density_norm="width", legend=False)
        ax.tick_params(axis="x", rotation=90, labelsize=7)
        ax.set_xlabel("")
        ax.set_title(metric)
    fig.suptitle(figure_title("Quality control per donor", dataset=", ".join(qc["dataset"].unique()), simulated=simulated))
    fig.tight_layout()
    return fig


def umap_grid(datasets: Mapping[str, ad.AnnData], *, color: str = "cell_type", simulated: bool = False) -> plt.Figure:
    """One UMAP panel per dataset (needs ``obsm['X_umap']``), coloured by ``obs[color]``."""
    n = len(datasets)
    fig, axes = plt.subplots(1, n, figsize=(5.5 * n, 4.8))
    axes = [axes] if n == 1 else list(axes)
    for ax, (name, adata) in zip(axes, datasets.items()):
        frame = pd.DataFrame(adata.obsm["X_umap"], columns=["UMAP1", "UMAP2"])
        frame[color] = adata.obs[color].astype(str).to_numpy()
        sns.scatterplot(data=frame, x="UMAP1", y="UMAP2", hue=color, s=6, linewidth=0, ax=ax, rasterized=True)
        ax.legend(fontsize=6, markerscale=1.5, loc="center left", bbox_to_anchor=(1, 0.5), frameon=False)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{name} (n={adata.n_obs})")
    fig.suptitle(figure_title(f"UMAP of log-normalised expression, coloured by {color}", dataset=", ".join(datasets), simulated=simulated))
    fig.tight_layout()
    return fig
