"""Macrogenes (SATURN weights) and the macrogene integrator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from integration_helpers import one_torch_thread, random_embeddings, two_species  # noqa: F401

from scprior.errors import ScpriorInputError
from scprior.knowledge.embeddings import GeneEmbeddings
from scprior.models.macrogene_integrator import (
    MacrogeneIntegratorConfig,
    embed,
    integrate,
    load_integrator,
)
from scprior.models.macrogenes import MacrogeneLayer, build_macrogenes, rank_weights


def test_rank_weights_formula():
    d = np.array([[0.1, 0.5, 0.3, 0.9], [2.0, 1.0, 3.0, 0.5]])
    w = rank_weights(d)
    ranks = np.array([[1, 3, 2, 4], [3, 2, 4, 1]], dtype=float)
    np.testing.assert_allclose(w, 2 * np.log(1 + 1 / ranks) ** 2, rtol=1e-6)
    assert w[0, 0] == pytest.approx(2 * np.log(2) ** 2, rel=1e-6)  # nearest centroid: 0.961
    # ties share the average rank
    np.testing.assert_allclose(rank_weights(np.array([[1.0, 1.0]]))[0], 2 * np.log(1 + 1 / 1.5) ** 2, rtol=1e-6)


def test_build_macrogenes_pools_species_and_reports_missing():
    adatas = two_species(n_genes=30)
    emb = random_embeddings(adatas, dim=8, source="protein_kmer", drop=4)
    genes = {s: list(a.var_names) for s, a in adatas.items()}
    mg = build_macrogenes(emb, genes, n_macrogenes=6, seed=0)
    assert mg.weights.shape == (26 + 21, 6)
    assert list(mg.genes["species"].unique()) == ["human", "mouse"]
    assert len(mg.reports["human"].missing) == 4
    assert (mg.weights > 0).all() and np.allclose(mg.weights.max(1), 2 * np.log(2) ** 2)
    frame = mg.to_frame()
    assert frame.index.names == ["species", "gene"] and frame.shape == (47, 6)
    again = build_macrogenes(emb, genes, n_macrogenes=6, seed=0)
    np.testing.assert_array_equal(mg.weights, again.weights)
    assert build_macrogenes(emb, genes, n_macrogenes=500).n_macrogenes == 47  # capped at the genes


def test_build_macrogenes_fails_clearly_on_empty_mapping():
    adatas = two_species(n_genes=20)
    emb = random_embeddings(adatas, dim=4, source="protein_kmer")
    genes = {"human": list(adatas["human"].var_names), "mouse": ["NotAGene1", "NotAGene2"]}
    with pytest.raises(ScpriorInputError, match="0 of the dataset's genes"):
        build_macrogenes(emb, genes, n_macrogenes=3)


def test_macrogene_layer_forward_mask_and_regulariser():
    adatas = two_species(n_genes=20)
    emb = random_embeddings(adatas, dim=5, source="t")
    mg = build_macrogenes(emb, {"human": list(adatas["human"].var_names)}, n_macrogenes=4)
    rows = np.arange(len(mg.genes)) + 3  # placed after 3 uncovered genes
    layer = MacrogeneLayer.from_macrogenes(mg, rows, n_genes=len(rows) + 5)
    w = layer.weights().detach().numpy()
    assert np.all(w[:3] == 0) and np.all(w[-2:] == 0)
    np.testing.assert_allclose(w[3:-2], mg.weights, rtol=1e-5)
    x = torch.rand(2, len(rows) + 5)
    np.testing.assert_allclose(layer(x).detach().numpy(), x.numpy() @ w, rtol=1e-5)
    assert layer.similarity_penalty().item() > 0  # random embeddings never match the rank weights exactly
    fixed = MacrogeneLayer.from_macrogenes(mg, rows, len(rows) + 5, learnable=False)
    assert len(list(fixed.parameters())) == 0 and len(list(layer.parameters())) == 1
    # weights that reproduce the embedding geometry have no similarity penalty; others do
    pos = torch.rand(6, 3) + 0.1
    toy = MacrogeneLayer(6, 3, 3)
    with torch.no_grad():
        toy.mask[:] = 1.0
        toy.log_w.copy_(torch.log(pos))
        toy.gene_embeddings.copy_(torch.nn.functional.normalize(pos, dim=1))
    assert toy.similarity_penalty().item() == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        toy.gene_embeddings.copy_(torch.nn.functional.normalize(torch.randn(6, 3), dim=1))
    assert toy.similarity_penalty(n_pairs=50).item() > 0


def _config(**kw) -> MacrogeneIntegratorConfig:
    base = dict(n_macrogenes=8, hidden_dim=16, latent_dim=6, pretrain_epochs=2, metric_epochs=2, batch_size=64,
                progress=False, n_clusters=3, device="cpu")
    return MacrogeneIntegratorConfig(**{**base, **kw})


def _sets(adatas):
    return {"protein": random_embeddings(adatas, dim=12, source="protein_kmer", drop=3),
            "text": random_embeddings(adatas, dim=6, source="text_minilm", seed=1)}


def test_integrate_shapes_weights_and_checkpoints(tmp_path):
    adatas = two_species()
    res = integrate(adatas, _sets(adatas), config=_config(adversarial_weight=0.5), checkpoint_dir=tmp_path)
    z = res.adata.obsm["X_unify"]
    assert z.shape == (170, 6) and np.isfinite(z).all()
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, rtol=1e-5)  # normalised after metric learning
    assert list(res.adata.obs["species"].cat.categories) == ["human", "mouse"]
    # the axis holds genes covered by either set (text covers all), weights: 8 protein + 8 text columns
    assert res.weights.shape == (40 + 35, 16)
    assert (res.weights.filter(like="protein").loc["human"].tail(3) == 0).all().all()
    assert {"train_adversarial", "val_nll"} <= set(res.pretrain.history[0])
    assert (tmp_path / "unify_pretrain.pt").is_file() and (tmp_path / "unify_metric.pt").is_file()
    model, axis = load_integrator(tmp_path / "unify_metric.pt")
    np.testing.assert_allclose(embed(model, axis, adatas["mouse"], "mouse"), z[90:], atol=1e-5)
    assert adatas["human"].obsm.keys() == set()  # inputs untouched


def test_integrate_is_deterministic_under_a_seed_and_seed_matters():
    adatas = two_species()
    sets = _sets(adatas)
    a = integrate(adatas, sets, config=_config(seed=3)).adata.obsm["X_unify"]
    b = integrate(adatas, sets, config=_config(seed=3)).adata.obsm["X_unify"]
    c = integrate(adatas, sets, config=_config(seed=4)).adata.obsm["X_unify"]
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_decoder_is_conditioned_on_each_cells_own_species():
    adatas = two_species()
    res = integrate(adatas, {"protein": _sets(adatas)["protein"]},
                    config=_config(label_mode="none"), key="X_saturn")
    model = res.model.eval()
    z = torch.zeros(2, 6)
    lib = torch.tensor([100.0, 100.0])
    mu_h, _, _ = model.decode(z, torch.tensor([0, 0]), lib)
    mu_m, _, _ = model.decode(z, torch.tensor([1, 1]), lib)
    human = (model.gene_species == 0).numpy()
    assert torch.allclose(mu_h.sum(1), lib) and torch.allclose(mu_m.sum(1), lib)
    assert mu_h[:, ~human].abs().max() == 0 and mu_m[:, human].abs().max() == 0
    assert res.metric is None and "X_saturn" in res.adata.obsm


def test_label_free_mode_needs_no_labels_and_three_species_fail_cleanly():
    adatas = two_species()
    for a in adatas.values():
        del a.obs["cell_type"]
    res = integrate(adatas, _sets(adatas), config=_config(label_mode="clusters"), label_key=None)
    assert res.metric is not None and res.metric.history[-1]["train_triplets"] > 0
    with pytest.raises(ScpriorInputError, match="cell_type"):
        integrate(adatas, _sets(adatas), config=_config(label_mode="weak"))
    with pytest.raises(ScpriorInputError, match=">= 2 species"):
        integrate({"human": adatas["human"]}, _sets(adatas), config=_config())


def test_config_names_the_metric_learning_positives():
    assert MacrogeneIntegratorConfig().positives == "cross_species"  # SATURN's miner
    with pytest.raises(ScpriorInputError, match="positives"):
        MacrogeneIntegratorConfig(positives="same_species")


def test_integrate_rejects_normalised_data():
    adatas = two_species()
    adatas["mouse"].layers["counts"] = adatas["mouse"].layers["counts"] * 0.5
    with pytest.raises(ScpriorInputError, match="raw counts"):
        integrate(adatas, _sets(adatas), config=_config())


def test_gene_embeddings_of_other_species_do_not_match():
    adatas = two_species()
    emb = random_embeddings(adatas, dim=4, source="protein_kmer")
    wrong = {"human": emb["human"], "mouse": GeneEmbeddings(np.array(["XYZ1", "XYZ2"]), np.ones((2, 4)), "mouse", "protein_kmer")}
    with pytest.raises(ScpriorInputError, match="embedding"):
        integrate(adatas, {"protein": wrong}, config=_config())
