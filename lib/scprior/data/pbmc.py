"""PBMC 68k reduced (10x), as shipped in ``scanpy``: a second human set; log-normalised, no counts."""

from __future__ import annotations

import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import scipy.sparse as sp

from scprior.data.validate import read_h5ad

CITATION = "Zheng et al. 2017, Nat Commun 8:14049 (10x PBMC 68k); reduced copy shipped with scanpy (BSD-3-Clause)"


def read_pbmc68k_reduced(path: str | Path, *, provenance: dict | None = None) -> ad.AnnData:
    """Read scanpy's ``10x_pbmc68k_reduced.h5ad`` into the scprior layout.

    The file holds no counts: ``X`` is taken from its ``.raw`` (log-normalised, 765 genes);
    ``layers['counts']`` is absent and ``uns['scprior']['has_counts']`` is False.
    ``obs['cell_type']`` = ``bulk_labels`` (10 types), one ``batch``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; run `python -m scprior.data.fetch` first.")
    with warnings.catch_warnings():  # the shipped file uses an old layout; anndata warns on read
        warnings.simplefilter("ignore", FutureWarning)
        src = read_h5ad(path, what="pbmc68k_reduced file")
    raw = src.raw.to_adata()
    x = raw.X.toarray() if sp.issparse(raw.X) else np.asarray(raw.X)
    adata = ad.AnnData(X=sp.csr_matrix(x.astype(np.float32)), obs=src.obs[["bulk_labels"]].copy(), var=raw.var[[]].copy())
    adata.obs["cell_type"] = adata.obs.pop("bulk_labels").astype(str).astype("category")
    adata.obs["species"] = "human"
    adata.obs["species"] = adata.obs["species"].astype("category")
    adata.obs["batch"] = "pbmc68k"
    adata.obs["batch"] = adata.obs["batch"].astype("category")
    adata.obs["n_genes"] = np.asarray((x > 0).sum(axis=1)).ravel()
    adata.uns["scprior"] = {
        "dataset_id": "pbmc68k_reduced",
        "title": "PBMC 68k reduced (10x)",
        "citation": CITATION,
        "real": True,
        "species": "human",
        "has_counts": False,
        "normalisation": "as shipped: log-normalised (.raw of the scanpy file)",
        **(provenance or {}),
    }
    return adata
