"""Tiny two-species data and random gene embeddings/tables for the integration model tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import make_counts_adata
from scprior.knowledge.embeddings import GeneEmbeddings


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models run faster on one thread (and do not fight other processes for cores)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def two_species(n_human: int = 90, n_mouse: int = 80, n_genes: int = 40, seed: int = 0):
    """Human and mouse raw-count AnnData with ``layers['counts']`` and ``obs['cell_type']``."""
    out = {}
    for k, (species, n) in enumerate((("human", n_human), ("mouse", n_mouse))):
        a = make_counts_adata(n, n_genes - 5 * k, species=species, seed=seed + k)
        a.layers["counts"] = a.X.copy()
        a.obs["cell_type"] = a.obs["cell_type_raw"]
        a.obs["batch"] = a.obs["donor"]
        out[species] = a
    return out


def random_embeddings(adatas, *, dim: int, source: str, seed: int = 0, drop: int = 0) -> dict[str, GeneEmbeddings]:
    """Random embeddings for every gene (minus the last ``drop``) of each species."""
    rng = np.random.default_rng(seed)
    out = {}
    for species, a in adatas.items():
        names = np.asarray(a.var_names)[: a.n_vars - drop]
        out[species] = GeneEmbeddings(names, rng.normal(size=(len(names), dim)), species, source)
    return out


def random_gene_tables(adatas, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Gene tables with random chromosomes (some unplaced) and starts."""
    rng = np.random.default_rng(seed)
    out = {}
    for species, a in adatas.items():
        n = a.n_vars
        chrom = rng.choice(["1", "2", "10", "X"], n).astype(object)
        chrom[:2] = ""
        out[species] = pd.DataFrame({"symbol": np.asarray(a.var_names), "chromosome": chrom,
                                     "start": rng.integers(0, 100_000, n)})
    return out
