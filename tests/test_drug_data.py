"""Drug data layer: CPA-layout reader and its errors, the .rda readers, the SIMULATED screen."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from drug_fixtures import LAYOUT, make_cpa_adata

from conftest import ROOT
from scprior.data.drug_format import (
    DE_KEY,
    DrugLayout,
    format_dose,
    pert_category,
    read_drug_anndata,
    validate_drug_anndata,
)
from scprior.data.drug_sim import (
    BASE_CELL_TYPES,
    CELL_LINES,
    DrugSimConfig,
    SimInputs,
    hill,
    match_drug_names,
    simulate,
)
from scprior.errors import ScpriorInputError

RAW = ROOT / "data" / "raw"


def test_reader_on_a_small_file_in_cpas_layout(tmp_path):
    adata = make_cpa_adata()
    path = tmp_path / "cpa.h5ad"
    adata.write_h5ad(path)
    back = read_drug_anndata(path, LAYOUT)
    assert back.n_obs == adata.n_obs
    assert {"condition", "dose_val", "cell_type", "control", "cov_drug_dose_name", "split"} <= set(back.obs)
    assert back.obs["cov_drug_dose_name"].iloc[0] == "A549_control_0.0"
    # CPA's DE genes: the five target genes of a drug lead its list at the top dose
    assert set(back.uns[DE_KEY]["A549_Belinostat_1.0"][:5]) == {f"G{i}" for i in range(5)}


def test_reader_reads_chemcpa_style_keys(tmp_path):
    adata = make_cpa_adata()
    adata.obs = adata.obs.rename(columns={"condition": "product_name", "dose_val": "dose", "cell_type": "cell_line"})
    layout = DrugLayout.from_dict({"perturbation_key": "product_name", "dose_key": "dose", "covariate_keys": "cell_line"})
    assert validate_drug_anndata(adata, layout) is adata
    with pytest.raises(ScpriorInputError, match="lacks obs columns"):
        validate_drug_anndata(adata)  # CPA's default keys are absent


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a.obs.drop(columns=["dose_val"], inplace=True), "dose"),
        (lambda a: a.obs.__setitem__("condition", a.obs["condition"].astype(str).replace("Belinostat", "Belinostat+JQ1")),
         "combinations"),
        (lambda a: a.obs.__setitem__("dose_val", "high"), "non-negative number"),
        (lambda a: a.obs.__setitem__("control", 0), "treated cells have dose 0|no vehicle"),
        (lambda a: a.obs.__setitem__("split", "validation"), "split column"),
    ],
)
def test_reader_rejects_bad_files_with_a_clear_message(change, message):
    adata = make_cpa_adata()
    change(adata)
    with pytest.raises(ScpriorInputError, match=message):
        validate_drug_anndata(adata, LAYOUT)


def test_reader_rejects_normalised_values_and_missing_controls():
    adata = make_cpa_adata()
    adata.X = adata.X * 0.5
    with pytest.raises(ScpriorInputError, match="raw integer counts"):
        validate_drug_anndata(adata, LAYOUT)
    adata = make_cpa_adata()
    keep = ~((adata.obs["cell_type"] == "K562") & (adata.obs["control"] == 1)).to_numpy()
    with pytest.raises(ScpriorInputError, match="no vehicle cells"):
        validate_drug_anndata(adata[keep].copy(), LAYOUT)
    with pytest.raises(ScpriorInputError, match="does not exist"):
        read_drug_anndata(ROOT / "data" / "external" / "nope.h5ad")


def test_pert_category_names_follow_cpa():
    assert pert_category(["A549"], "Belinostat", 0.1) == "A549_Belinostat_0.1"
    assert pert_category(["A549", "p1"], "x", "1") == "A549_p1_x_1.0"
    assert format_dose(1) == "1.0"


def test_hill_dose_response():
    d = np.array([0.0, 10.0, 100.0, 1000.0, 1e6])
    y = hill(d, ec50=100.0, slope=2.0)
    assert y[0] == 0.0 and np.isclose(y[2], 0.5) and np.all(np.diff(y) > 0) and y[-1] < 1.0
    assert np.isclose(y[1], 10.0**2 / (10.0**2 + 100.0**2))


def test_drug_names_matched_across_the_two_sources():
    table = match_drug_names(["Panobinostat (LBH589)", "g(+)-JQ1", "Quisinostat (JNJ-26481585) 2HCl", "AR-42",
                              "Triamcinolone Acetonide", "Foo-1234"],
                             ["Panobinostat", "JQ1", "Quisinostat", "AR-42", "Triamcinolone", "Belinostat"])
    got = dict(zip(table["signature_name"], zip(table["compound"], table["how"])))
    assert got["Panobinostat (LBH589)"] == ("Panobinostat", "normalised")
    assert got["Quisinostat (JNJ-26481585) 2HCl"] == ("Quisinostat", "normalised")
    assert got["g(+)-JQ1"] == ("JQ1", "token")
    assert got["AR-42"] == ("AR-42", "exact")
    assert got["Triamcinolone Acetonide"] == ("Triamcinolone", "token")
    assert got["Foo-1234"] == ("", "unmatched")


def _tiny_inputs(seed: int = 0) -> SimInputs:
    rng = np.random.default_rng(seed)
    genes = [f"G{i}" for i in range(60)]
    types = np.repeat(list(BASE_CELL_TYPES.values()), 30)
    counts = rng.poisson(rng.gamma(2.0, 2.0, (len(types), len(genes)))).astype(np.float32)
    base = ad.AnnData(X=np.log1p(counts), obs=pd.DataFrame({"cell_type": types}, index=[f"b{i}" for i in range(len(types))]),
                      var=pd.DataFrame(index=genes))
    base.layers["counts"] = counts
    sig = {line: {"DrugA": genes[:8], "DrugB": genes[4:12], "DrugC": genes[20:26]} for line in CELL_LINES}
    compounds = pd.DataFrame({"name": ["DrugA", "DrugB", "DrugC"], "smiles": ["CCO", "CCN", "c1ccccc1"],
                              "pathway": ["p1", "p1", "p2"]})
    matching = pd.DataFrame({"signature_name": ["DrugA"], "compound": ["DrugA"], "how": ["exact"]})
    return SimInputs(base=base, signatures=sig, compounds=compounds, matching=matching)


def test_simulated_screen_layout_splits_and_dose_response():
    cfg = DrugSimConfig(held_out_drugs=("DrugC",), cells_per_condition=30, vehicle_cells=60, n_genes=40, seed=1)
    adata = simulate(_tiny_inputs(), cfg)
    validate_drug_anndata(adata, DrugLayout.from_dict(dict(adata.uns["drug_layout"])))
    assert adata.uns["scprior"]["real"] is False and "SIMULATED" in adata.uns["scprior"]["title"]
    obs = adata.obs
    ood = obs["split_ood_dose"] == "ood"
    assert set(obs.loc[ood, "dose"]) == {cfg.ood_dose_nm} and (obs.loc[ood, "control"] == 0).all()
    held = obs["split_held_out_drug"] == "ood"
    assert set(obs.loc[held, "condition"]) == {"DrugC"} and (obs["condition"] == "DrugC").sum() == held.sum()
    assert set(obs["cell_type"]) == set(CELL_LINES) and set(obs["dose_val"].round(6)) == {0.0, 0.001, 0.01, 0.1, 1.0}
    # signature genes of DrugA rise with dose (Hill: monotone), other genes do not move
    x = np.asarray(adata.X.todense())
    lib = x.sum(1, keepdims=True)
    frac = x / lib
    a549 = (obs["cell_type"] == "A549").to_numpy()
    sig = [adata.var_names.get_loc(g) for g in ["G0", "G1", "G2", "G3"]]
    means = [frac[a549 & ((obs["condition"] == "DrugA") & (obs["dose"] == d)).to_numpy()][:, sig].sum(1).mean()
             for d in cfg.doses_nm]
    vehicle = frac[a549 & (obs["control"] == 1).to_numpy()][:, sig].sum(1).mean()
    assert means[-1] > 2 * vehicle and means[-1] > means[0]
    assert "DrugA" in set(pd.DataFrame(adata.uns["drug_simulation"]["params"])["drug"])


def test_simulator_rejects_unknown_held_out_drug():
    with pytest.raises(ScpriorInputError, match="held_out_drugs"):
        simulate(_tiny_inputs(), DrugSimConfig(held_out_drugs=("Nope",)))
    with pytest.raises(ScpriorInputError, match="ood_dose_nm"):
        DrugSimConfig(ood_dose_nm=5.0)


def _need(path):
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `python -m scprior.data.fetch` first (make test does).")
    return path


def test_real_rda_files_read_without_r():
    from scprior.data.drug_rda import read_sce, read_signatures

    glio = read_sce(_need(RAW / "drug" / "glioblastoma_example_data.rda"))
    assert glio.shape == (5000, 300)
    assert {"patient_id", "condition", "sample_id"} <= set(glio.obs)
    assert glio.obs.groupby("condition").size().to_dict() == {"ctrl": 2500, "panobinostat": 2500}
    assert np.allclose(glio.X.data, np.round(glio.X.data))
    sig = read_signatures(_need(RAW / "drug" / "sciplex.a549.rda"))
    assert len(sig) == 23 and all(g.startswith("ENSG") for g in sig["Panobinostat (LBH589)"])


def test_real_glioblastoma_task_in_cpa_layout():
    from scprior.data.drug_prepare import build_glioblastoma

    adata = build_glioblastoma(_need(RAW / "drug" / "glioblastoma_example_data.rda"),
                               _need(RAW / "knowledge" / "org.Hs.eg.sqlite"))
    assert adata.uns["scprior"]["real"] is True
    assert adata.var["mapped"].mean() > 0.9 and "MALAT1" in set(adata.var["gene_name"])
    patients = sorted(adata.obs["patient"].unique())
    assert len(patients) == 5
    for p in patients:
        split = adata.obs[f"split_patient_{p}"]
        held = split == "ood"
        assert set(adata.obs.loc[held, "patient"]) == {p} and set(adata.obs.loc[held, "condition"]) == {"panobinostat"}
        assert held.sum() == 500
    assert set(adata.obs["dose_val"]) == {0.0, 0.2}
