"""sciLaMA: modes, fusion, beta warm-up, shapes, determinism, contextual gene embeddings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from integration_helpers import one_torch_thread  # noqa: F401

from conftest import make_counts_adata
from scprior.errors import ScpriorInputError
from scprior.knowledge.embeddings import GeneEmbeddings
from scprior.models.scilama import SciLaMAConfig, fuse, train_scilama


@pytest.fixture(scope="module")
def data():
    a = make_counts_adata(120, 30, seed=0)
    a.obs["species"] = np.where(np.arange(a.n_obs) % 2, "human", "mouse")
    x = np.log1p(a.X.toarray())
    a.X = (x - x.mean(0)) / (x.std(0) + 1e-6)
    rng = np.random.default_rng(0)
    names = np.asarray(a.var_names)
    emb = {"text": GeneEmbeddings(names, rng.normal(size=(30, 12)), "human", "text_minilm"),
           "protein": GeneEmbeddings(names[:26], rng.normal(size=(26, 7)), "human", "protein_kmer")}
    return a, emb


def _cfg(**kw):
    return SciLaMAConfig(**{**dict(hidden_dims=(24, 12), latent_dim=4, epochs=4, warmup_epochs=1, beta_rate=0.5,
                                   batch_size=32, progress=False, device="cpu"), **kw})


@pytest.mark.parametrize("mode", ["direct", "stepwise", "beta_vae"])
def test_modes_shapes_and_phases(data, mode, tmp_path):
    a, emb = data
    res = train_scilama(a, emb, config=_cfg(mode=mode), covariate_key="species", checkpoint_dir=tmp_path)
    assert res.adata.obsm["X_sciLaMA"].shape == (120, 4)
    expected = {"direct": ["joint"], "stepwise": ["beta_vae", "gene_vae", "joint"], "beta_vae": ["beta_vae"]}[mode]
    assert list(res.phases) == expected
    assert all((tmp_path / f"scilama_{p}.pt").is_file() for p in expected)
    if mode == "beta_vae":
        assert res.gene_embeddings is None and res.genes == list(a.var_names)
    else:  # only genes with an embedding in both modalities
        assert res.gene_embeddings.shape == (26, 4) and list(res.gene_embeddings.index) == list(a.var_names[:26])
    assert a.obsm.keys() == set()


def test_stepwise_freezes_the_sample_vae_in_its_second_phase(data, tmp_path):
    a, emb = data
    res = train_scilama(a, emb, config=_cfg(mode="stepwise", epochs=2, patience=None), covariate_key="species",
                        checkpoint_dir=tmp_path)
    assert all(p.requires_grad for p in res.model.parameters())  # unfrozen for the joint phase
    states = {p: torch.load(tmp_path / f"scilama_{p}.pt", weights_only=True)["model_state"]
              for p in ("beta_vae", "gene_vae", "joint")}
    sample = [k for k in states["beta_vae"] if k.split(".")[0] in ("sample_encoder", "sample_decoder", "output")]
    gene = [k for k in states["beta_vae"] if k.startswith("gene_")]
    assert sample and gene
    # phase 2 trains the gene VAE only: sample-VAE weights stay as phase 1 left them; phase 3 moves both
    assert all(torch.equal(states["beta_vae"][k], states["gene_vae"][k]) for k in sample)
    assert not all(torch.equal(states["beta_vae"][k], states["gene_vae"][k]) for k in gene)
    assert not all(torch.equal(states["gene_vae"][k], states["joint"][k]) for k in sample)
    # phase 2 history has the joint loss terms, like the joint phase
    assert {"train_sse", "train_kl", "val_loss"} <= set(res.phases["gene_vae"].history[0])


def test_deterministic_under_a_seed(data):
    a, emb = data
    z1 = train_scilama(a, emb, config=_cfg(seed=2)).adata.obsm["X_sciLaMA"]
    z2 = train_scilama(a, emb, config=_cfg(seed=2)).adata.obsm["X_sciLaMA"]
    z3 = train_scilama(a, emb, config=_cfg(seed=5)).adata.obsm["X_sciLaMA"]
    np.testing.assert_array_equal(z1, z2)
    assert not np.allclose(z1, z3)


def test_beta_warmup_schedule():
    cfg = SciLaMAConfig(warmup_epochs=25, beta_rate=0.05, beta_max=1.0)
    assert [cfg.beta(e) for e in (0, 24)] == [0.0, 0.0]
    assert cfg.beta(25) == pytest.approx(0.05) and cfg.beta(44) == pytest.approx(1.0) and cfg.beta(100) == 1.0


def test_fusion_rules():
    m = [torch.tensor([[0.0]]), torch.tensor([[2.0]])]
    s = [torch.tensor([[1.0]]), torch.tensor([[0.5]])]
    mu, sig = fuse(m, s, "average")
    assert mu.item() == 1.0 and sig.item() == 0.75
    mu, sig = fuse(m, s, "poe")
    assert mu.item() == pytest.approx(2.0 * 4 / 5, rel=1e-5) and sig.item() == pytest.approx((1 / 5) ** 0.5, rel=1e-4)
    mu2, sig2 = fuse(m, s, "moe")
    assert mu2.item() == pytest.approx(mu.item()) and sig2.item() > sig.item()


def test_bad_inputs(data):
    a, emb = data
    with pytest.raises(ScpriorInputError, match="needs gene embeddings"):
        train_scilama(a, None, config=_cfg(mode="direct"))
    with pytest.raises(ScpriorInputError, match="mode must be"):
        _cfg(mode="joint")
    b = a.copy()
    b.X[0, 0] = np.nan
    with pytest.raises(ScpriorInputError, match="NaN"):
        train_scilama(b, emb, config=_cfg())
    wrong = {"text": GeneEmbeddings(np.array(["ZZZ"]), np.ones((1, 3)), "human", "text_minilm")}
    with pytest.raises(ScpriorInputError, match="No gene has an embedding"):
        train_scilama(a, wrong, config=_cfg())
