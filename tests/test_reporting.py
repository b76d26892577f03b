"""Small shared pieces: metrics JSON, figures, params sections, project root, data summaries."""

from __future__ import annotations

import json
import math

import matplotlib.pyplot as plt
import numpy as np
import pytest

from conftest import make_counts_adata
from scprior.config import section
from scprior.data.anndata_conventions import standardise
from scprior.paths import project_root, resolve
from scprior.plotting.figures import figure_title, save_figure, set_style
from scprior.tasks import data_summary as ds
from scprior.tasks.reporting import write_metrics


def test_write_metrics_rounds_sorts_and_nulls_nan(tmp_path):
    path = write_metrics({"b": np.float32(0.123456789), "a": [math.nan, 1], "c": {"z": np.int64(3)}},
                         tmp_path / "m" / "x.json")
    text = path.read_text()
    assert text.index('"a"') < text.index('"b"')
    assert json.loads(text) == {"a": [None, 1], "b": 0.1235, "c": {"z": 3}}


def test_figure_title_says_simulated():
    assert "SIMULATED" in figure_title("x", dataset="d", simulated=True)
    assert "real data" in figure_title("x", dataset="d", simulated=False)


def test_save_figure_png_and_svg_with_stable_bytes(tmp_path):
    set_style()

    def draw(name):
        fig, ax = plt.subplots()
        ax.plot([0, 1], [0, 1])
        paths = save_figure(fig, tmp_path, name)
        plt.close(fig)
        return paths

    paths = draw("a")
    again = draw("b")
    assert [p.name for p in paths] == ["a.png", "a.svg"]
    for p, q in zip(paths, again):  # rerunning a notebook must not change committed figures
        assert p.read_bytes() == q.read_bytes()


def test_params_section_and_root(root, monkeypatch):
    assert project_root(root / "lib" / "scprior") == root
    assert resolve("/abs/x").as_posix() == "/abs/x"
    assert "target_sum" in section("prepare", root / "params.yaml")
    with pytest.raises(KeyError, match="no section 'nope'"):
        section("nope", root / "params.yaml")
    monkeypatch.delenv("SCPRIOR_ROOT", raising=False)
    with pytest.raises(FileNotFoundError, match="SCPRIOR_ROOT"):
        project_root("/")


@pytest.fixture
def tiny_datasets():
    out = {}
    for species, seed in (("human", 0), ("mouse", 1)):
        adata = make_counts_adata(n_cells=80, n_genes=50, species=species, seed=seed)
        standardise(adata, species=species, cell_type="cell_type_raw", batch="donor",
                    provenance={"dataset_id": f"toy_{species}"})
        out[f"toy_{species}"] = adata
    return out


def test_summaries(tiny_datasets):
    summary = ds.dataset_summary(tiny_datasets["toy_human"])
    assert summary["n_cells"] == 80 and summary["n_genes"] == 50 and summary["n_batches"] == 2
    comp = ds.composition(tiny_datasets)
    assert comp.groupby("dataset")["fraction"].sum().round(6).eq(1).all()
    assert comp.groupby("dataset")["n_cells"].sum().to_dict() == {"toy_human": 80, "toy_mouse": 80}
    qc = ds.qc_table(tiny_datasets)
    assert len(qc) == 160 and qc["pct_mito"].isna().all()  # toy genes have no MT- genes
    human = tiny_datasets["toy_human"]
    np.testing.assert_allclose(qc.loc[qc.dataset == "toy_human", "total_counts"],
                               np.asarray(human.layers["counts"].sum(axis=1)).ravel())


def test_mito_fraction_when_present():
    adata = make_counts_adata(n_cells=30, n_genes=10, seed=2)
    adata.var_names = ["MT-CO1"] + list(adata.var_names[1:])
    standardise(adata, species="human", cell_type="cell_type_raw", batch="donor", provenance={})
    qc = ds.qc_table({"x": adata})
    counts = adata.layers["counts"].toarray()
    np.testing.assert_allclose(qc["pct_mito"], 100 * counts[:, 0] / counts.sum(1))


def test_subsample_and_umap(tiny_datasets):
    adata = tiny_datasets["toy_human"]
    sub = ds.subsample(adata, 50, seed=0)
    assert sub.n_obs == 50 and ds.subsample(adata, 50, seed=0).obs_names.equals(sub.obs_names)
    assert ds.subsample(adata, None, seed=0).n_obs == 80
    emb = ds.umap_embedding(sub, n_neighbors=5, n_pcs=5, n_top_genes=30, seed=0)
    assert emb.obsm["X_umap"].shape == (50, 2) and "X_umap" not in sub.obsm
    again = ds.umap_embedding(sub, n_neighbors=5, n_pcs=5, n_top_genes=30, seed=0)
    np.testing.assert_allclose(emb.obsm["X_umap"], again.obsm["X_umap"])
