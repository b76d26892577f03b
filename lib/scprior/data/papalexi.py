"""Real Papalexi et al. 2021 ECCITE-seq CRISPR knockouts (THP-1), from sceptredata, in GEARS's layout.

``lowmoi_example_data.rda`` of Katsevich-Lab/sceptredata (MIT) holds 20,729 THP-1 cells: a
299-gene response count matrix (genes x cells, ``dgTMatrix``), a 110-gRNA count matrix, the gRNA
-> target table (26 targeted genes, 9 non-targeting gRNAs) and the biological replicate. It is
read with PyPI ``rdata`` (pure Python; no R, nothing executed).

Conversion (documented choices):

- a cell's gRNA is its *dominant* gRNA (most UMIs); cells with no gRNA UMI, or whose dominant gRNA
  has less than ``min_purity`` (default 0.8) of the cell's gRNA UMIs, are dropped (low-MOI: a
  mixed cell has no single condition);
- condition = the dominant gRNA's target (``TARGET+ctrl``); non-targeting -> ``ctrl``;
- ``layers['counts']`` the response counts, ``X`` = log1p(normalize_total(counts, 1e4)) over the
  299 response genes (the only ones in the file), ``var['gene_name']`` their symbols,
  ``obs['cell_type'] = 'THP-1'``, ``obs['bio_rep']`` kept; GEARS's DE tables computed.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scprior.data.anndata_conventions import log_normalise
from scprior.data.gears import complete_gears
from scprior.data.perturbations import CONTROL
from scprior.errors import ScpriorInputError

CITATION = ("Papalexi et al. 2021, Nat Genet 53:322 (ECCITE-seq, THP-1); cut of Katsevich-Lab/sceptredata "
            "data/lowmoi_example_data.rda (MIT)")
OBJECT = "lowmoi_example_data"


def _sparse(obj) -> sp.csr_matrix:
    """An R ``dgTMatrix`` (as rdata returns it: i, j, x, Dim) -> CSR (rows = R rows)."""
    try:
        return sp.coo_matrix((np.asarray(obj.x, dtype=np.float32), (np.asarray(obj.i), np.asarray(obj.j))),
                             shape=tuple(int(d) for d in obj.Dim)).tocsr()
    except AttributeError as exc:
        raise ScpriorInputError(f"Expected an R dgTMatrix (i, j, x, Dim), got {type(obj).__name__}: {exc}") from None


def read_lowmoi(path: str | Path) -> dict:
    """The four parts of ``lowmoi_example_data`` (response / gRNA counts as CSR genes x cells)."""
    import rdata

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; run `python -m scprior.data.fetch` (pinned in data.dvc).")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Missing constructor for R class dgTMatrix": we build it below
        converted = rdata.conversion.convert(rdata.parser.parse_file(path))
    if OBJECT not in converted:
        raise ScpriorInputError(f"{path.name} has no object {OBJECT!r} (has {list(converted)}).")
    obj = converted[OBJECT]
    response, grna = obj["response_matrix"], obj["grna_matrix"]
    return {"response": _sparse(response), "genes": [str(g) for g in response.Dimnames[0]],
            "grna": _sparse(grna), "grnas": [str(g) for g in grna.Dimnames[0]],
            "targets": obj["grna_target_data_frame"], "covariates": obj["extra_covariates"]}


def lowmoi_to_gears(path: str | Path, *, min_purity: float = 0.8, provenance: dict | None = None) -> ad.AnnData:
    """Papalexi cells in GEARS's layout (see the module docstring for every choice)."""
    parts = read_lowmoi(path)
    grna = parts["grna"].T.tocsr()  # cells x gRNAs
    total = np.asarray(grna.sum(1)).ravel()
    dominant = np.asarray(grna.argmax(1)).ravel()
    top = np.asarray(grna.max(1).toarray()).ravel()
    with np.errstate(invalid="ignore", divide="ignore"):
        purity = np.where(total > 0, top / np.maximum(total, 1), 0.0)
    target_of = dict(zip(parts["targets"]["grna_id"].astype(str), parts["targets"]["grna_target"].astype(str)))
    missing = sorted(set(parts["grnas"]) - set(target_of))
    if missing:
        raise ScpriorInputError(f"gRNAs without a target in grna_target_data_frame: {missing[:5]}")
    targets = np.asarray([target_of[parts["grnas"][k]] for k in dominant], dtype=object)
    keep = (total > 0) & (purity >= min_purity)
    condition = np.where(targets == "non-targeting", CONTROL, np.char.add(targets.astype(str), f"+{CONTROL}"))
    counts = parts["response"].T.tocsr()[keep]
    obs = pd.DataFrame({"condition": condition[keep], "cell_type": "THP-1",
                        "grna": np.asarray(parts["grnas"], dtype=object)[dominant[keep]],
                        "grna_purity": purity[keep].astype(np.float32),
                        "bio_rep": parts["covariates"]["bio_rep"].astype(str).to_numpy()[keep]},
                       index=[f"cell{i}" for i in np.flatnonzero(keep)])
    adata = ad.AnnData(X=counts.astype(np.float32), obs=obs,
                       var=pd.DataFrame({"gene_name": parts["genes"]}, index=parts["genes"]))
    adata.layers["counts"] = adata.X.copy()
    log_normalise(adata)
    adata.uns["scprior"] = {"dataset_id": "papalexi21_thp1", "real": True, "title": "Papalexi 2021 THP-1 ECCITE-seq",
                            "citation": CITATION, "min_purity": float(min_purity),
                            "cells_in_file": int(len(keep)), "cells_dropped_no_grna": int((total == 0).sum()),
                            "cells_dropped_low_purity": int(((total > 0) & (purity < min_purity)).sum()),
                            **(provenance or {})}
    complete_gears(adata)
    return adata
