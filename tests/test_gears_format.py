"""GEARS-format reader and validator: a small file in GEARS's exact layout, bad files, real cuts."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from perturbation_fixtures import CONDITIONS, make_gears_adata, raw_file

from scprior.data.gears import (
    DE_KEY,
    NON_DROPOUT_KEY,
    condition_name,
    de_gene_positions,
    pair_controls,
    read_gears,
    subsample_conditions,
    validate_gears,
    write_gears,
)
from scprior.data.perturbench import read_perturbench_norman, recover_counts, to_gears_condition
from scprior.errors import ScpriorInputError


@pytest.fixture
def gears_file(tmp_path):
    path = tmp_path / "perturb_processed.h5ad"
    make_gears_adata().write_h5ad(path)
    return path


def test_read_gears_layout(gears_file):
    before = gears_file.read_bytes()
    adata = read_gears(gears_file)
    assert gears_file.read_bytes() == before  # never modified on disk
    assert adata.n_obs == sum(CONDITIONS.values())
    assert set(adata.obs["condition"]) == set(CONDITIONS)
    assert condition_name("K562", "KLF1+ctrl") == "K562_KLF1+ctrl_1+1"
    assert condition_name("K562", "ctrl") == "K562_ctrl_1"
    assert adata.obs.loc[adata.obs["condition"] == "ctrl", "control"].eq(1).all()
    keys = set(adata.uns[DE_KEY])
    assert keys == {condition_name("K562", c) for c in CONDITIONS if c != "ctrl"}
    for key in keys:
        ranked = list(adata.uns[DE_KEY][key])
        assert sorted(ranked) == sorted(adata.var_names)  # every gene, ranked
        assert len(adata.uns[NON_DROPOUT_KEY][key]) == 20
    # the perturbed gene is the top DE gene of its single
    klf1 = list(adata.var_names[adata.var["gene_name"] == "KLF1"])[0]
    assert adata.uns[DE_KEY]["K562_KLF1+ctrl_1+1"][0] == klf1
    pos = de_gene_positions(adata, "K562_KLF1+ctrl_1+1")
    assert len(pos) == 20 and adata.var_names[pos[0]] == klf1


def test_de_ranking_matches_scanpy_t_test():
    import scanpy as sc

    adata = make_gears_adata()
    ref = adata[adata.obs["condition"] != "CEBPA+ctrl"].copy()  # scanpy refuses one-cell groups
    ref.obs["condition_name"] = ref.obs["condition_name"].astype(str).astype("category")
    sc.tl.rank_genes_groups(ref, groupby="condition_name", reference="K562_ctrl_1", rankby_abs=True,
                            n_genes=ref.n_vars, use_raw=False, method="t-test")
    names = pd.DataFrame(ref.uns["rank_genes_groups"]["names"])
    for group in names.columns:
        assert list(names[group][:10]) == list(adata.uns[DE_KEY][group][:10])


def test_missing_de_is_computed(tmp_path):
    path = tmp_path / "no_de.h5ad"
    make_gears_adata(with_de=False).write_h5ad(path)
    adata = read_gears(path)
    assert DE_KEY in adata.uns and NON_DROPOUT_KEY in adata.uns
    with pytest.raises(ScpriorInputError, match="uns has no"):
        validate_gears(make_gears_adata(with_de=False))


def _broken(change):
    adata = make_gears_adata()
    change(adata)
    return adata


@pytest.mark.parametrize("change, message", [
    (lambda a: a.obs.drop(columns="condition", inplace=True), "no 'condition' column"),
    (lambda a: a.obs.drop(columns="cell_type", inplace=True), "no 'cell_type' column"),
    (lambda a: a.obs.__setitem__("condition", a.obs["condition"].astype(str).replace("KLF1+ctrl", "KLF1")), "'KLF1'"),
    (lambda a: a.obs.__setitem__("condition", a.obs["condition"].astype(str).replace("ctrl", "control")), "control"),
    (lambda a: a.var.rename(columns={"gene_name": "feature_name"}, inplace=True), "gene_name_column='feature_name'"),
    (lambda a: setattr(a, "X", a.layers["counts"].copy()), "raw integer counts"),
    (lambda a: setattr(a, "X", a.X.toarray() - 5.0), "negative"),
    (lambda a: setattr(a, "X", sp.csr_matrix(np.where(np.arange(a.n_vars) == 3, np.nan, a.X.toarray()))), "NaN"),
    (lambda a: a.obs.__setitem__("condition_name", "K562_x_1"), "condition_name"),
    (lambda a: a.uns[DE_KEY].pop("K562_KLF1+ctrl_1+1"), "lacks 1 condition"),
    (lambda a: a.uns[NON_DROPOUT_KEY].__setitem__("K562_KLF1+ctrl_1+1", np.array(["NOPE"] * 20)), "not in var_names"),
])
def test_bad_files_fail_clearly(change, message):
    with pytest.raises(ScpriorInputError, match=message):
        validate_gears(_broken(change))


def test_write_and_read_back(tmp_path):
    adata = make_gears_adata()
    path = write_gears(adata, tmp_path / "out" / "g.h5ad")
    back = read_gears(path)
    assert list(back.uns[DE_KEY]["K562_GATA1+TAL1_1+1"][:5]) == list(adata.uns[DE_KEY]["K562_GATA1+TAL1_1+1"][:5])
    with pytest.raises(FileNotFoundError, match="Dataverse"):
        read_gears(tmp_path / "missing.h5ad")


def test_subsample_conditions_keeps_control_and_doubles_with_singles():
    adata = make_gears_adata()
    small = subsample_conditions(adata, n_conditions=4, max_cells=5, seed=0)
    counts = small.obs["condition"].value_counts()
    assert "ctrl" in counts and counts.max() <= 5
    assert len(counts) - 1 <= 4


def test_real_gears_cut_with_feature_name():
    """The real 50-cell cut of GEARS's Norman file (uns removed, symbols in feature_name)."""
    adata = read_gears(raw_file("scx_norman_subset.h5ad"), gene_name_column="feature_name")
    assert adata.var_names[0].startswith("ENSG") and "gene_name" in adata.var
    assert DE_KEY in adata.uns
    assert set(adata.obs["condition_name"]) >= {"A549_ctrl_1", "A549_FOXL2+HOXB9_1+1"}
    with pytest.raises(ScpriorInputError, match="feature_name"):
        read_gears(raw_file("scx_norman_subset.h5ad"))


def test_perturbench_naming_and_counts():
    assert to_gears_condition("control") == "ctrl"
    assert to_gears_condition("KLF1") == "KLF1+ctrl"
    assert to_gears_condition("KLF1+MAP2K6") == "KLF1+MAP2K6"
    with pytest.raises(ScpriorInputError):
        to_gears_condition("A+B+C")
    counts = np.array([[0, 1, 3, 10], [2, 0, 3, 0]], dtype=float)
    x = np.log1p(counts / counts.sum(1, keepdims=True) * 1e4)
    assert np.array_equal(recover_counts(sp.csr_matrix(x)).toarray(), counts)
    with pytest.raises(ScpriorInputError, match="counts cannot be recovered"):
        recover_counts(sp.csr_matrix(np.array([[0.3, 0.7, 1.234567]])))


def test_read_real_norman_cells():
    adata = read_perturbench_norman(raw_file("perturbench_devel.h5ad"))
    assert adata.shape == (3375, 500)
    assert adata.uns["scprior"]["real"] is True
    conditions = set(adata.obs["condition"])
    assert len(conditions) == 34 and "ctrl" in conditions and "KLF1+ctrl" in conditions and "KLF1+MAP2K6" in conditions
    counts = adata.layers["counts"]
    assert np.allclose(counts.data, np.round(counts.data))
    # X is log1p of counts scaled per cell: ranks agree within each cell
    row = 7
    c, x = counts[row].toarray().ravel(), adata.X[row].toarray().ravel()
    assert np.array_equal(c > 0, x > 0)
    validate_gears(adata)
    assert isinstance(adata, ad.AnnData)


def test_pair_controls():
    labels = ["ctrl", "A+ctrl", "ctrl", "A+B", "A+B"]
    partner = pair_controls(labels, rng=0)
    assert partner[0] == 0 and partner[2] == 2  # controls pair with themselves
    assert set(partner[[1, 3, 4]]) <= {0, 2}
    assert np.array_equal(partner, pair_controls(labels, rng=0))
    assert list(pair_controls(labels, rng=0, cells=[2])) == [2]
    with pytest.raises(ScpriorInputError, match="control"):
        pair_controls(["A+ctrl"])
