"""Summaries of the processed demo datasets for notebook 00_data: sizes, composition, QC, UMAP."""

from __future__ import annotations

from collections.abc import Mapping

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp

from scprior.data.species import get_species


def dataset_summary(adata: ad.AnnData) -> dict:
    """Cells, genes, cell types, batches, species and provenance flags of one processed dataset."""
    prov = adata.uns.get("scprior", {})
    return {
        "n_cells": int(adata.n_obs),
        "n_genes": int(adata.n_vars),
        "n_cell_types": int(adata.obs["cell_type"].nunique()),
        "n_batches": int(adata.obs["batch"].nunique()),
        "species": str(adata.obs["species"].iloc[0]),
        "has_counts": bool(prov.get("has_counts", "counts" in adata.layers)),
        "real": bool(prov.get("real", True)),
    }


def composition(datasets: Mapping[str, ad.AnnData]) -> pd.DataFrame:
    """Long table: dataset, species, cell_type, n_cells, fraction (of the dataset)."""
    rows = []
    for name, adata in datasets.items():
        counts = adata.obs["cell_type"].value_counts()
        for cell_type, n in counts.items():
            rows.append({"dataset": name, "species": str(adata.obs["species"].iloc[0]),
                         "cell_type": str(cell_type), "n_cells": int(n), "fraction": n / adata.n_obs})
    return pd.DataFrame(rows)


def qc_table(datasets: Mapping[str, ad.AnnData]) -> pd.DataFrame:
    """Per cell: dataset, species, batch, total counts, genes detected, % mitochondrial counts.

    Datasets without counts (``layers['counts']`` absent) report NaN counts and mito fraction; so do
    datasets whose matrix holds no mitochondrial genes (Baron's was filtered upstream).
    """
    frames = []
    for name, adata in datasets.items():
        species = get_species(str(adata.obs["species"].iloc[0]))
        prefix = "MT-" if species.name == "human" else "mt-"
        mito = adata.var_names.str.upper().str.startswith(prefix.upper())
        if "counts" in adata.layers:
            counts = adata.layers["counts"]
            total = np.asarray(counts.sum(axis=1)).ravel()
            genes = np.asarray((counts > 0).sum(axis=1)).ravel()
            if mito.any():
                mt = np.asarray(counts[:, mito].sum(axis=1)).ravel()
                pct = 100 * np.divide(mt, total, out=np.zeros_like(total, dtype=float), where=total > 0)
            else:  # no mitochondrial genes in the matrix: the fraction is unknown, not zero
                pct = np.full(adata.n_obs, np.nan)
        else:
            x = adata.X
            genes = np.asarray((x > 0).sum(axis=1)).ravel() if sp.issparse(x) else (np.asarray(x) > 0).sum(axis=1)
            total = np.full(adata.n_obs, np.nan)
            pct = np.full(adata.n_obs, np.nan)
        frames.append(pd.DataFrame({"dataset": name, "species": species.name, "batch": adata.obs["batch"].astype(str).to_numpy(),
                                    "total_counts": total, "n_genes": genes, "pct_mito": pct}))
    return pd.concat(frames, ignore_index=True)


def subsample(adata: ad.AnnData, max_cells: int | None, *, seed: int) -> ad.AnnData:
    """A copy with at most ``max_cells`` cells drawn without replacement (all cells if None)."""
    if max_cells is None or adata.n_obs <= max_cells:
        return adata.copy()
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(adata.n_obs, size=max_cells, replace=False))
    return adata[idx].copy()


def umap_embedding(adata: ad.AnnData, *, n_neighbors: int = 15, n_pcs: int = 30, n_top_genes: int = 2000,
                   seed: int = 0) -> ad.AnnData:
    """Add ``obsm['X_pca']`` and ``obsm['X_umap']`` (HVG -> scale -> PCA -> kNN -> UMAP) to a copy.

    Uses log-normalised ``X``; returns the copy, the input is left untouched.
    """
    work = adata.copy()
    n_top = min(n_top_genes, work.n_vars)
    if n_top < work.n_vars:
        sc.pp.highly_variable_genes(work, n_top_genes=n_top, flavor="seurat")
        view = work[:, work.var["highly_variable"]].copy()
    else:
        view = work.copy()
    sc.pp.scale(view, max_value=10)
    n_comps = int(min(n_pcs, view.n_obs - 1, view.n_vars - 1))
    sc.pp.pca(view, n_comps=n_comps, random_state=seed)
    sc.pp.neighbors(view, n_neighbors=min(n_neighbors, view.n_obs - 1), random_state=seed)
    sc.tl.umap(view, random_state=seed)
    work.obsm["X_pca"] = view.obsm["X_pca"]
    work.obsm["X_umap"] = view.obsm["X_umap"]
    return work
