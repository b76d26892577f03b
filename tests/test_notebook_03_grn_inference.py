"""Notebook 03_grn_inference runs end to end in quick mode through the same runner as `dvc repro`."""

from __future__ import annotations

import json

import nbformat
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from conftest import ROOT
from scprior.data.beeline import write_beeline
from scprior.data.grn_sim import SergioConfig, build_sergio, read_sergio
from scprior.data.grn_truth import build_truth_table
from scprior.nbrun import run_notebook
from scprior.tasks.grn.benchmark import DELETION
from scprior.tasks.grn.metrics import METRICS

# DoRothEA's .rda takes ~1 min to parse: the quick test scores the other three real truths
QUICK_TRUTHS = ["remap_chipseq", "trrust", "bengrn_chipseq"]
QUICK_SIM = SergioConfig(n_tfs=12, n_genes=80, min_targets=10, n_cell_types=3, cells_per_type=60,
                         safety_iter=50, scale_iter=5)


@pytest.fixture(scope="module")
def grn_inputs(knowledge_dir, tmp_path_factory):
    """The truth parquet and a small SERGIO file, built by the DVC stages' own functions."""
    out = tmp_path_factory.mktemp("grn_processed")
    truth = build_truth_table(ROOT / "data" / "raw", out / "truth.parquet", names=QUICK_TRUTHS)
    sergio = build_sergio(knowledge_dir / "regulon.parquet", out / "sergio.h5ad", QUICK_SIM)
    # a BEELINE-layout folder (log values genes x cells, refNetwork.csv) cut from the small simulation
    cells, edges = read_sergio(sergio)
    cells = cells[:120]
    expression = pd.DataFrame((cells.X.toarray() if sp.issparse(cells.X) else np.asarray(cells.X)).T, index=cells.var_names, columns=cells.obs_names)
    network = edges.rename(columns={"tf": "Gene1", "target": "Gene2"})[["Gene1", "Gene2"]].assign(Type="+")
    beeline = write_beeline(out / "beeline_toy", expression, network)
    return truth, sergio, beeline


@pytest.mark.notebook
def test_03_grn_inference_quick(grn_inputs, processed_dir, knowledge_dir, tmp_path):
    truth, sergio, beeline = grn_inputs
    fig, metrics_file = tmp_path / "fig", tmp_path / "grn.json"
    out = run_notebook(
        "notebooks/03_grn_inference.ipynb", output=tmp_path / "03.ipynb",
        overrides={"quick": True, "processed_dir": str(processed_dir), "knowledge_dir": str(knowledge_dir),
                   "truth_file": str(truth), "sergio_file": str(sergio), "truths": QUICK_TRUTHS,
                   "beeline_dir": str(beeline), "beeline_simulated": True,
                   "figures_dir": str(fig), "metrics_file": str(metrics_file), "models_dir": str(tmp_path / "models")},
    )
    metrics = json.loads(metrics_file.read_text())
    assert set(metrics) == {"datasets"}
    datasets = metrics["datasets"]
    assert "sergio_simulated:simulated" in datasets and datasets["sergio_simulated:simulated"]["simulated"] is True
    real = [k for k, v in datasets.items() if not v["simulated"]]
    assert real and all(k.startswith("baron_human:") for k in real)
    for block in datasets.values():
        assert set(block) == {"simulated", "truth", "n_tfs", "methods"} and block["n_tfs"] >= 1
        assert {DELETION, "pearson", "spearman", "random"} <= set(block["methods"])
        for values in block["methods"].values():
            assert set(values) == set(METRICS)
    assert "SIMULATED" in datasets["sergio_simulated:simulated"]["truth"]
    assert datasets["beeline_beeline_toy:beeline"]["simulated"] is True
    for name in ("baron_auprc_ratio", "simulated_auprc_ratio", "simulated_pr_simulated", "simulated_epr_per_tf_simulated"):
        assert (fig / f"{name}.png").stat().st_size > 10_000, name
    assert list(fig.glob("baron_network_*.png")) and list(fig.glob("simulated_network_*.png"))
    text = "\n".join(o.get("text", "") for c in nbformat.read(out, as_version=4).cells if c.cell_type == "code"
                     for o in c.outputs if o.get("output_type") == "stream")
    assert f"{DELETION} " in text and any(w in text for w in ("beats", "loses to", "does not clearly differ"))
    assert "held-out TFs:" in text
