"""Notebook 00_data runs end to end in quick mode through the same runner as `dvc repro`."""

from __future__ import annotations

import json

import pytest

from scprior.nbrun import run_notebook


@pytest.mark.notebook
def test_00_data_quick(processed_dir, tmp_path):
    out = run_notebook(
        "notebooks/00_data.ipynb",
        output=tmp_path / "00_data.ipynb",
        overrides={"quick": True, "processed_dir": str(processed_dir), "figures_dir": str(tmp_path / "fig"),
                   "metrics_file": str(tmp_path / "data.json")},
    )
    assert out.exists()
    metrics = json.loads((tmp_path / "data.json").read_text())
    assert metrics["quick"] is True
    assert metrics["datasets"]["baron_human"]["n_cells"] == 2142
    assert metrics["datasets"]["baron_mouse"]["n_genes"] == 14877
    for name in ("composition", "qc", "umap_cell_type", "umap_batch"):
        assert (tmp_path / "fig" / f"{name}.png").stat().st_size > 10_000
