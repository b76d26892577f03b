"""The AnnData layout every processed scprior dataset follows, and the helper that sets it up.

- ``layers['counts']``: raw integer counts (absent only where the source has none; then
  ``uns['scprior']['has_counts'] is False``);
- ``X``: log-normalised expression (``normalize_total(target_sum)`` then ``log1p``);
- ``obs['cell_type']``, ``obs['species']``, ``obs['batch']``: strings (categoricals);
- ``var_names``: gene symbols of the species, unique;
- ``obsm['X_<method>']``: embeddings, one key per method;
- ``uns['scprior']``: provenance (dataset id, source package/version/licence, real or simulated).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from scprior.data.species import get_species
from scprior.data.validate import check_counts, check_gene_symbols, check_nonempty

OBS_COLUMNS = ("cell_type", "species", "batch")


def log_normalise(adata, *, target_sum: float = 1e4, layer: str = "counts") -> None:
    """Set ``adata.X`` to log1p(counts / library size * target_sum) from ``layers[layer]`` (in place)."""
    counts = adata.layers[layer]
    counts = counts.tocsr() if sp.issparse(counts) else sp.csr_matrix(counts)
    lib = np.asarray(counts.sum(axis=1)).ravel()
    scale = np.divide(target_sum, lib, out=np.zeros_like(lib, dtype=np.float64), where=lib > 0)
    x = sp.diags(scale) @ counts
    x.data = np.log1p(x.data)
    adata.X = x.astype(np.float32).tocsr()


def standardise(adata, *, species: str, cell_type: str, batch: str | None, provenance: dict,
                target_sum: float = 1e4) -> None:
    """Put a raw-count AnnData into the scprior layout (in place); see the module docstring.

    ``cell_type`` / ``batch`` name existing ``obs`` columns to copy into ``obs['cell_type']`` /
    ``obs['batch']`` (``batch=None``: one batch named after the dataset).
    """
    from scprior.data.validate import check_obs_column

    sp_ = get_species(species)
    check_nonempty(adata, name=provenance.get("dataset_id", "adata"))
    check_gene_symbols(adata, species=sp_.name)
    check_counts(adata)
    check_obs_column(adata, cell_type)
    adata.layers["counts"] = sp.csr_matrix(adata.X, dtype=np.float32)
    log_normalise(adata, target_sum=target_sum)
    adata.obs["cell_type"] = adata.obs[cell_type].astype(str).astype("category")
    adata.obs["species"] = sp_.name
    adata.obs["species"] = adata.obs["species"].astype("category")
    if batch is None:
        adata.obs["batch"] = provenance.get("dataset_id", "batch0")
    else:
        check_obs_column(adata, batch)
        adata.obs["batch"] = adata.obs[batch].astype(str)
    adata.obs["batch"] = adata.obs["batch"].astype("category")
    adata.obs["n_counts"] = np.asarray(adata.layers["counts"].sum(axis=1)).ravel()
    adata.obs["n_genes"] = np.asarray((adata.layers["counts"] > 0).sum(axis=1)).ravel()
    adata.uns["scprior"] = {**provenance, "species": sp_.name, "has_counts": True,
                            "normalisation": f"log1p(normalize_total(target_sum={target_sum:g}))"}
