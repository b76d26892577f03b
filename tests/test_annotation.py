"""Annotation task: splits, pseudo-counts, metrics, verdicts, and that no test cell influences
any model selection (fine-tuning epoch, pretraining medians/vocabulary)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from conftest import make_counts_adata
from scprior.data.anndata_conventions import log_normalise
from scprior.models.genecompass import GeneCompassConfig, build_model, build_vocab
from scprior.models.genecompass.api import PretrainConfig
from scprior.tasks.annotation import metrics as am
from scprior.tasks.annotation.data import (
    TaskSplit,
    make_tasks,
    pbmc_pseudo_counts,
    stratified_holdout,
    validation_mask,
)
from scprior.tasks.annotation.genecompass import FinetuneConfig, macro_f1_torch
from scprior.tasks.annotation.run import _genecompass_runs


def _processed(n, g, species, seed, donors=2):
    a = make_counts_adata(n, g, species=species, seed=seed, n_batches=donors)
    a.layers["counts"] = a.X.copy()
    log_normalise(a)
    a.obs["cell_type"] = a.obs["cell_type_raw"].astype(str)
    a.obs["batch"] = [f"{species}{i % donors + 1}" for i in range(n)]
    a.obs["species"] = species
    return a


def test_scores_match_hand_computed_values():
    s = am.scores(["a", "a", "b", "c"], ["a", "b", "b", "b"])
    assert s["accuracy"] == 0.5
    # F1: a = 2/3, b = 2*1/(2+2) = 0.5, c = 0 -> macro 0.3889
    assert s["macro_f1"] == pytest.approx((2 / 3 + 0.5 + 0) / 3)
    assert s["per_class_f1"]["c"] == 0 and s["confusion"][0] == [1, 1, 0]


def test_macro_f1_torch_agrees_with_sklearn():
    import torch
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 4, 50), rng.integers(0, 4, 50)
    got = macro_f1_torch(torch.as_tensor(p), torch.as_tensor(y), 5).item()
    assert got == pytest.approx(f1_score(y, p, average="macro"), rel=1e-6)


def test_pbmc_pseudo_counts_invert_log_normalisation():
    a = _processed(20, 10, "human", 0)
    out = pbmc_pseudo_counts(a[:, :].copy())
    c = out.layers["counts"].toarray()
    np.testing.assert_allclose(c.sum(1), 1e4, atol=10)  # rescaled per cell (rounding)
    counts = a.layers["counts"].toarray()
    frac = counts / counts.sum(1, keepdims=True)
    np.testing.assert_allclose(c / 1e4, frac, atol=1e-3)
    assert "pseudo-counts" in out.uns["scprior"]["counts"]
    assert "counts" in a.layers and not np.allclose(a.layers["counts"].toarray(), c)  # input untouched


def test_tasks_hold_out_donors_and_species():
    data = {"human": _processed(40, 12, "human", 1, donors=3), "mouse": _processed(30, 12, "mouse", 2),
            "pbmc": _processed(30, 12, "human", 3, donors=1)}
    t = make_tasks(data, test_donors={"human": ["human3"], "mouse": ["mouse1"]})
    h = t["human_donor_holdout"]
    assert set(h.test.obs["batch"]) == {"human3"} and "human3" not in set(h.train.obs["batch"])
    assert t["human_to_mouse"].train_species == "human" and t["human_to_mouse"].test.n_obs == 30
    p = t["pbmc"]
    assert not set(p.train.obs_names) & set(p.test.obs_names)
    from scprior.errors import ScpriorInputError

    with pytest.raises(ScpriorInputError):
        make_tasks(data, test_donors={"human": ["nobody"], "mouse": ["mouse1"]})


def test_validation_mask_is_stratified_and_seeded():
    y = np.repeat(["a", "b", "c"], [20, 10, 2])
    m = validation_mask(y, 0.2, seed=0)
    assert m[y == "a"].sum() == 4 and m[y == "b"].sum() == 2 and m[y == "c"].sum() == 0
    np.testing.assert_array_equal(m, validation_mask(y, 0.2, seed=0))
    assert not np.array_equal(m, validation_mask(y, 0.2, seed=1))
    assert stratified_holdout(y, 0.5, seed=0)[y == "c"].sum() == 1


def _tiny_gc(corpus):
    vocab = build_vocab(corpus, max_genes_per_species=12)
    cfg = GeneCompassConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=16, top_k=10, dropout=0.0)
    return build_model(vocab, {}, cfg, seed=0)


def test_no_test_cell_influences_model_selection():
    train = _processed(60, 12, "human", 4)
    test = _processed(30, 12, "human", 5)
    gc = _tiny_gc([("human", train)])
    ft = FinetuneConfig(epochs=4, patience=5, batch_size=16, progress=False, device="cpu")

    def run(test_adata):
        recs = []
        task = TaskSplit("t", train, test_adata, "human", "human")
        notes = _genecompass_runs(gc, task, [0], ft, 0.2, [("genecompass", False), ("genecompass_frozen", True)],
                                  lambda m, s, p, secs: recs.append((m, p)))
        return notes, recs

    notes1, recs1 = run(test)
    # other test cells: shuffled labels, scrambled counts
    other = test.copy()
    other.obs["cell_type"] = np.random.default_rng(0).permutation(other.obs["cell_type"].to_numpy())
    other.layers["counts"] = sp.csr_matrix(np.random.default_rng(1).poisson(3, other.shape).astype(np.float32))
    notes2, recs2 = run(other)
    assert notes1 == notes2  # same best epochs and validation scores
    for (m1, p1), (m2, p2) in zip(recs1, recs2):
        assert m1 == m2 and len(p1) == len(p2)
    # selection really depends on the validation cells: another validation split can change it
    assert set(notes1) == {"genecompass_seed0", "genecompass_frozen_seed0"}


def test_pretraining_medians_and_vocab_ignore_held_out_corpus_cells():
    from scprior.tasks.annotation.genecompass import prepare_corpus

    data = {"human": _processed(40, 12, "human", 6), "mouse": _processed(30, 12, "mouse", 7),
            "pbmc": _processed(20, 12, "human", 8, donors=1)}
    cfg = GeneCompassConfig(hidden_size=8, num_layers=1, num_heads=2, intermediate_size=8, top_k=6)
    pc = PretrainConfig(val_fraction=0.25, seed=0)
    pre = prepare_corpus(data, knowledge_dir="unused", orthologs={}, prior_names=[], model=cfg, pretrain=pc,
                         max_genes_per_species=None, prior_dim=4)
    held = pre.val_idx[pre.val_idx < 40]
    changed = {k: v.copy() for k, v in data.items()}
    c = changed["human"].layers["counts"].toarray()
    c[held] = c[held] * 7 + 1
    changed["human"].layers["counts"] = sp.csr_matrix(c)
    pre2 = prepare_corpus(changed, knowledge_dir="unused", orthologs={}, prior_names=[], model=cfg, pretrain=pc,
                          max_genes_per_species=None, prior_dim=4)
    np.testing.assert_array_equal(pre.vocab.medians, pre2.vocab.medians)
    assert pre.vocab.symbols == pre2.vocab.symbols


def test_metrics_json_schema_and_computed_verdicts():
    rows = []
    for seed in (0, 1):
        rows += [{"task": "pbmc", "method": "genecompass", "seed": seed, "accuracy": 0.5, "macro_f1": 0.4 + 0.01 * seed},
                 {"task": "pbmc", "method": "logistic_regression", "seed": seed, "accuracy": 0.8, "macro_f1": 0.7}]
    rec = pd.DataFrame(rows)
    abl = pd.DataFrame([{"task": "pbmc", "method": "all_priors", "seed": 0, "accuracy": 0.5, "macro_f1": 0.4},
                        {"task": "pbmc", "method": "no_priors", "seed": 0, "accuracy": 0.6, "macro_f1": 0.5}])
    m = am.metrics_json(rec, abl, seeds=[0, 1], ablation_task="pbmc", ablation_seeds=[0])
    assert set(m) == {"simulated", "seeds", "tasks", "ablations"} and m["simulated"] is False
    assert set(m["tasks"]["pbmc"]["genecompass"]) == {"accuracy", "macro_f1"}
    assert m["tasks"]["pbmc"]["genecompass"]["macro_f1"] == pytest.approx(0.405)
    v = am.verdicts(rec)
    assert len(v) == 1 and "LOSES" in v[0] and "logistic regression" in v[0]
    rec.loc[rec["method"] == "genecompass", "macro_f1"] = 0.9
    assert "beats" in am.verdicts(rec)[0]
    assert "better than" in am.ablation_verdict(abl)[0]
