"""Notebook 05_perturbation runs end to end in quick mode through the same runner as `dvc repro`."""

from __future__ import annotations

import json

import pytest

from conftest import ROOT
from scprior.data.perturbation_prepare import (
    PERTURBATION_DATASETS,
    build_norman,
    build_simulated,
    sim_config,
)
from scprior.nbrun import run_notebook
from scprior.tasks.perturbation import BASELINES, DEEP

QUICK_SIM = {"n_singles": 24, "n_doubles": 24, "n_genes": 240, "cells_per_condition": 25, "n_control_cells": 200}


@pytest.fixture(scope="module")
def perturbation_processed(knowledge_dir, tmp_path_factory):
    """The two processed perturbation files, built by the DVC stages' own functions (small simulator)."""
    out = tmp_path_factory.mktemp("perturbation_processed")
    from scprior.config import section

    cfg = sim_config({**section("perturbation_sim", ROOT / "params.yaml"), **QUICK_SIM})
    build_simulated(knowledge_dir / "regulon.parquet", out / PERTURBATION_DATASETS["perturb_simulated"], cfg)
    build_norman(ROOT / "data" / "raw", out / PERTURBATION_DATASETS["norman19_devel"])
    return out


@pytest.mark.notebook
def test_05_perturbation_quick(perturbation_processed, knowledge_dir, tmp_path):
    fig, models = tmp_path / "fig", tmp_path / "models"
    out = run_notebook(
        "notebooks/05_perturbation.ipynb",
        output=tmp_path / "05_perturbation.ipynb",
        overrides={"quick": True, "processed_dir": str(perturbation_processed), "knowledge_dir": str(knowledge_dir),
                   "raw_dir": str(ROOT / "data" / "raw"), "figures_dir": str(fig), "metrics_file": str(tmp_path / "p.json"),
                   "models_dir": str(models),
                   # any GEARS-layout file exercises section 4; the small simulated one is at hand
                   "gears_file": str(perturbation_processed / PERTURBATION_DATASETS["perturb_simulated"])},
    )
    assert out.exists()
    metrics = json.loads((tmp_path / "p.json").read_text())
    assert set(metrics) == {"dataset", "simulated", "seeds", "methods", "real_norman", "gears_file"}
    assert metrics["simulated"] is True and "SIMULATED" in metrics["dataset"]
    assert metrics["real_norman"]["simulated"] is False
    for block in (metrics, metrics["real_norman"]):
        assert set(block["methods"]) == set(BASELINES + DEEP)
        for subgroups in block["methods"].values():
            assert "all" in subgroups
            for values in subgroups.values():
                assert set(values) == {"pearson_delta", "pearson_delta_de", "mse_de"}
    assert {"combo_seen2", "unseen_single"} <= set(metrics["methods"]["additive"])
    assert metrics["methods"]["no_change"]["all"]["pearson_delta"] == 0.0
    for name in ("simulated_metrics_by_subgroup", "simulated_delta_scatter", "simulated_gi_recovery",
                 "simulated_gi_magnitude", "real_norman_metrics_by_subgroup", "gears_file_metrics_by_subgroup"):
        assert (fig / f"{name}.png").stat().st_size > 10_000, name
    assert len(list(models.glob("*.pt"))) == 3 * len(DEEP)  # simulated, real Norman, gears_file; one seed
