"""Baselines for cross-species integration, all on one-to-one orthologs: PCA (unintegrated),
Harmony on that PCA, scVI with species as the batch."""

from __future__ import annotations

import anndata as ad
import numpy as np
import scipy.sparse as sp

from scprior.runtime import pick_device


def pca_embedding(adata: ad.AnnData, *, n_comps: int = 50, seed: int = 0, max_value: float = 10.0) -> np.ndarray:
    """PCA of the log-normalised ``X`` (genes scaled to unit variance, clipped at ``max_value``).

    ``adata``: cells x genes (e.g. ortholog HVGs). Returns (n_cells, n_comps) float32.
    """
    import scanpy as sc

    x = adata.X.toarray() if sp.issparse(adata.X) else np.asarray(adata.X, dtype=np.float64)
    tmp = ad.AnnData(X=np.asarray(x, dtype=np.float64))
    sc.pp.scale(tmp, max_value=max_value)
    n = int(min(n_comps, min(tmp.shape) - 1))
    sc.pp.pca(tmp, n_comps=n, svd_solver="arpack", random_state=seed)
    return tmp.obsm["X_pca"].astype(np.float32)


def harmony_embedding(pca: np.ndarray, batch: np.ndarray, *, seed: int = 0, theta: float = 2.0,
                      max_iter: int = 20) -> np.ndarray:
    """Harmony (harmonypy) on ``pca`` (cells x PCs) with ``batch`` labels per cell; (cells x PCs)."""
    import harmonypy
    import pandas as pd

    meta = pd.DataFrame({"batch": np.asarray(batch).astype(str)})
    ho = harmonypy.run_harmony(np.asarray(pca, dtype=np.float64), meta, "batch", theta=theta,
                               max_iter_harmony=max_iter, random_state=seed, verbose=False, ncores=1)
    z = np.asarray(ho.Z_corr)
    if z.shape[0] != len(meta):
        z = z.T
    return z.astype(np.float32)


def scvi_embedding(adata: ad.AnnData, *, batch_key: str = "species", seed: int = 0, n_latent: int = 30,
                   n_layers: int = 1, max_epochs: int = 200, batch_size: int = 128, patience: int = 10,
                   layer: str = "counts") -> np.ndarray:
    """scVI (scvi-tools) latent means; ``adata`` holds raw counts in ``layers[layer]``."""
    import scvi

    scvi.settings.seed = int(seed)
    tmp = ad.AnnData(X=sp.csr_matrix(adata.layers[layer], dtype=np.float32), obs=adata.obs[[batch_key]].copy())
    tmp.layers["counts"] = tmp.X.copy()
    scvi.model.SCVI.setup_anndata(tmp, layer="counts", batch_key=batch_key)
    model = scvi.model.SCVI(tmp, n_latent=n_latent, n_layers=n_layers)
    accelerator = {"cuda": "gpu", "mps": "mps"}.get(pick_device("auto"), "cpu")
    model.train(max_epochs=max_epochs, accelerator=accelerator, devices=1, enable_progress_bar=False,
                batch_size=batch_size, early_stopping=True, early_stopping_patience=patience)
    return model.get_latent_representation().astype(np.float32)
