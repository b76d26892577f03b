"""Notebook 05_perturbation runs end to end in quick mode through the same runner as `dvc repro`."""

from __future__ import annotations

import json

import pytest

from conftest import ROOT
from scprior.data.perturbation_prepare import (
    PERTURBATION_DATASETS,
    build_norman,
    build_papalexi,
    build_simulated,
    sim_config,
)
from scprior.nbrun import run_notebook
from scprior.tasks.perturbation import ALL_METHODS, DEEP, GEARS_METHODS

QUICK_SIM = {"n_singles": 24, "n_doubles": 24, "n_genes": 240, "cells_per_condition": 25, "n_control_cells": 200}


@pytest.fixture(scope="module")
def perturbation_processed(knowledge_dir, tmp_path_factory):
    """The three processed perturbation files, built by the DVC stages' own functions (small simulator)."""
    out = tmp_path_factory.mktemp("perturbation_processed")
    from scprior.config import section

    cfg = sim_config({**section("perturbation_sim", ROOT / "params.yaml"), **QUICK_SIM})
    build_simulated(knowledge_dir / "regulon.parquet", out / PERTURBATION_DATASETS["perturb_simulated"], cfg)
    build_norman(ROOT / "data" / "raw", out / PERTURBATION_DATASETS["norman19_devel"])
    build_papalexi(ROOT / "data" / "raw", out / PERTURBATION_DATASETS["papalexi21"])
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
    assert set(metrics) == {"dataset", "simulated", "seeds", "methods", "skipped", "knowledge_goal", "real_norman",
                            "real_papalexi", "gears_file", "gears"}
    assert metrics["simulated"] is True and "SIMULATED" in metrics["dataset"]
    assert metrics["real_norman"]["simulated"] is False and metrics["real_papalexi"]["simulated"] is False
    assert metrics["gears"]["version"] and metrics["gears"]["settings"]["epochs"] >= 1
    for block in (metrics, metrics["real_norman"], metrics["real_papalexi"]):
        # every method either has results or is reported as skipped with its coverage, never both
        assert set(block["methods"]) | set(block["skipped"]) == set(ALL_METHODS)
        assert not set(block["methods"]) & set(block["skipped"])
        for skip in block["skipped"].values():
            assert (skip["coverage"] is not None and 0.0 <= skip["coverage"] < 0.5) or "no " in skip["reason"] \
                or "quick mode" in skip["reason"]
        for subgroups in block["methods"].values():
            assert "all" in subgroups
            for values in subgroups.values():
                assert values["n_conditions"] >= 1
                lo, hi = values["pearson_delta_de_ci"]
                assert lo <= values["pearson_delta_de"] + 1e-9 and values["pearson_delta_de"] <= hi + 1e-9
    assert {"combo_seen2", "unseen_single"} <= set(metrics["methods"]["combined"])
    assert metrics["methods"]["no_change"]["all"]["pearson_delta"] == 0.0
    # the real Norman cut measures 1 of its 31 perturbed genes: the PCA linear model must be skipped
    assert "linear_pca" in metrics["real_norman"]["skipped"]
    assert "unseen_single" in metrics["real_papalexi"]["methods"]["combined"]
    for name in ("simulated_metrics_by_subgroup", "simulated_delta_scatter", "simulated_gi_recovery",
                 "simulated_gi_magnitude", "real_norman_metrics_by_subgroup", "real_papalexi_metrics_by_subgroup",
                 "gears_file_metrics_by_subgroup"):
        assert (fig / f"{name}.png").stat().st_size > 10_000, name
    # quick mode runs the deep models and GEARS on the simulated demo and the GEARS file only: one checkpoint
    # each there; on the real Norman and Papalexi cuts they are reported as not run
    assert len(list(models.glob("*.pt"))) == 2 * (len(DEEP) + len(GEARS_METHODS))
    for block in (metrics["real_norman"], metrics["real_papalexi"]):
        assert all("quick mode" in block["skipped"][m]["reason"] for m in DEEP + GEARS_METHODS)
    assert len(list(models.glob("*_split_seed*.json"))) == 4
