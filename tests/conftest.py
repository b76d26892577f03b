"""Shared fixtures: tiny AnnData objects in the scprior layout, and the checkout root."""

from __future__ import annotations

import os
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

os.environ.setdefault("MPLBACKEND", "agg")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def root() -> Path:
    """The checkout root (holds dvc.yaml, params.yaml)."""
    return ROOT


def make_counts_adata(n_cells: int = 60, n_genes: int = 40, *, species: str = "human", seed: int = 0,
                      n_types: int = 3, n_batches: int = 2) -> ad.AnnData:
    """Raw-count AnnData with symbol var_names, ``cell_type`` and ``donor`` obs columns."""
    rng = np.random.default_rng(seed)
    types = np.array([f"type{i}" for i in range(n_types)])[rng.integers(0, n_types, n_cells)]
    means = rng.gamma(1.0, 2.0, size=(n_types, n_genes))
    type_idx = np.array([int(t[4:]) for t in types])
    counts = rng.poisson(means[type_idx]).astype(np.float32)
    names = [f"GENE{i}" for i in range(n_genes)] if species == "human" else [f"Gene{i}" for i in range(n_genes)]
    obs = pd.DataFrame({"cell_type_raw": types, "donor": [f"d{i % n_batches}" for i in range(n_cells)]},
                       index=[f"cell{i}" for i in range(n_cells)])
    return ad.AnnData(X=sp.csr_matrix(counts), obs=obs, var=pd.DataFrame(index=names))


@pytest.fixture
def counts_adata() -> ad.AnnData:
    """60 human cells x 40 genes of raw counts, 3 cell types, 2 donors."""
    return make_counts_adata()


@pytest.fixture(scope="session")
def processed_dir(tmp_path_factory) -> Path:
    """``data/processed`` built from the fetched ``data/raw`` into a temporary folder (once per session)."""
    from scprior.config import section
    from scprior.data.prepare import RAW_FILES, prepare
    from scprior.data.sources import read_sources

    raw = ROOT / "data" / "raw"
    missing = [p for p in RAW_FILES.values() if not (raw / p).is_file()]
    if missing:
        pytest.fail(f"data/raw lacks {missing}: run `python -m scprior.data.fetch` first (make test does).")
    out = tmp_path_factory.mktemp("processed")
    sources = {s.path: s for s in read_sources(ROOT / "data.dvc")}
    prepare(raw, out, sources, target_sum=float(section("prepare", ROOT / "params.yaml")["target_sum"]))
    return out
