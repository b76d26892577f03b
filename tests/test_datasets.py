"""Baron and PBMC readers: on tiny files in the shipped formats, and on the real fetched files."""

from __future__ import annotations

import hashlib
import zipfile

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from conftest import make_counts_adata
from scprior.data.baron import read_baron
from scprior.data.pbmc import read_pbmc68k_reduced
from scprior.data.processed import read_processed
from scprior.errors import ScpriorInputError


def _came_zip(tmp_path, human=None, mouse=None):
    """A zip laid out like came's sample_data.zip, holding raw-Baron_{human,mouse}.h5ad."""
    path = tmp_path / "sample_data.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for species, adata in (("human", human), ("mouse", mouse)):
            adata = adata if adata is not None else make_counts_adata(species=species, seed=len(species))
            adata = adata.copy()
            adata.obs = adata.obs.assign(
                cell_ontology_class=adata.obs["cell_type_raw"], cell_ontology_id="CL:0000001",
                cell_type1=adata.obs["cell_type_raw"], library="lib1",
            ).drop(columns="cell_type_raw")
            h5 = tmp_path / f"raw-Baron_{species}.h5ad"
            adata.write_h5ad(h5)
            zf.write(h5, h5.name)
    return path


def test_read_baron_tiny(tmp_path):
    zpath = _came_zip(tmp_path)
    digest = hashlib.sha256(zpath.read_bytes()).hexdigest()
    mouse = read_baron(zpath, "Mus musculus")
    assert mouse.obs["species"].unique().tolist() == ["mouse"]
    assert {"cell_type", "batch", "cell_ontology_id", "cell_type_author"} <= set(mouse.obs)
    assert mouse.var_names[0] == "Gene0"
    assert "counts" in mouse.layers and mouse.uns["scprior"]["dataset_id"] == "baron_mouse"
    assert hashlib.sha256(zpath.read_bytes()).hexdigest() == digest  # input untouched


def test_read_baron_rejects_normalised(tmp_path):
    bad = make_counts_adata()
    bad.X = sp.csr_matrix(np.log1p(bad.X.toarray()) / 3)
    with pytest.raises(ScpriorInputError, match="raw counts"):
        read_baron(_came_zip(tmp_path, human=bad), "human")


def test_read_baron_unknown_species(tmp_path):
    with pytest.raises(ScpriorInputError, match="Baron pancreas exists for"):
        read_baron(tmp_path / "x.zip", "zebrafish")


def test_read_baron_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="scprior.data.fetch"):
        read_baron(tmp_path / "missing.zip", "human")


def test_read_pbmc_tiny(tmp_path):
    rng = np.random.default_rng(0)
    lognorm = np.log1p(rng.poisson(1.0, size=(20, 8))).astype(np.float32)
    src = ad.AnnData(X=sp.csr_matrix(lognorm), obs=pd.DataFrame({"bulk_labels": ["B"] * 10 + ["T"] * 10},
                     index=[f"c{i}" for i in range(20)]), var=pd.DataFrame(index=[f"G{i}" for i in range(8)]))
    src.raw = src
    src = src[:, :5].copy()  # like the scanpy file: X is a subset, .raw keeps all genes
    src.write_h5ad(tmp_path / "pbmc.h5ad")
    out = read_pbmc68k_reduced(tmp_path / "pbmc.h5ad")
    assert out.shape == (20, 8)
    assert out.uns["scprior"]["has_counts"] is False and "counts" not in out.layers
    assert out.obs["cell_type"].value_counts().to_dict() == {"B": 10, "T": 10}


def test_prepare_real_data(processed_dir):
    baron_h = read_processed("baron_human", processed_dir)
    baron_m = read_processed("baron_mouse", processed_dir)
    pbmc = read_processed("pbmc68k_reduced", processed_dir)
    assert baron_h.shape == (2142, 20125) and baron_m.shape == (1886, 14877)
    assert pbmc.shape == (700, 765)
    assert baron_h.obs["batch"].nunique() == 4 and baron_m.obs["batch"].nunique() == 2
    shared = set(baron_h.obs["cell_type"]) & set(baron_m.obs["cell_type"])
    assert {"type B pancreatic cell", "pancreatic A cell", "pancreatic ductal cell"} <= shared
    counts = baron_h.layers["counts"]
    assert np.all(np.mod(counts.data, 1) == 0)
    assert baron_h.uns["scprior"]["source"]["pin"] == "pip came==0.1.13"
    assert baron_h.uns["scprior"]["real"] is True
