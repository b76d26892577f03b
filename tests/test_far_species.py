"""Any species, and the far-species pair: readers, count recovery, orthologs through human,
cell-type maps, the params-only dataset list, and N >= 2 species in every multi-species model."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from integration_helpers import one_torch_thread, random_embeddings, random_gene_tables  # noqa: F401

from conftest import ROOT, make_counts_adata
from scprior.data import far_species as fs
from scprior.data.species import get_species, register_species
from scprior.errors import ScpriorInputError
from scprior.knowledge.embeddings import GeneEmbeddings
from scprior.tasks.integration import far

RAW = ROOT / "data" / "raw" / "far_species"


# ------------------------------------------------------------------------------------- species
def test_any_species_is_a_name_and_builtins_keep_their_knowledge():
    assert get_species("Mus musculus").symbol_case == "title"
    fly = register_species("Fly", taxon_id=7227)
    assert fly.name == "fly" and fly.taxon_id == 7227 and fly.symbol_case is None and not fly.builtin
    assert get_species("7227") == fly  # the taxon id becomes an alias
    assert get_species("zebrafish").symbol_case is None
    with pytest.raises(ScpriorInputError, match="ships knowledge only for"):
        get_species("zebrafish", builtin_only=True)
    with pytest.raises(ScpriorInputError, match="taxon id 10090"):
        register_species("mouse", taxon_id=1)


# ----------------------------------------------------------------------------- count recovery
def _lognormalised(counts: np.ndarray, scale: float = 1e4) -> np.ndarray:
    return np.log1p(counts / counts.sum(axis=1, keepdims=True) * scale)


def test_counts_are_recovered_from_a_lognormalised_matrix():
    rng = np.random.default_rng(0)
    counts = rng.poisson(2.0, size=(12, 30)).astype(float)
    counts[:, 0] = 1  # every cell has a gene seen once (as every real cell of ~1,000 genes does)
    got = fs.recover_counts(sp.csr_matrix(_lognormalised(counts)))
    np.testing.assert_array_equal(got.toarray(), counts)
    with pytest.raises(ScpriorInputError, match="not integral"):
        fs.recover_counts(sp.csr_matrix(_lognormalised(counts) * 1.3))


def test_processed_layout_recovers_counts_and_drops_case_duplicates():
    rng = np.random.default_rng(1)
    counts = rng.poisson(1.5, size=(6, 5)).astype(float)
    counts[:, 0] = 1
    obj = {"counts": sp.csr_matrix(_lognormalised(counts)), "data": None, "genes": ["a", "B", "b", "c", "d"],
           "obs": pd.DataFrame({"annotation": list("xxyyzz")}, index=[f"c{i}" for i in range(6)])}
    out = fs.to_processed(obj, species="fly", dataset="toy", cell_type="annotation", batch="toy", provenance={})
    assert out.uns["scprior"]["counts_recovered_from_lognormalised"]
    assert out.n_vars == 4 and out.uns["scprior"]["genes_dropped_case_duplicates"] == 1
    kept = [0, 1, 3, 4] if counts[:, 1].astype(bool).sum() >= counts[:, 2].astype(bool).sum() else [0, 2, 3, 4]
    np.testing.assert_array_equal(out.layers["counts"].toarray(), counts[:, kept])
    assert set(out.obs["cell_type"]) == {"x", "y", "z"} and (out.obs["species"] == "fly").all()


@pytest.mark.skipif(not (RAW / "dme_subset.rda").is_file(), reason="data/raw/far_species not fetched")
def test_the_pinned_fly_file_reads_with_integer_counts():
    fly = fs.read_fly_gut(RAW / "dme_subset.rda")
    assert fly.n_obs == 180 and fly.obs["cell_type"].nunique() == 18
    assert fly.uns["scprior"]["counts_recovered_from_lognormalised"]
    c = fly.layers["counts"].data
    assert np.all(c == np.round(c)) and c.min() >= 1


# ----------------------------------------------------------------------------------- orthologs
def _hcop() -> pd.DataFrame:
    rows = [("A", "fly", "fa"), ("A", "mouse", "Ma"),  # one-to-one in both: kept
            ("B", "fly", "fb1"), ("B", "fly", "fb2"), ("B", "mouse", "Mb"),  # one-to-many in fly: dropped
            ("C", "fly", "fc"), ("C", "mouse", "Mc"), ("D", "mouse", "Mc"),  # Mc maps to two humans: dropped
            ("E", "fly", "fe"), ("E", "mouse", "Me")]  # fe not measured: dropped
    return pd.DataFrame(rows, columns=["human_symbol", "species", "symbol"])


def test_one_to_one_orthologs_through_human():
    pairs = fs.one2one_through_human(_hcop(), "fly", "mouse", genes_a=["FA", "fb1", "fb2", "fc"],
                                     genes_b=["ma", "Mb", "Mc", "Me"])
    assert pairs.to_dict("records") == [{"fly": "FA", "mouse": "ma", "human": "A"}]
    adatas = {"fly": ad.AnnData(X=sp.csr_matrix(np.ones((2, 3))), var=pd.DataFrame(index=["fa", "fc", "fe"])),
              "mouse": ad.AnnData(X=sp.csr_matrix(np.ones((2, 2))), var=pd.DataFrame(index=["Ma", "Mc"]))}
    assert far.one2one_through_human(_hcop(), adatas)["human"].tolist() == ["A"]
    with pytest.raises(ScpriorInputError, match="no rows for species 'frog'"):
        far.one2one_through_human(_hcop(), {**adatas, "frog": adatas["fly"]})


# -------------------------------------------------------------------------------- cell-type maps
def test_saturn_format_map_and_the_committed_fly_mouse_map(tmp_path):
    (tmp_path / "m.csv").write_text(",frog_cell_type,zebrafish_cell_type\n0,Germline,Germline\n"
                                    "1,Blastula,\n2,Neural crest,Neural crest\n3,Neural crest,Pigment\n")
    m = far.read_cell_type_map(tmp_path / "m.csv", ["frog", "zebrafish"])
    assert m.get("frog", "zebrafish") == {"Germline": {"Germline"}, "Neural crest": {"Neural crest", "Pigment"}}
    assert m.get("zebrafish", "frog")["Pigment"] == {"Neural crest"}
    with pytest.raises(ScpriorInputError, match="lacks column"):
        far.read_cell_type_map(tmp_path / "m.csv", ["frog", "axolotl"])
    demo = far.read_cell_type_map(ROOT / "data" / "cell_type_maps" / "fly_mouse_gut.csv", ["fly", "mouse"])
    assert demo.get("fly", "mouse")["adult midgut enterocyte"] == {"Enterocyte"}
    assert demo.get("mouse", "fly")["Enterocyte"] >= {"adult midgut enterocyte", "enterocyte-like"}
    table = pd.read_csv(ROOT / "data" / "cell_type_maps" / "fly_mouse_gut.csv", keep_default_na=False)
    assert (table["basis"].str.len() > 0).all()  # every row says where its match comes from


def test_shared_label_map_and_unmatched_types_count_as_errors():
    from scprior.tasks.integration.metrics import saturn_label_transfer

    a = ad.AnnData(obs=pd.DataFrame({"cell_type": ["Enterocyte", "Goblet"] * 5}))
    b = ad.AnnData(obs=pd.DataFrame({"cell_type": ["enterocyte", "Paneth"] * 5}))
    m = far.shared_label_map({"x": a, "y": b})
    assert m.get("x", "y") == {"Enterocyte": {"enterocyte"}} and "ontology" not in m.source
    emb = np.r_[np.tile([[1.0, 0], [0, 1]], (5, 1)), np.tile([[1.0, 0], [0, 1]], (5, 1))] * 10
    labels = np.r_[a.obs["cell_type"], b.obs["cell_type"]]
    species = np.r_[["x"] * 10, ["y"] * 10]
    r = saturn_label_transfer(emb, labels, species, source="x", target="y", cell_type_map=m.get("x", "y"),
                              train_fraction=0.99)
    assert r["ceiling"] == 0.5 and r["accuracy"] == pytest.approx(0.5) and r["balanced_accuracy"] == pytest.approx(0.5)


def test_bootstrap_interval_brackets_the_estimate():
    rng = np.random.default_rng(0)
    ok = [rng.random(200) < 0.7 for _ in range(3)]
    est, lo, hi = far.bootstrap_interval(ok, n_boot=200)
    assert lo < est < hi and 0.6 < est < 0.8
    truth = np.repeat(["a", "b"], 100)
    est_b, lo_b, hi_b = far.bootstrap_interval(ok, truth, n_boot=200)
    assert lo_b <= est_b <= hi_b


# --------------------------------------------------------------------- N species by params alone
def _write_species(tmp_path: Path, name: str, prefix: str, seed: int, n_cells: int) -> dict:
    """A synthetic species on disk: h5ad of counts + a text and a protein embedding file."""
    from scprior.knowledge.formats import write_embeddings

    a = make_counts_adata(n_cells, 40, seed=seed, n_types=3)
    a.var_names = [f"{prefix}{i}" for i in range(a.n_vars)]
    a.layers["counts"] = a.X.copy()
    a.obs["label"] = a.obs["cell_type_raw"].astype(str)
    a.write_h5ad(tmp_path / f"{name}.h5ad")
    files = {}
    rng = np.random.default_rng(seed)
    shared = np.random.default_rng(99).normal(size=(40, 6))  # gene i of every species is "the same" gene
    for set_name in ("protein", "text"):
        emb = GeneEmbeddings(np.asarray(a.var_names), shared + 0.1 * rng.normal(size=shared.shape), name, set_name)
        files[set_name] = str(write_embeddings(emb, tmp_path / f"{set_name}_{name}.parquet"))
    return {"name": f"{name}_data", "path": str(tmp_path / f"{name}.h5ad"), "species": name, "label_key": "label",
            "batch_key": "donor", "embeddings": files}


@pytest.fixture
def three_species(tmp_path):
    entries = [_write_species(tmp_path, "fly", "g", 0, 45), _write_species(tmp_path, "mouse", "Gm", 1, 40),
               _write_species(tmp_path, "axolotl", "AMEX", 2, 35)]  # the synthetic third species
    hcop = pd.DataFrame([(f"H{i}", e["species"], f"{p}{i}") for e, p in zip(entries, ("g", "Gm", "AMEX"))
                         for i in range(25)], columns=["human_symbol", "species", "symbol"])
    hcop.to_csv(tmp_path / "orthologs.csv", index=False)
    return {"datasets": entries, "orthologs": str(tmp_path / "orthologs.csv")}


def test_params_validation_fails_clearly(three_species):
    with pytest.raises(ScpriorInputError, match="at least two datasets"):
        far.FarConfig.from_params({"datasets": three_species["datasets"][:1]})
    bad = {**three_species["datasets"][0], "colour": "red"}
    with pytest.raises(ScpriorInputError, match="unknown key"):
        far.FarConfig.from_params({"datasets": [bad, three_species["datasets"][1]]})
    no_text = {**three_species["datasets"][2], "embeddings": {"protein": three_species["datasets"][2]["embeddings"]["protein"]}}
    with pytest.raises(ScpriorInputError, match="No text gene embeddings for species 'axolotl': supply"):
        far.load_task({**three_species, "datasets": three_species["datasets"][:2] + [no_text]}, n_hvg=30,
                      n_hvg_orthologs=20, root="/")


def test_a_third_species_is_added_by_params_alone(three_species, tmp_path):
    from scprior.models.macrogene_integrator import MacrogeneIntegratorConfig, integrate, pretrain
    from scprior.models.macrogene_outputs import (
        macrogene_expression,
        saturn_weights_dict,
        write_saturn_weights,
    )
    from scprior.tasks.integration import methods as mt

    ft = far.load_task(three_species, n_hvg=30, n_hvg_orthologs=20, root="/")
    task = ft.task
    assert list(task.adatas) == ["fly", "mouse", "axolotl"] and task.orthologs.n_vars == 20
    assert ft.cell_type_map.get("fly", "axolotl")["type0"] == {"type0"}  # shared labels without a map file
    settings = {"baselines": {"n_pcs": 5},
                "macrogenes": {"n_macrogenes": 8, "hidden_dim": 16, "latent_dim": 8, "pretrain_epochs": 2,
                               "metric_epochs": 1, "n_clusters": 3, "batch_size": 64}}
    runs = mt.run_methods(task, settings, seed=0, methods=["pca", "saturn", "unify_free"])
    assert {r.embedding.shape for r in runs.values()} >= {(120, 8)}
    assert set(runs["saturn"].unseen) == {f"{a}->{b}" for a in task.adatas for b in task.adatas if a != b}
    rows, correct = far.evaluate_far_seed(task.obs, runs, ft.cell_type_map, seed=0, pair=("fly", "axolotl"))
    assert set(rows["method"]) == {"pca", "saturn", "unify_free"} and len(correct[("saturn", "fly->axolotl")]) == 35
    # the anchors' layouts
    cfg = MacrogeneIntegratorConfig(n_macrogenes=8, hidden_dim=16, latent_dim=8, pretrain_epochs=1, metric_epochs=0,
                                    label_mode="none", progress=False)
    res = integrate(task.hvg, {"protein": task.knowledge.embeddings["protein"]}, config=cfg, key="X_saturn")
    assert res.adata.obsm["X_saturn"].shape == (120, 8) and list(res.adata.obs["species"].cat.categories) == list(task.adatas)
    w = saturn_weights_dict(res.weights, set_name="protein")
    assert len(w) == len(res.weights) and next(iter(w)).startswith("fly_") and next(iter(w.values())).shape == (8,)
    assert write_saturn_weights(res.weights, tmp_path / "w.pkl").stat().st_size > 0
    pre = pretrain(task.hvg, task.knowledge.embeddings, config=cfg)
    mx = macrogene_expression(pre, embedding=pre.embedding)
    assert mx.shape == (120, 16) and mx.var_names[0] == "protein_mg0" and mx.obsm["X_unify"].shape == (120, 8)
    assert np.isfinite(mx.X).all() and (mx.X >= 0).all()


def test_uce_and_scilama_take_three_species(three_species):
    from scprior.models.scilama import SciLaMAConfig, train_scilama
    from scprior.models.uce import UCEConfig, train_uce
    from scprior.tasks.integration.methods import scaled

    ft = far.load_task(three_species, n_hvg=30, n_hvg_orthologs=20, root="/")
    task = ft.task
    protein = task.knowledge.embeddings["protein"]
    cfg = UCEConfig(d_model=8, nhead=2, d_hid=16, nlayers=1, output_dim=8, head_hidden=8, decoder_hidden=[8],
                    sample_size=16, epochs=1, batch_size=32, progress=False)
    with pytest.raises(ScpriorInputError, match="No chromosome positions for species 'axolotl': supply"):
        train_uce(task.adatas, protein, {k: v for k, v in random_gene_tables(task.adatas).items() if k != "axolotl"},
                  config=cfg)
    res = train_uce(task.adatas, protein, random_gene_tables(task.adatas), config=cfg, diagnostics=0)
    assert res.adata.obsm["X_uce"].shape == (120, 8) and res.adata.obs["species"].nunique() == 3
    emb = {"protein": GeneEmbeddings(np.asarray(task.orthologs.var_names),
                                     np.random.default_rng(0).normal(size=(20, 6)), "human", "toy")}
    sres = train_scilama(scaled(task.orthologs), emb, covariate_key="species",
                         config=SciLaMAConfig(hidden_dims=(16,), latent_dim=4, epochs=1, warmup_epochs=0, progress=False))
    assert sres.adata.obsm["X_sciLaMA"].shape[0] == 120


def test_best_constant_and_the_verdict_follow_the_numbers():
    mapping = {"ent": frozenset({"E1", "E2", "E3"}), "mus": frozenset({"M"})}
    truth = np.repeat(["E1", "E2", "E3", "M", "X"], 4)
    assert far.best_constant(truth, mapping, ["ent", "mus"]) == pytest.approx(3 / 5)
    idx = pd.MultiIndex.from_product([["model", "base"], ["a->b"]], names=["method", "direction"])
    iv = pd.DataFrame({"bal": [0.5, 0.2], "bal_low": [0.45, 0.1], "bal_high": [0.55, 0.3], "best_constant": [0.3, 0.3],
                       "bal_ceiling": [0.8, 0.8]}, index=idx)
    summary = pd.DataFrame({"transfer_bal_acc[a->b]": [0.5, 0.2], "knn_bal_acc[a]": [0.9, 0.5]}, index=["model", "base"])
    recs = pd.DataFrame({"method": ["model", "model", "base", "base"], "transfer_bal_acc[a->b]": [0.45, 0.55, 0.1, 0.3]})
    lines = far.scarce_ortholog_verdict(summary, iv, models=["model"], baselines=["base"], directions=["a->b"],
                                        n_one2one=7, records=recs)
    assert "clearly beats" in lines[0] and "only model lie clearly above" in lines[0] and "7 one-to-one" in lines[-1]
    recs.loc[1, "transfer_bal_acc[a->b]"] = 0.2  # its worst seed below the baseline's best: not "clearly"
    lines = far.scarce_ortholog_verdict(summary, iv, models=["model"], baselines=["base"], directions=["a->b"],
                                        n_one2one=7, records=recs)
    assert "clearly beats" not in lines[0] and "seeds disagree" in lines[0]
    iv.loc[("model", "a->b"), "bal_low"] = 0.25  # no longer clearly above a constant guess
    iv.loc[("base", "a->b"), "bal_low"] = 0.05
    lines = far.scarce_ortholog_verdict(summary, iv, models=["model"], baselines=["base"], directions=["a->b"],
                                        n_one2one=7)
    assert "none transfers labels" in lines[0]
