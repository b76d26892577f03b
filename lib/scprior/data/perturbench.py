"""Real Norman et al. 2019 cells as perturbench ships them, mapped to GEARS's layout.

``devel.h5ad`` of altoslabs/perturbench (BSD-3-Clause) holds 3,375 K562 cells of Norman 2019
(CRISPRa; ``obs['dataset'] == 'norman19'``) over 500 highly variable genes, plus 2,586 cells of
another study. Its naming differs from GEARS's: ``control`` / ``KLF1`` / ``KLF1+MAP2K6`` become
``ctrl`` / ``KLF1+ctrl`` / ``KLF1+MAP2K6`` here. ``X`` is log1p(normalize_total) over all genes of
the original experiment; the integer counts are recovered exactly (per cell, ``expm1(X)`` is the
counts times one scale factor).
"""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scprior.data.gears import complete_gears
from scprior.data.perturbations import CONTROL
from scprior.data.validate import check_counts, check_obs_column, read_h5ad
from scprior.errors import ScpriorInputError

CITATION = ("Norman et al. 2019, Science 365:786 (GEO GSE133344); cut of altoslabs/perturbench "
            "src/perturbench/data/resources/devel.h5ad (BSD-3-Clause)")


def to_gears_condition(name: str, *, control: str = "control") -> str:
    """perturbench name -> GEARS name: ``control`` -> ``ctrl``, ``KLF1`` -> ``KLF1+ctrl``, ``A+B`` kept."""
    text = str(name).strip()
    if text == control or text == CONTROL:
        return CONTROL
    parts = [p.strip() for p in text.split("+")]
    if any(not p for p in parts) or len(parts) > 2:
        raise ScpriorInputError(f"Cannot map perturbation {name!r} to GEARS's naming (one or two genes expected).")
    if len(parts) == 1:
        return f"{parts[0]}+{CONTROL}"
    if CONTROL in parts:
        return "+".join(parts)
    return f"{parts[0]}+{parts[1]}"


def recover_counts(x, *, max_divisor: int = 8, tol: float = 1e-3) -> sp.csr_matrix:
    """Integer counts from log1p(normalised) ``x`` (cells x genes): per cell, expm1 divided by the
    smallest stored value's count (tries 1..``max_divisor``) must be integral within ``tol``."""
    x = sp.csr_matrix(x, dtype=np.float64)
    out = x.copy()
    bad = []
    for i in range(x.shape[0]):
        lo, hi = x.indptr[i], x.indptr[i + 1]
        if hi == lo:
            continue
        v = np.expm1(x.data[lo:hi])
        unit = v.min()
        for k in range(1, max_divisor + 1):
            r = v / (unit / k)
            if np.abs(r - np.round(r)).max() < tol:
                out.data[lo:hi] = np.round(r)
                break
        else:
            bad.append(i)
    if bad:
        raise ScpriorInputError(
            f"{len(bad)} cell(s) (e.g. row {bad[0]}) do not hold log1p(scaled integer counts); "
            "this file's X is not a normalised count matrix, so counts cannot be recovered."
        )
    return out.astype(np.float32)


def read_perturbench_norman(path: str | Path, *, dataset: str = "norman19", cell_type: str = "K562",
                            provenance: dict | None = None) -> ad.AnnData:
    """Read the Norman cells of perturbench's ``devel.h5ad`` into a GEARS-format AnnData.

    Returns cells x 500 genes: ``X`` as in the file (log-normalised), ``layers['counts']``
    recovered integer counts, ``obs['condition']`` in GEARS naming, ``obs['cell_type']``,
    GEARS's ``dose_val``/``control``/``condition_name``, ``var['gene_name']`` and the DE tables
    (``uns['rank_genes_groups_cov_all']``, ``uns['top_non_dropout_de_20']``) computed as GEARS does.
    ``uns['scprior']`` records provenance with ``real=True``. The file is only read.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; run `python -m scprior.data.fetch` first.")
    raw = read_h5ad(path, what="perturbench file")
    check_obs_column(raw, "dataset", name=path.name)
    check_obs_column(raw, "condition", name=path.name)
    mask = (raw.obs["dataset"].astype(str) == dataset).to_numpy()
    if not mask.any():
        raise ScpriorInputError(f"{path.name} has no cells with obs['dataset'] == {dataset!r} "
                                f"(has {sorted(raw.obs['dataset'].astype(str).unique())}).")
    sub = raw[mask]
    x = sp.csr_matrix(sub.X, dtype=np.float32)
    counts = recover_counts(x)
    obs = pd.DataFrame({
        "condition": [to_gears_condition(c) for c in sub.obs["condition"].astype(str)],
        "cell_type": cell_type,
        "perturbation_raw": sub.obs["condition"].astype(str).to_numpy(),
        "ncounts": sub.obs["ncounts"].to_numpy() if "ncounts" in sub.obs else np.asarray(counts.sum(1)).ravel(),
    }, index=sub.obs_names.astype(str))
    var = pd.DataFrame({"gene_name": sub.var_names.astype(str)}, index=sub.var_names.astype(str))
    adata = ad.AnnData(X=x, obs=obs, var=var, layers={"counts": counts})
    check_counts(adata, layer="counts", name=path.name)
    adata.uns["scprior"] = {
        "dataset_id": "norman19_devel", "title": "Norman 2019 K562 CRISPRa (perturbench devel cut)",
        "citation": CITATION, "real": True, "species": "human", "has_counts": True,
        "normalisation": "X as shipped: log1p(normalize_total) over the original gene set",
        **(provenance or {}),
    }
    complete_gears(adata)
    return adata
