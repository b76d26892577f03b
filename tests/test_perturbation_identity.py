"""Gene identity through var['gene_name'] (Ensembl-indexed GEARS files), coverage skips, the combined
baseline, the residual knowledge model, uncertainty per subgroup, the GEARS-like model objects."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from perturbation_fixtures import SYMBOLS, make_gears_adata

from scprior.data.perturbation_data import GeneIndex, PerturbationData, perturbation_coverage
from scprior.data.perturbation_splits import holdout_split, load_split, save_split
from scprior.models.perturbation_transformer import DeepConfig, PerturbationTransformer
from scprior.tasks import perturbation as pt
from scprior.tasks.perturbation.baselines import Combined, ResidualKnowledge

GENES = ["A", "B", "C", "D", "E", "F"]
CTRL = np.array([1.0, 2.0, 0.5, 0.0, 3.0, 1.0])


def _go(symbols, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [(s, f"GO:{t:07d}") for s in symbols for t in rng.choice(12, 4, replace=False)]
    return pd.DataFrame(rows, columns=["symbol", "go_id"])


@pytest.fixture(scope="module")
def ensembl_task():
    adata = make_gears_adata(ensembl_index=True)
    assert adata.var_names[0].startswith("ENSG")  # a GEARS-style file: Ensembl ids as var_names
    return PerturbationData.from_adata(adata, name="ensembl fixture")


def _split(task):
    return holdout_split(task.conditions, test=["KLF1+GATA1", "CEBPA+ctrl", "SPI1+ctrl"], val=["TAL1+SPI1"])


def test_gene_index_is_case_insensitive_and_uses_gene_name(ensembl_task):
    index = GeneIndex.from_adata(ensembl_task.adata)
    assert index.position("klf1") == index.position("KLF1") == SYMBOLS.index("KLF1")
    assert "ENSG00900000000" not in index and index.position("NOPE") is None
    assert list(ensembl_task.truth.columns) == SYMBOLS  # pseudobulk columns are symbols, not Ensembl ids
    assert perturbation_coverage(["klf1+ctrl", "NOPE+KLF1"], index) == pytest.approx(2 / 3)


def test_linear_pca_finds_perturbed_genes_in_an_ensembl_indexed_file(ensembl_task):
    """Fails on the code before the fix: the lookup used var_names, found nothing, predicted the mean."""
    run = pt.run_methods(ensembl_task, _split(ensembl_task), ["KLF1+GATA1", "CEBPA+ctrl", "SPI1+ctrl"],
                         knowledge=pt.KnowledgeInputs(), methods=("train_mean", "linear_pca"), seed=0)
    assert run.notes["linear_pca"]["coverage"] == 1.0
    lin, mean = run.predictions["linear_pca"], run.predictions["train_mean"]
    assert list(lin.columns) == SYMBOLS
    assert not np.allclose(lin.loc["SPI1+ctrl"], mean.loc["SPI1+ctrl"])


def test_methods_below_the_coverage_threshold_are_skipped_with_their_coverage(ensembl_task):
    # of the test perturbations' genes (KLF1, GATA1, CEBPA, SPI1) only KLF1 has GO terms
    go = pd.DataFrame({"symbol": ["KLF1", "TAL1", "KLF1", "TAL1"], "go_id": ["GO:1", "GO:1", "GO:2", "GO:2"]})
    run = pt.run_methods(ensembl_task, _split(ensembl_task), ["KLF1+GATA1", "CEBPA+ctrl", "SPI1+ctrl"],
                         knowledge=pt.KnowledgeInputs(go_annotations=go),
                         methods=("linear_pca", "linear_go", "ridge_go", "residual_go"), seed=0, min_coverage=0.5)
    assert "linear_pca" in run.predictions
    for method in ("ridge_go", "residual_go"):
        assert method not in run.predictions
        assert run.notes[method]["coverage"] == pytest.approx(1 / 4)
        assert "below 0.50" in run.notes[method]["skipped"]
    assert "linear_go" not in run.predictions and "skipped" in run.notes["linear_go"]  # 2 genes: no SVD


def test_linear_model_with_a_knowledge_embedding_predicts_unmeasured_genes():
    from scprior.tasks.perturbation.baselines import LinearGeneEmbedding

    rng = np.random.default_rng(1)
    genes = [f"G{i}" for i in range(30)]
    perts = [f"P{i}+ctrl" for i in range(12)]  # perturbed genes are not measured
    emb = pd.DataFrame(rng.normal(size=(13, 4)), index=[f"p{i}" for i in range(13)])  # lower-case on purpose
    W = rng.normal(size=(30, 4))
    train = pd.DataFrame([W @ emb.iloc[i].to_numpy() for i in range(12)], index=perts, columns=genes)
    plain = LinearGeneEmbedding(n_components=4).fit(train, np.zeros(30))
    assert plain.coverage(["P12+ctrl"]) == 0.0
    model = LinearGeneEmbedding(n_components=4, ridge=1e-6, pert_embedding=emb, label="go").fit(train, np.zeros(30))
    assert model.name == "linear_go" and model.coverage(["P12+ctrl"]) == 1.0
    truth = W @ emb.iloc[12].to_numpy()
    pred = model.predict(["P12+ctrl"]).loc["P12+ctrl"].to_numpy()
    assert np.corrcoef(pred, truth)[0, 1] > 0.9


def test_combined_baseline_by_hand():
    eff_a, eff_b = np.array([2.0, 0, 0, 1, 0, 0]), np.array([0, -1.0, 0, 0, 0.5, 0])
    train = pd.DataFrame({"ctrl": CTRL, "A+ctrl": CTRL + eff_a, "B+ctrl": CTRL + eff_b}, index=GENES).T
    mean_eff = (eff_a + eff_b) / 2
    pred = Combined().fit(train, CTRL).predict(["A+B", "a+X", "X+Y", "X+ctrl"])
    assert np.allclose(pred.loc["A+B"], CTRL + eff_a + eff_b)
    assert np.allclose(pred.loc["a+X"], CTRL + eff_a + mean_eff)  # case-insensitive, one gene seen
    assert np.allclose(pred.loc["X+Y"], CTRL + mean_eff) and np.allclose(pred.loc["X+ctrl"], CTRL + mean_eff)


def test_residual_model_learns_from_features_and_falls_back_on_validation():
    rng = np.random.default_rng(0)
    n_genes, n_perts = 20, 40
    feats = pd.DataFrame(rng.normal(size=(n_perts, 5)), index=[f"P{i}" for i in range(n_perts)])
    M = rng.normal(size=(5, n_genes))
    ctrl = rng.uniform(1, 2, n_genes)
    prof = {f"P{i}+ctrl": ctrl + feats.iloc[i].to_numpy() @ M for i in range(n_perts)}
    table = pd.DataFrame(prof).T
    train, val, test = table.iloc[:30], table.iloc[30:35], table.iloc[35:]
    model = ResidualKnowledge(feats, label="go").fit(train, ctrl, val=val)
    assert model.alpha_["(1, 1)"] is not None  # informative features: a residual is chosen
    err_model = np.mean((model.predict(list(test.index)).to_numpy() - test.to_numpy()) ** 2)
    err_base = np.mean((Combined().fit(train, ctrl).predict(list(test.index)).to_numpy() - test.to_numpy()) ** 2)
    assert err_model < 0.5 * err_base
    noise = pd.DataFrame(rng.normal(size=feats.shape), index=feats.index)
    shuffled = ResidualKnowledge(noise, label="x").fit(train, ctrl, val=val)
    base = Combined().fit(train, ctrl).predict(list(val.index)).to_numpy()
    assert np.mean((shuffled.predict(list(val.index)).to_numpy() - val.to_numpy()) ** 2) <= \
        np.mean((base - val.to_numpy()) ** 2) + 1e-12  # never worse than the baseline on validation


def test_subgroup_uncertainty_counts_and_intervals():
    rows = []
    for seed in (1, 2):
        for i in range(6):
            rows.append({"seed": seed, "method": "m", "condition": f"c{i}", "subgroup": "g" if i < 4 else "h",
                         "x": float(i + seed)})
    table = pt.subgroup_uncertainty(pd.DataFrame(rows), ["x"], n_boot=200)
    g = table.set_index("subgroup").loc["g"]
    assert g["n_conditions"] == 4 and g["n_seeds"] == 2
    assert g["x"] == pytest.approx(np.mean([1.5 + 1, 1.5 + 2]))
    assert g["x_sd"] == pytest.approx(np.std([2.5, 3.5], ddof=1))
    assert g["x_ci_low"] < g["x"] < g["x_ci_high"]
    assert table.set_index("subgroup").loc["all", "n_conditions"] == 6


def test_split_artefact_round_trip(tmp_path, ensembl_task):
    split = _split(ensembl_task)
    path = save_split(split, tmp_path / "s.json")
    back = load_split(path)
    assert back.assignment == split.assignment and back.test_subgroup == split.test_subgroup
    assert json.loads(path.read_text())["kind"] == "holdout"


def test_transformer_is_callable_on_gene_lists_and_round_trips(ensembl_task, tmp_path):
    cfg = DeepConfig(d_model=16, nhead=2, d_hid=32, max_epochs=1, pairs_per_epoch=32, val_pairs=8,
                     genes_per_sample=12, n_ctrl_predict=3, progress=False)
    model = PerturbationTransformer(ensembl_task, language=None, config=cfg, seed=0, name="scgpt")
    model.fit(_split(ensembl_task))
    out = model([["klf1"], ["GATA1", "KLF1"]])
    assert list(out.index) == ["klf1+ctrl", "GATA1+KLF1"] and list(out.columns) == SYMBOLS
    model.save(tmp_path / "m.pt")
    back = PerturbationTransformer.load(tmp_path / "m.pt", ensembl_task)
    assert np.allclose(back(["KLF1+GATA1"]).to_numpy(), model(["GATA1+KLF1"]).to_numpy())


def test_gears_runs_offline_on_our_files(ensembl_task, tmp_path):
    pytest.importorskip("gears")
    from scprior.models.gears_adapter import GearsConfig, GearsModel

    go = _go(SYMBOLS)
    gm = GearsModel(ensembl_task, go, config=GearsConfig(epochs=1, hidden_size=8, batch_size=8,
                                                         max_cells_per_condition=8, max_control_cells=30), seed=0)
    assert gm.coverage(["KLF1+GATA1"]) == 1.0 and gm.can_predict("SPI1+ctrl")
    gm.fit(_split(ensembl_task), weights=tmp_path / "gears.pt")
    pred = gm([["SPI1"], ["KLF1", "GATA1"]])
    assert pred.shape == (2, len(SYMBOLS)) and np.isfinite(pred.to_numpy()).all()
    assert (tmp_path / "gears.pt").is_file() and gm.notes["gears_version"]
