"""Notebook 04_drug_dose_response runs end to end in quick mode through the same runner as `dvc repro`."""

from __future__ import annotations

import json

import pytest
from drug_fixtures import LAYOUT, make_cpa_adata

from conftest import ROOT
from scprior.data.drug_prepare import DRUG_DATASETS, build_glioblastoma, build_simulated, write_h5ad
from scprior.data.drug_sim import DrugSimConfig
from scprior.nbrun import run_notebook
from scprior.tasks.drug_response.baselines import BASELINES

RAW = ROOT / "data" / "raw"
QUICK_SIM = {"cells_per_condition": 6, "vehicle_cells": 40, "n_genes": 200, "n_drugs": 6}


@pytest.fixture(scope="module")
def drug_processed(tmp_path_factory):
    """The two processed drug files, built by the DVC stage's own functions (small simulator)."""
    from scprior.config import section

    out = tmp_path_factory.mktemp("drug_processed")
    cfg = DrugSimConfig.from_dict({**section("drug_sim", ROOT / "params.yaml"), **QUICK_SIM})
    write_h5ad(build_glioblastoma(RAW / "drug" / "glioblastoma_example_data.rda", RAW / "knowledge" / "org.Hs.eg.sqlite"),
               out / DRUG_DATASETS["glioblastoma"])
    write_h5ad(build_simulated(RAW, cfg), out / DRUG_DATASETS["sciplex_simulated"])
    return out


@pytest.mark.notebook
def test_04_drug_dose_response_quick(drug_processed, knowledge_dir, tmp_path):
    external = tmp_path / "external.h5ad"
    make_cpa_adata().write_h5ad(external)  # a small file in CPA's layout exercises section 3
    fig = tmp_path / "fig"
    out = run_notebook(
        "notebooks/04_drug_dose_response.ipynb",
        output=tmp_path / "04.ipynb",
        overrides={"quick": True, "processed_dir": str(drug_processed), "knowledge_dir": str(knowledge_dir),
                   "figures_dir": str(fig), "metrics_file": str(tmp_path / "m.json"), "models_dir": str(tmp_path / "models"),
                   "external_file": str(external), "external_layout": {"split_keys": list(LAYOUT.split_keys)}},
    )
    assert out.exists()
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert set(metrics) == {"datasets"}
    data = metrics["datasets"]
    assert set(data) == {"glioblastoma", "sciplex_simulated", "external"}
    assert data["glioblastoma"]["simulated"] is False and data["sciplex_simulated"]["simulated"] is True
    assert set(data["sciplex_simulated"]["splits"]) == {"ood_dose", "held_out_drug"}
    assert set(data["glioblastoma"]["splits"]) == {"held_out_patient"}
    for block in data.values():
        for methods in block["splits"].values():
            assert {"vehicle"} <= set(methods) and any("cpa" in m for m in methods)
            assert set(methods) - set(BASELINES) <= {"cpa", "cpa_knowledge", "chemcpa", "chemcpa_knowledge"}
            for values in methods.values():
                assert set(values) == {"r2_mean", "r2_mean_de", "r2_var"}
    assert "covariate_shift" in data["glioblastoma"]["splits"]["held_out_patient"]
    assert "interpolation" in data["sciplex_simulated"]["splits"]["ood_dose"]
    assert "tanimoto_nearest" in data["sciplex_simulated"]["splits"]["held_out_drug"]
    for name in ("real_glioblastoma_r2", "simulated_sciplex_r2", "simulated_dose_response_curves", "simulated_basal_latent"):
        assert (fig / f"{name}.png").is_file() and (fig / f"{name}.svg").is_file()
    text = out.read_text()
    assert "loses to a baseline" in text or "beats the best baseline" in text
    assert "reloaded model predicts the same: True" in text
