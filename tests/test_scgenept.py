"""scGenePT / scGPT-setting model: token building, forward passes, training through `fit`."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from perturbation_fixtures import make_gears_adata

from scprior.data.perturbation_splits import holdout_split
from scprior.knowledge.embeddings import GeneEmbeddings
from scprior.models.scgenept import (
    FLAG_OFF,
    FLAG_ON,
    FLAG_PAD,
    ScGenePT,
    ScGenePTConfig,
    build_sequence,
    language_table,
    sample_gene_subset,
)
from scprior.tasks.perturbation import (
    DeepConfig,
    DeepPerturbationModel,
    KnowledgeInputs,
    PerturbationTask,
    run_methods,
)

N_MEASURED, N_TOKENS = 6, 8  # 6 measured genes, 1 unmeasured perturbable gene (id 6), pad id 7


def _model(lang: bool, **kw) -> ScGenePT:
    torch.manual_seed(0)
    cfg = ScGenePTConfig(n_tokens=N_TOKENS, n_measured=N_MEASURED, d_model=16, nhead=2, d_hid=32, nlayers=2, **kw)
    table = torch.randn(N_TOKENS, 12) if lang else None
    return ScGenePT(cfg, table)


def test_build_sequence_flags_and_extra_tokens():
    x = torch.arange(12, dtype=torch.float32).reshape(2, 6)
    pert = torch.tensor([[2, -1], [6, 1]])  # cell 0: measured gene 2; cell 1: unmeasured gene 6 + gene 1
    tokens, values, flags, mask, L = build_sequence(x, pert, None, n_measured=N_MEASURED, pad_id=7)
    assert L == 6 and tokens.shape == (2, 8)
    assert flags[0].tolist() == [FLAG_OFF, FLAG_OFF, FLAG_ON, FLAG_OFF, FLAG_OFF, FLAG_OFF, FLAG_PAD, FLAG_PAD]
    assert tokens[1, 6].item() == 6 and flags[1, 6].item() == FLAG_ON and not mask[1, 6]
    assert flags[1, 1].item() == FLAG_ON and mask[1, 7] and mask[0, 6]
    assert values[1, :6].tolist() == x[1].tolist() and values[1, 6].item() == 0.0


def test_sample_gene_subset_keeps_perturbed_genes():
    pert = torch.tensor([[3, -1], [17, 40]])
    gen = torch.Generator().manual_seed(0)
    subset = sample_gene_subset(pert, 30, 8, generator=gen)
    assert len(subset) == 8 and 3 in subset.tolist() and len(set(subset.tolist())) == 8
    assert torch.equal(subset, torch.sort(subset)[0])
    assert len(sample_gene_subset(pert, 30, 50)) == 30


@pytest.mark.parametrize("lang", [False, True])
def test_forward_pass(lang):
    model = _model(lang)
    model.eval()
    x = torch.rand(3, N_MEASURED)
    pert = torch.tensor([[1, -1], [6, -1], [1, 6]])
    out = model.forward_cells(x, pert)
    assert out.shape == (3, N_MEASURED) and torch.isfinite(out).all()
    assert model.uses_language == lang
    subset = torch.tensor([0, 1, 4])
    assert model.forward_cells(x, pert, subset).shape == (3, 3)
    # the perturbation flag changes the prediction
    none = model.forward_cells(x, torch.full((3, 2), -1))
    assert not torch.allclose(out, none)


def test_language_embedding_changes_the_model_and_residual_mode():
    x = torch.rand(2, N_MEASURED)
    pert = torch.tensor([[6, -1], [2, -1]])
    a, b = _model(False).eval(), _model(True).eval()
    assert not torch.allclose(a.forward_cells(x, pert), b.forward_cells(x, pert))
    res = _model(False, residual=True).eval()
    direct = _model(False).eval()
    res.load_state_dict(direct.state_dict())
    assert torch.allclose(res.forward_cells(x, pert) - x, direct.forward_cells(x, pert), atol=1e-6)


def test_language_table_fills_missing_genes():
    emb = GeneEmbeddings(np.array(["KLF1", "GATA1"], dtype=object), np.ones((2, 4), dtype=np.float32), "human", "text_test")
    table, report = language_table(["GATA1", "NOPE", "KLF1"], emb, seed=0)
    assert table.shape == (4, 4) and np.allclose(table[0], 1) and np.allclose(table[2], 1)
    assert 0 < np.abs(table[1]).max() < 0.1 and np.allclose(table[3], 0)
    assert report.missing == ["NOPE"]


@pytest.fixture(scope="module")
def task():
    return PerturbationTask.from_adata(make_gears_adata(), name="fixture")


def _split(task):
    return holdout_split(task.conditions, test=["KLF1+GATA1", "CEBPA+ctrl"], val=["TAL1+SPI1"])


def test_deep_model_trains_through_fit_and_keeps_the_best_epoch(task, tmp_path):
    cfg = DeepConfig(d_model=16, nhead=2, d_hid=32, max_epochs=6, patience=10, pairs_per_epoch=64, val_pairs=24,
                     genes_per_sample=12, n_ctrl_predict=5, lr=5e-3, progress=False)
    deep = DeepPerturbationModel(task, language=None, config=cfg, seed=0, name="scgpt")
    result = deep.fit(_split(task), checkpoint=tmp_path / "m.pt")
    val = [row["val_loss"] for row in result.history]
    assert result.best_epoch == int(np.argmin(val))
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    state = torch.load(tmp_path / "m.pt", weights_only=True)
    assert state["best_epoch"] == result.best_epoch and state["token_symbols"] == deep.symbols
    pred = deep.predict(["KLF1+GATA1", "ctrl+KLF1"])
    assert list(pred.index) == ["GATA1+KLF1", "KLF1+ctrl"] and pred.shape[1] == len(task.genes)
    assert np.isfinite(pred.to_numpy()).all()


def test_run_methods_covers_every_method_and_reports_skips(task):
    rng = np.random.default_rng(0)
    symbols = np.array(task.genes, dtype=object)
    text = GeneEmbeddings(symbols, rng.normal(size=(len(symbols), 8)).astype(np.float32), "human", "text_test")
    cfg = DeepConfig(d_model=16, nhead=2, d_hid=32, max_epochs=1, pairs_per_epoch=32, val_pairs=8,
                     genes_per_sample=12, n_ctrl_predict=3, progress=False)
    run = run_methods(task, _split(task), ["KLF1+GATA1", "CEBPA+ctrl"], knowledge=KnowledgeInputs(text=text),
                      seed=0, deep_config=cfg)
    assert {"no_change", "train_mean", "additive", "linear_pca", "ridge_text", "rf_text", "scgpt",
            "scgenept_text"} <= set(run.predictions)
    for method in ("ridge_go", "rf_go", "scgenept_go"):  # no GO given: skipped, and said so
        assert method not in run.predictions and "skipped" in run.notes[method]
    assert run.notes["scgenept_text"]["language_coverage"] == 1.0
