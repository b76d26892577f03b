"""Notebook 02 end to end in quick mode: real Baron + PBMC data (prepared from data/raw), the quick
knowledge folder, GeneCompass pretraining and fine-tuning, every baseline, the figures, and the
metrics file in the issue's schema."""

from __future__ import annotations

import json

import pytest

from scprior.nbrun import run_notebook

NOTEBOOK = "notebooks/02_cell_type_annotation.ipynb"
TASKS = {"human_donor_holdout", "mouse_donor_holdout", "human_to_mouse", "mouse_to_human", "pbmc"}
METHODS = {"genecompass", "genecompass_frozen", "celltypist", "scanvi", "logistic_regression", "knn_pca"}


@pytest.mark.notebook
def test_notebook_02_quick(tmp_path, processed_dir, knowledge_dir):
    figures, metrics, models = tmp_path / "figures", tmp_path / "annotation.json", tmp_path / "models"
    run_notebook(NOTEBOOK, output=tmp_path / "executed.ipynb", overrides={
        "quick": True, "processed_dir": str(processed_dir), "knowledge_dir": str(knowledge_dir),
        "figures_dir": str(figures), "metrics_file": str(metrics), "models_dir": str(models)})
    m = json.loads(metrics.read_text())
    assert set(m) == {"simulated", "seeds", "tasks", "ablations"}
    assert m["simulated"] is False and m["seeds"] == [0]
    assert set(m["tasks"]) == TASKS
    for task, methods in m["tasks"].items():
        expected = METHODS | ({"saturn_lr"} if "_to_" in task else set())
        assert set(methods) == expected, task
        for row in methods.values():
            assert set(row) == {"accuracy", "macro_f1"} and 0 <= row["macro_f1"] <= row["accuracy"] + 1
    assert set(m["ablations"]["variants"]) == {"all_priors", "no_priors", "no_pretraining"}
    for name in ("macro_f1", "confusion_matrices", "pretraining_loss"):
        assert (figures / f"{name}.png").is_file() and (figures / f"{name}.svg").is_file()
    assert (models / "genecompass.pt").is_file()
    from scprior.models.genecompass import GeneCompass

    gc = GeneCompass.load(models / "genecompass.pt")
    assert gc.info["pretrain_val_cells"] > 0 and len(gc.vocab) > 2
    detail = json.loads((tmp_path / "annotation_detail.json").read_text())
    # the computed verdict sentences are in the executed notebook's outputs
    outputs = json.dumps([c.get("outputs", []) for c in json.loads((tmp_path / "executed.ipynb").read_text())["cells"]])
    for sentence in detail["verdicts"]:
        assert sentence.split(":")[0] in outputs
    assert "The transformer loses to a baseline on" in outputs
