"""Small perturbation data written in code, in GEARS's exact layout (no committed binaries)."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from conftest import ROOT

SYMBOLS = ["KLF1", "GATA1", "TAL1", "SPI1", "CEBPA", "CEBPB", "MYC", "MAX", "JUN", "FOS", "HBG1", "HBG2",
           "HBZ", "GYPA", "TFRC", "CD34", "LMO2", "RUNX1", "ETV6", "FLI1", "IKZF1", "MYB", "NFE2", "ZFPM1",
           "EPOR", "ALAS2", "SLC4A1", "KIT", "MPO", "ELANE"]

#: conditions of the GEARS-layout fixture and their cells; KLF1 carries both single spellings
CONDITIONS = {"ctrl": 40, "KLF1+ctrl": 12, "ctrl+KLF1": 10, "GATA1+ctrl": 12, "TAL1+ctrl": 12, "SPI1+ctrl": 12,
              "KLF1+GATA1": 12, "GATA1+TAL1": 12, "TAL1+SPI1": 12, "CEBPA+ctrl": 1}


def make_gears_adata(*, seed: int = 0, with_de: bool = True, ensembl_index: bool = True) -> ad.AnnData:
    """~135 cells x 30 genes: log-normalised X, counts layer, GEARS obs columns and (optionally) DE tables.

    Each perturbed gene doubles its own expression and shifts a few downstream genes.
    """
    from scprior.data.anndata_conventions import log_normalise
    from scprior.data.gears import complete_gears

    rng = np.random.default_rng(seed)
    genes = SYMBOLS
    base = rng.uniform(1.0, 6.0, size=len(genes))
    effects = {g: np.zeros(len(genes)) for g in ("KLF1", "GATA1", "TAL1", "SPI1", "CEBPA")}
    for g, eff in effects.items():
        eff[genes.index(g)] = 1.5
        eff[rng.choice(np.arange(10, 30), 4, replace=False)] = rng.normal(0, 0.8, 4)
    rows, labels = [], []
    for cond, n in CONDITIONS.items():
        shift = sum((effects[g] for g in cond.split("+") if g != "ctrl"), np.zeros(len(genes)))
        rows.append(rng.poisson(base * np.exp(shift), size=(n, len(genes))))
        labels += [cond] * n
    counts = np.vstack(rows).astype(np.float32)
    index = [f"ENSG{900000000 + i:011d}" for i in range(len(genes))] if ensembl_index else genes
    adata = ad.AnnData(X=sp.csr_matrix(counts), obs=pd.DataFrame({"condition": labels, "cell_type": "K562"},
                                                                  index=[f"cell{i}" for i in range(len(labels))]),
                       var=pd.DataFrame({"gene_name": genes}, index=index))
    adata.layers["counts"] = adata.X.copy()
    log_normalise(adata)
    if with_de:
        complete_gears(adata)
    return adata


def make_regulon(n_tfs: int = 30, n_genes: int = 200, seed: int = 0) -> pd.DataFrame:
    """A regulon-shaped table (tf, target) on made-up but symbol-shaped names (TFA1.., GENEB1..)."""
    rng = np.random.default_rng(seed)
    tfs = [f"TF{chr(65 + i % 26)}{i}" for i in range(n_tfs)]
    targets = [f"GENE{chr(65 + i % 26)}{i}" for i in range(n_genes)]
    rows = []
    for tf in tfs:
        for t in rng.choice(targets + tfs, int(rng.integers(10, 30)), replace=False):
            if t != tf:
                rows.append((tf, t))
    return pd.DataFrame(rows, columns=["tf", "target"])


def raw_file(name: str) -> Path:
    """A fetched file under ``data/raw/perturbation/``; fails with the fix when it is missing."""
    path = ROOT / "data" / "raw" / "perturbation" / name
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `python -m scprior.data.fetch` first (make test does).")
    return path
