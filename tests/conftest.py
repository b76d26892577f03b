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


# ------------------------------------------------------------------------------ knowledge folder
RAW_DIR = ROOT / "data" / "raw"
QUICK_HVG = 2000  # variable genes per Baron species whose embeddings the quick build computes


def perturbation_genes() -> list[str]:
    """Measured genes of the real perturbation devel file (``perturbench_devel.h5ad``), if present
    in data/raw or a local mirror (``SCPRIOR_MIRRORS``, ``../shared/data``); else none."""
    import anndata as ad

    from scprior.data.fetch import mirror_dirs

    candidates = sorted(RAW_DIR.rglob("perturbench_devel.h5ad")) if RAW_DIR.is_dir() else []
    candidates += [d / "perturbench_devel.h5ad" for d in mirror_dirs(ROOT)]
    for path in candidates:
        if path.is_file():
            return ad.read_h5ad(path, backed="r").var_names.astype(str).tolist()
    return []


@pytest.fixture(scope="session")
def knowledge_dir(tmp_path_factory) -> Path:
    """A QUICK knowledge folder built once per test session from the real ``data/raw``.

    Every table is complete (all genes, GO, orthologs, regulon, proteins); the embeddings
    (``text_minilm``, ``protein_kmer``, human and mouse) cover only the quick gene set:
    the 2,000 most variable genes (seurat_v3 on counts) of each Baron species, their one-to-one
    orthologs, and the genes of ``perturbench_devel.h5ad`` (see
    :func:`scprior.knowledge.gene_selection.quick_gene_set`). Takes ~1-3 minutes on 2 cores.
    ``SCPRIOR_TEST_KNOWLEDGE_DIR`` points at a folder to reuse (built there if it has no manifest).
    """
    from scprior.knowledge.build import RAW_FILES, build_knowledge
    from scprior.knowledge.gene_selection import quick_gene_set

    missing = [p for p in ["baron/came_sample_data.zip", *RAW_FILES.values()]
               if not (RAW_DIR / p).is_file() and not (RAW_DIR / (p + ".pin")).is_file()]
    if missing:
        pytest.fail(f"data/raw lacks {missing}: run `python -m scprior.data.fetch` first "
                    "(the knowledge fixture builds from the real pinned files).")
    reuse = os.environ.get("SCPRIOR_TEST_KNOWLEDGE_DIR")
    out = Path(reuse) if reuse else tmp_path_factory.mktemp("knowledge")
    if not (out / "manifest.json").is_file():
        genes = quick_gene_set(RAW_DIR, n_top_genes=QUICK_HVG, extra={"human": perturbation_genes()})
        build_knowledge(RAW_DIR, out, genes=genes, progress=False)
    return out
