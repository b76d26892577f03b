"""The macrogene models' outputs in the anchors' layouts, so users can move between tools.

* gene -> macrogene weights as SATURN writes them: a pickle of ``{"<species>_<gene>": weights}``
  (1-D float32 NumPy array over the macrogenes of one set). Written by us only; scprior never reads
  a user's pickle (a pickle can run code).
* the macrogene expression AnnData as Unify writes it: cells x macrogenes, ``X`` = each cell's
  ``log1p(counts) @ W`` over its own species' genes (sets side by side, columns ``<set>_mg<i>``),
  ``obs`` with ``species`` and the labels, the cell embedding in ``obsm[key]``.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import torch

from scprior.safe_io import atomic_path


def saturn_weights_dict(weights: pd.DataFrame, *, set_name: str | None = None) -> dict[str, np.ndarray]:
    """``{"<species>_<gene>": weights}`` from a weights frame (rows (species, gene), columns
    ``<set>_mg<i>``; :meth:`MacrogeneIntegrator.weights_frame`). ``set_name`` keeps one set's
    columns (SATURN has one set); default: all columns."""
    cols = [c for c in weights.columns if set_name is None or str(c).startswith(f"{set_name}_mg")]
    if not cols:
        raise ValueError(f"No weight columns for set {set_name!r} (have {list(weights.columns[:3])}...).")
    values = weights[cols].to_numpy(dtype=np.float32)
    return {f"{s}_{g}": values[i].copy() for i, (s, g) in enumerate(weights.index)}


def write_saturn_weights(weights: pd.DataFrame, path: str | os.PathLike, *, set_name: str | None = None) -> Path:
    """Write :func:`saturn_weights_dict` as SATURN's pickle (atomic). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        pickle.dump(saturn_weights_dict(weights, set_name=set_name), fh, protocol=4)
    return path


def macrogene_expression(pre, model=None, *, key: str = "X_unify", embedding: np.ndarray | None = None) -> ad.AnnData:
    """Unify's macrogene AnnData of a pretrained integrator (:class:`~.macrogene_integrator.Pretrained`):
    cells x macrogenes, ``X`` = ``log1p(counts) @ W`` over each cell's species block, ``obs`` as the
    model's (species set), ``obsm[key]`` = ``embedding`` if given. ``model`` (default ``pre.model``)
    gives the weights (after metric learning they are the pretrained ones: only the encoder trains)."""
    model = model or pre.model
    counts = pre.counts.tocsr()
    parts, names = [], []
    with torch.no_grad():
        for set_name, layer in model.macrogenes.items():
            w = layer.weights().detach().cpu().numpy()
            out = np.zeros((counts.shape[0], w.shape[1]), dtype=np.float32)
            for code, (lo, hi) in enumerate(model.blocks):
                idx = np.flatnonzero(pre.cell_species == code)
                if len(idx):
                    x = counts[idx][:, lo:hi].astype(np.float64)
                    x.data = np.log1p(x.data)
                    out[idx] = np.asarray(x @ w[lo:hi], dtype=np.float32)
            parts.append(out)
            names += [f"{set_name}_mg{i}" for i in range(w.shape[1])]
    adata = ad.AnnData(X=np.hstack(parts), obs=pre.obs.copy(), var=pd.DataFrame(index=pd.Index(names)))
    adata.uns["macrogenes"] = {"sets": list(model.macrogenes), "n_genes_axis": int(len(pre.axis)),
                               "layout": "Unify: cells x macrogenes, log1p(counts) @ W per species"}
    if embedding is not None:
        adata.obsm[key] = np.asarray(embedding, dtype=np.float32)
    return adata
