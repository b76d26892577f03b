"""Notebook 00_knowledge end to end in quick mode, on the quick knowledge fixture."""

from __future__ import annotations

import json

import pytest

from scprior.nbrun import run_notebook


@pytest.mark.notebook
def test_notebook_00_knowledge_quick(tmp_path, knowledge_dir, processed_dir):
    metrics_file = tmp_path / "metrics.json"
    figures = tmp_path / "figures"
    run_notebook("notebooks/00_knowledge.ipynb", output=tmp_path / "out.ipynb", overrides={
        "quick": True, "knowledge_dir": str(knowledge_dir), "processed_dir": str(processed_dir),
        "figures_dir": str(figures), "metrics_file": str(metrics_file)})
    metrics = json.loads(metrics_file.read_text())
    assert metrics["quick"] is True and metrics["real"] is True
    assert {p.stem for p in figures.glob("*.png")} == {"coverage", "similarity", "function_check", "embedding_maps"}
    ortho = metrics["ortholog_text_human_vs_mouse"]
    assert ortho["text_minilm"]["auroc"] > 0.8 and abs(ortho["text_minilm"]["shuffled_auroc"] - 0.5) < 0.1
    paralog = metrics["paralog_shared_pfam_human"]
    assert paralog["protein_kmer"]["auroc"] > 0.6 and abs(paralog["protein_kmer"]["shuffled_auroc"] - 0.5) < 0.1
    assert metrics["protein_mouse_borrowed_identical_fraction"] == 1.0
    fun = metrics["function_hallmark"]
    assert fun["text_minilm human"]["n_sets"] >= 1
    assert fun["text_minilm human"]["auroc_mean"] > fun["text_minilm human"]["shuffled_auroc_mean"]
