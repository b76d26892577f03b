"""Bad input fails at the door with a message that says what to do; inputs on disk stay untouched."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import scipy.sparse as sp

from scprior.data import validate
from scprior.data.anndata_conventions import standardise
from scprior.data.species import get_species
from scprior.errors import ScpriorInputError


def test_counts_accepted(counts_adata):
    validate.check_counts(counts_adata)
    validate.check_gene_symbols(counts_adata, species="human")
    validate.check_nonempty(counts_adata)


def test_normalised_values_rejected(counts_adata):
    counts_adata.X = sp.csr_matrix(np.log1p(counts_adata.X.toarray()))
    with pytest.raises(ScpriorInputError, match="raw counts"):
        validate.check_counts(counts_adata)


def test_negative_scaled_values_rejected(counts_adata):
    x = counts_adata.X.toarray()
    counts_adata.X = (x - x.mean(0)) / (x.std(0) + 1)
    with pytest.raises(ScpriorInputError, match="normalisation, log1p or scaling"):
        validate.check_counts(counts_adata)


def test_nan_rejected(counts_adata):
    x = counts_adata.X.toarray()
    x[0, 0] = np.nan
    counts_adata.X = x
    with pytest.raises(ScpriorInputError, match="NaN"):
        validate.check_counts(counts_adata)


def test_ensembl_ids_rejected_with_hint(counts_adata):
    symbols = counts_adata.var_names.copy()
    counts_adata.var_names = [f"ENSG{i:011d}" for i in range(counts_adata.n_vars)]
    counts_adata.var["gene_name"] = list(symbols)
    with pytest.raises(ScpriorInputError, match=r"Ensembl ids.*var\['gene_name'\]"):
        validate.check_gene_symbols(counts_adata, species="human")


def test_mouse_ensembl_ids_detected():
    assert validate.looks_like_ensembl(["ENSMUSG00000000001", "ENSMUSG00000000003.2"])
    assert not validate.looks_like_ensembl(["Klf1", "Gata1"])


def test_duplicate_genes_rejected(counts_adata):
    names = list(counts_adata.var_names)
    names[1] = names[0]
    counts_adata.var_names = names
    with pytest.raises(ScpriorInputError, match="duplicated gene names"):
        validate.check_gene_symbols(counts_adata, species="human")


def test_empty_rejected(counts_adata):
    with pytest.raises(ScpriorInputError, match="empty"):
        validate.check_nonempty(counts_adata[:0])


def test_unknown_species_gets_no_case_assumption(counts_adata):
    # a species scprior has no knowledge of: its symbols are not judged by human/mouse case rules
    validate.check_gene_symbols(counts_adata, species="zebrafish")
    counts_adata.var_names = [g.upper() for g in counts_adata.var_names]
    validate.check_gene_symbols(counts_adata, species="zebrafish")
    with pytest.raises(ScpriorInputError, match="passed as mouse"):
        validate.check_gene_symbols(counts_adata, species="mouse")


def test_species_aliases():
    assert get_species("Homo sapiens").name == "human"
    assert get_species("10090").name == "mouse"


def test_missing_obs_column(counts_adata):
    with pytest.raises(ScpriorInputError, match="no column 'cell_type'"):
        validate.check_obs_column(counts_adata, "cell_type")


def test_standardise_layout(counts_adata):
    raw = counts_adata.X.copy()
    standardise(counts_adata, species="human", cell_type="cell_type_raw", batch="donor",
                provenance={"dataset_id": "toy"})
    assert (counts_adata.layers["counts"] != raw).nnz == 0
    lib = np.asarray(raw.sum(axis=1)).ravel()
    expected = np.log1p(raw.toarray()[0] / lib[0] * 1e4)
    np.testing.assert_allclose(counts_adata.X[0].toarray().ravel(), expected, rtol=1e-5)
    assert set(counts_adata.obs["batch"]) == {"d0", "d1"}
    assert counts_adata.uns["scprior"]["species"] == "human"
    assert counts_adata.obs["species"].unique().tolist() == ["human"]


def test_standardise_rejects_normalised_input(counts_adata):
    counts_adata.X = sp.csr_matrix(np.log1p(counts_adata.X.toarray()))
    with pytest.raises(ScpriorInputError):
        standardise(counts_adata, species="human", cell_type="cell_type_raw", batch="donor", provenance={})


def test_file_on_disk_not_modified(counts_adata, tmp_path):
    import anndata as ad

    path = tmp_path / "in.h5ad"
    counts_adata.write_h5ad(path)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    adata = ad.read_h5ad(path)
    standardise(adata, species="human", cell_type="cell_type_raw", batch="donor", provenance={})
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
