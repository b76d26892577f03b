"""Figures of notebook 01_cross_species_integration: UMAPs per method, the scib table, transfer
accuracy bars, cross-species cell-type trees."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from scprior.plotting.figures import figure_title


def umap_coordinates(embedding: np.ndarray, *, n_neighbors: int = 15, seed: int = 0) -> np.ndarray:
    """2-D UMAP of an embedding (scanpy neighbours + UMAP, seeded)."""
    import anndata as ad
    import scanpy as sc

    tmp = ad.AnnData(X=np.zeros((len(embedding), 1), dtype=np.float32))
    tmp.obsm["X_emb"] = np.asarray(embedding, dtype=np.float32)
    sc.pp.neighbors(tmp, use_rep="X_emb", n_neighbors=n_neighbors, random_state=seed)
    sc.tl.umap(tmp, random_state=seed)
    return tmp.obsm["X_umap"]


def umap_coordinates_many(embeddings: Mapping[str, np.ndarray], *, n_neighbors: int = 15, seed: int = 0,
                          n_jobs: int = 1) -> dict[str, np.ndarray]:
    """:func:`umap_coordinates` of every embedding (name -> (n_cells, d)), in ``n_jobs`` processes.

    A seeded UMAP runs single-threaded, so the coordinates do not depend on ``n_jobs`` (at most
    one process per CPU)."""
    import os

    names = list(embeddings)
    n_jobs = min(int(n_jobs), os.cpu_count() or 1)  # each process compiles UMAP's numba code once
    if n_jobs == 1 or len(names) < 2:
        return {m: umap_coordinates(embeddings[m], n_neighbors=n_neighbors, seed=seed) for m in names}
    from joblib import Parallel, delayed

    out = Parallel(n_jobs=min(int(n_jobs), len(names)))(
        delayed(umap_coordinates)(embeddings[m], n_neighbors=n_neighbors, seed=seed) for m in names)
    return dict(zip(names, out))


def umap_grid(coords: Mapping[str, np.ndarray], obs: pd.DataFrame, *, labels: Mapping[str, str] | None = None,
              colors: Sequence[str] = ("cell_type", "species"), dataset: str = "", simulated: bool = False,
              point_size: float = 3.0) -> plt.Figure:
    """One row per method, one column per obs column in ``colors``; shared legends on the right."""
    names = list(coords)
    fig, axes = plt.subplots(len(names), len(colors), figsize=(4.2 * len(colors), 3.6 * len(names) + 2.0),
                             squeeze=False)
    palettes = {}
    for c in colors:
        cats = sorted(obs[c].astype(str).unique())
        pal = sns.color_palette("tab20" if len(cats) > 10 else "tab10", len(cats))
        palettes[c] = dict(zip(cats, pal))
    for i, name in enumerate(names):
        xy = coords[name]
        for j, c in enumerate(colors):
            ax = axes[i, j]
            vals = obs[c].astype(str).to_numpy()
            order = np.random.default_rng(0).permutation(len(vals))  # no category painted last on top
            ax.scatter(xy[order, 0], xy[order, 1], s=point_size, c=[palettes[c][v] for v in vals[order]],
                       linewidths=0, rasterized=True)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel((labels or {}).get(name, name), fontsize=11, fontweight="bold")
            if i == 0:
                ax.set_title(c.replace("_", " "))
    for j, c in enumerate(colors):
        handles = [plt.Line2D([], [], marker="o", ls="", color=col, label=cat) for cat, col in palettes[c].items()]
        axes[-1, j].legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.04), ncol=2, fontsize=7,
                           frameon=False, title=c.replace("_", " "))
    fig.suptitle(figure_title("UMAP of each method's embedding (seed shown: first)", dataset=dataset,
                              simulated=simulated), y=1.0)
    fig.tight_layout()
    return fig


def scib_results_table(mean_results: pd.DataFrame, *, batch_key: str = "species", label_key: str = "cell_type",
                       dataset: str = "", simulated: bool = False):
    """The scib-metrics results table (plottable, as ``Benchmarker.plot_results_table`` draws it)
    for results averaged over seeds; returns the figure.

    ``mean_results``: rows = metric names as scib-metrics stores them (``silhouette_label``, ...)
    plus the column ``Metric Type``; columns = embedding keys. The drawing is scib-metrics' own:
    a Benchmarker is given these results in place of running its metrics.
    """
    import anndata as ad
    from scib_metrics.benchmark import BatchCorrection, Benchmarker

    keys = [c for c in mean_results.columns if c != "Metric Type"]
    dummy = ad.AnnData(X=np.zeros((2, 1), dtype=np.float32),
                       obs=pd.DataFrame({batch_key: ["a", "b"], label_key: ["x", "y"]}))
    kbet = "kbet_per_label" in mean_results.index
    bm = Benchmarker(dummy, batch_key=batch_key, label_key=label_key, embedding_obsm_keys=keys,
                     batch_correction_metrics=BatchCorrection(kbet_per_label=kbet), progress_bar=False)
    bm._results = mean_results.copy()  # scib-metrics 0.5.10 keeps its results table here
    bm._benchmarked = True
    table = bm.plot_results_table(min_max_scale=False, show=False)
    fig = table.ax.figure
    fig.suptitle(figure_title("scib-metrics, means over seeds", dataset=dataset, simulated=simulated), y=1.02)
    return fig


def transfer_bars(records: pd.DataFrame, *, labels: Mapping[str, str] | None = None,
                  baselines: Sequence[str] = (), dataset: str = "", simulated: bool = False) -> plt.Figure:
    """Balanced accuracy of cross-species label transfer, both directions, mean +- sd over seeds."""
    cols = [c for c in records.columns if c.startswith("transfer_bal_acc[")]
    long = records.melt(id_vars=["method", "seed"], value_vars=cols, var_name="direction", value_name="bal_acc")
    long["direction"] = long["direction"].str.extract(r"\[(.*)\]")[0]
    long["label"] = long["method"].map(lambda m: (labels or {}).get(m, m) + (" (baseline)" if m in baselines else ""))
    order = long.groupby("label")["bal_acc"].mean().sort_values(ascending=False).index
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(order) + 1.8))
    sns.barplot(data=long, y="label", x="bal_acc", hue="direction", order=order, errorbar="sd", ax=ax, orient="h")
    ax.set_xlabel("balanced accuracy (logistic regression trained on one species, tested on the other)")
    ax.set_ylabel("")
    ax.set_xlim(0, 1)
    ax.set_title(figure_title("Cross-species label transfer (mean ± sd over seeds)", dataset=dataset,
                              simulated=simulated))
    return fig


def tree_panels(trees: Mapping[str, tuple[np.ndarray, pd.DataFrame]], *, scores: Mapping[str, float] | None = None,
                labels: Mapping[str, str] | None = None, dataset: str = "", simulated: bool = False) -> plt.Figure:
    """Dendrograms of species x cell-type centroids, one panel per method; leaves coloured by species.

    ``trees``: method -> (linkage, centroids with (species, cell_type) index).
    """
    from scipy.cluster.hierarchy import dendrogram

    n = len(trees)
    height = max(len(c) for _, c in trees.values()) * 0.22 + 1.5
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, height), squeeze=False)
    colors = {"human": "#1f77b4", "mouse": "#d62728"}
    for ax, (name, (link, cents)) in zip(axes[0], trees.items()):
        leaf = [f"{s} · {t.replace('pancreatic ', '')}" for s, t in cents.index]
        dendrogram(link, labels=leaf, orientation="left", ax=ax, color_threshold=0, above_threshold_color="0.4")
        for tick in ax.get_yticklabels():
            tick.set_color(colors.get(tick.get_text().split(" · ")[0], "black"))
            tick.set_fontsize(8)
        title = (labels or {}).get(name, name)
        if scores is not None and name in scores:
            title += f"\nmutual-NN score {scores[name]:.2f}"
        ax.set_title(title)
        ax.set_xlabel("cosine distance")
    fig.suptitle(figure_title("Cross-species cell-type trees (centroids; human blue, mouse red)", dataset=dataset,
                              simulated=simulated))
    fig.tight_layout()
    return fig


def score_overview(summary: pd.DataFrame, columns: Sequence[str], *, labels: Mapping[str, str] | None = None,
                   dataset: str = "", simulated: bool = False) -> plt.Figure:
    """Heatmap of mean scores (rows methods, columns scores), annotated mean (sd)."""
    mean = summary[list(columns)]
    sd = summary[[f"{c}_sd" for c in columns]].to_numpy() if all(f"{c}_sd" in summary for c in columns) else None
    annot = mean.map(lambda v: f"{v:.3f}").to_numpy()
    if sd is not None:
        annot = np.asarray([[f"{m}\n±{s:.3f}" for m, s in zip(r, q)] for r, q in zip(annot, sd)])
    fig, ax = plt.subplots(figsize=(1.6 * len(columns) + 3, 0.55 * len(mean) + 1.8))
    sns.heatmap(mean.rename(index=lambda m: (labels or {}).get(m, m)), annot=annot, fmt="", cmap="viridis",
                vmin=0, vmax=1, ax=ax, cbar_kws={"label": "score (higher is better)"}, annot_kws={"fontsize": 8})
    ax.set_ylabel("")
    ax.set_title(figure_title("Scores per method (mean ± sd over seeds)", dataset=dataset, simulated=simulated))
    return fig
