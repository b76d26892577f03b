"""Notebook 01b end to end in quick mode on the real fly/mouse files: processed from data/raw into
a temporary folder, embeddings for a quick gene set, every method, figures, anchor-layout outputs
and the metrics file."""

from __future__ import annotations

import json
import pickle

import anndata as ad
import pytest

from conftest import ROOT
from scprior.nbrun import run_notebook

NOTEBOOK = "notebooks/01b_far_species.ipynb"
RAW = ROOT / "data" / "raw" / "far_species"


@pytest.fixture(scope="module")
def far_dir(tmp_path_factory, knowledge_dir):
    """data/processed/far_species built from data/raw; embeddings of each species' 800 most detected genes."""
    import numpy as np

    from scprior.data import far_species as fs
    from scprior.knowledge.species_embeddings import build

    if not (RAW / "dme_subset.rda").is_file():
        pytest.fail("data/raw/far_species is missing: run `python -m scprior.data.fetch` first.")
    out = tmp_path_factory.mktemp("far_species")
    fs.prepare(RAW, out)
    genes = {}
    for s in ("fly", "mouse"):  # (seurat_v3's loess is unstable on 180 cells x a gene subset: detection instead)
        a = ad.read_h5ad(out / f"{s}_gut.h5ad")
        detected = np.asarray((a.layers["counts"] > 0).sum(axis=0)).ravel()
        genes[s] = list(a.var_names[np.argsort(-detected, kind="stable")[:800]])
    build(out, knowledge_dir, genes=genes)
    return out


@pytest.mark.notebook
def test_notebook_01b_quick(tmp_path, far_dir, root):
    from scprior.config import notebook_params

    params = notebook_params("01b_far_species", root / "params.yaml")
    datasets = []
    for d in params["datasets"]:  # the same entries, pointed at the temporary folder
        datasets.append({**d, "path": str(far_dir / f"{d['name']}.h5ad"),
                         "embeddings": {k: str(far_dir / "embeddings" / v.rsplit("/", 1)[1]) for k, v in d["embeddings"].items()}})
    figures, metrics, outputs = tmp_path / "figures", tmp_path / "m.json", tmp_path / "outputs"
    run_notebook(NOTEBOOK, output=tmp_path / "executed.ipynb", overrides={
        "quick": True, "datasets": datasets, "orthologs": str(far_dir / "hcop_orthologs.parquet"),
        "figures_dir": str(figures), "metrics_file": str(metrics), "outputs_dir": str(outputs)})
    m = json.loads(metrics.read_text())
    assert m["simulated"] is False and m["quick"] is True and m["seeds"] == [params["seeds"][0]]
    assert set(m["methods"]) == set(params["methods"]) and m["n_one2one_orthologs"] > 100
    assert m["genes"]["fly"]["one-to-one orthologs (through human, measured)"] == m["n_one2one_orthologs"]
    for name, e in m["methods"].items():
        assert set(e["transfer"]) == {"fly->mouse", "mouse->fly"}
        for d, t in e["transfer"].items():
            lo, hi = t["balanced_accuracy_interval"]
            assert lo <= t["balanced_accuracy"] <= hi, (name, d)
            assert t["accuracy"] <= t["ceiling"] + 1e-9 and t["balanced_accuracy"] <= t["balanced_accuracy_ceiling"] + 1e-9
        assert 0.0 <= e["centroid_match"] <= 1.0
    assert any("one-to-one-ortholog baseline" in line for line in m["verdict"])
    for fig in ("transfer_accuracy", "umap", "celltype_tree"):
        assert (figures / f"{fig}.png").is_file()
    sat = ad.read_h5ad(outputs / "saturn.h5ad")
    assert "X_saturn" in sat.obsm and set(sat.obs["species"]) == {"fly", "mouse"}
    assert "X_unify" in ad.read_h5ad(outputs / "unify_macrogenes.h5ad").obsm
    with open(outputs / "saturn_protein_macrogene_weights.pkl", "rb") as fh:  # our own file, written by the run
        weights = pickle.load(fh)
    assert all(k.split("_", 1)[0] in {"fly", "mouse"} for k in weights)
