"""The baselines on pseudobulk tables built by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scprior.errors import ScpriorInputError
from scprior.tasks.perturbation.baselines import (
    Additive,
    KnowledgeRegressor,
    LinearGeneEmbedding,
    NoChange,
    TrainMean,
    canonical_pseudobulk,
    go_feature_table,
)

GENES = ["A", "B", "C", "D", "E", "F"]
CTRL = np.array([1.0, 2.0, 0.5, 0.0, 3.0, 1.0])


def _table(rows: dict[str, np.ndarray]) -> pd.DataFrame:
    return pd.DataFrame(rows, index=GENES).T


def test_no_change_train_mean_additive():
    eff_a = np.array([2.0, 0, 0, 1, 0, 0])
    eff_b = np.array([0, -1.0, 0, 0, 0.5, 0])
    train = _table({"ctrl": CTRL, "A+ctrl": CTRL + eff_a, "B+ctrl": CTRL + eff_b})
    assert np.allclose(NoChange().fit(train, CTRL).predict(["A+B"]).loc["A+B"], CTRL)
    assert np.allclose(TrainMean().fit(train, CTRL).predict(["X+ctrl"]).loc["X+ctrl"], CTRL + (eff_a + eff_b) / 2)
    add = Additive().fit(train, CTRL)
    pred = add.predict(["A+B", "A+X", "X+ctrl"])
    assert np.allclose(pred.loc["A+B"], CTRL + eff_a + eff_b)
    assert np.allclose(pred.loc["A+X"], CTRL + eff_a)  # X has no training single: adds nothing
    assert np.allclose(pred.loc["X+ctrl"], CTRL)
    assert add.coverage(["A+B", "A+X"]) == pytest.approx(0.75)
    with pytest.raises(ScpriorInputError):
        TrainMean().fit(_table({"ctrl": CTRL}), CTRL)


def test_linear_gene_embedding_is_the_ridge_solution():
    rng = np.random.default_rng(0)
    genes = [f"G{i}" for i in range(40)]
    perts = [f"G{i}+ctrl" for i in range(0, 40, 2)]
    Y = rng.normal(size=(len(genes), len(perts)))
    train = pd.DataFrame(Y.T, index=perts, columns=genes)
    model = LinearGeneEmbedding(n_components=5, ridge=0.1).fit(train, np.zeros(len(genes)))
    b = Y.mean(1)
    U, s, _ = np.linalg.svd(Y - b[:, None], full_matrices=False)
    G = U[:, :5] * s[:5]
    P = G[[genes.index(p.split("+")[0]) for p in perts]]
    W = np.linalg.inv(G.T @ G + 0.1 * np.eye(5)) @ G.T @ (Y - b[:, None]) @ P @ np.linalg.inv(P.T @ P + 0.1 * np.eye(5))
    query = ["G1+ctrl", "G3+G5", "NOTMEASURED+ctrl"]
    expected = np.stack([G @ W @ G[1] + b, G @ W @ (G[3] + G[5]) + b, b])
    assert np.allclose(model.predict(query).to_numpy(), expected)
    assert model.coverage(query) == pytest.approx(3 / 4)


def test_knowledge_regressor_uses_features():
    rng = np.random.default_rng(1)
    genes = [f"G{i}" for i in range(30)]
    feats = pd.DataFrame(rng.normal(size=(30, 4)), index=genes)
    weights = rng.normal(size=(4, len(GENES)))
    rows = {"ctrl": CTRL}
    for g in genes[:25]:
        rows[f"{g}+ctrl"] = CTRL + feats.loc[g].to_numpy() @ weights
    train = _table(rows)
    val = _table({f"{g}+ctrl": CTRL + feats.loc[g].to_numpy() @ weights for g in genes[25:27]})
    ridge = KnowledgeRegressor(feats, kind="ridge", label="test").fit(train, CTRL, val=val)
    assert ridge.name == "ridge_test" and ridge.alpha_ == 0.1  # the smallest penalty fits a linear truth best
    target = CTRL + feats.loc["G29"].to_numpy() @ weights
    assert np.abs(ridge.predict(["G29+ctrl"]).loc["G29+ctrl"] - target).max() < 0.2
    double = ridge.predict(["G27+G28"]).loc["G27+G28"].to_numpy()
    assert np.allclose(double, CTRL + (feats.loc["G27"] + feats.loc["G28"]).to_numpy() @ weights, atol=0.3)
    rf = KnowledgeRegressor(feats, kind="rf", label="test", n_estimators=20).fit(train, CTRL)
    assert rf.predict(["G29+ctrl"]).shape == (1, len(GENES))
    assert rf.coverage(["G29+ctrl", "NOPE+ctrl"]) == 0.5
    with pytest.raises(ScpriorInputError):
        KnowledgeRegressor(feats, kind="svm")


def test_go_feature_table_and_pooling():
    ann = pd.DataFrame({"symbol": ["A", "B", "B", "C", "D"], "go_id": ["GO:1", "GO:1", "GO:2", "GO:2", "GO:3"]})
    table = go_feature_table(ann, ["A", "B", "C", "D"])
    assert list(table.columns) == ["GO:1", "GO:2"]  # GO:3 has one gene only
    assert table.loc["B"].tolist() == [1.0, 1.0] and "D" not in table.index
    means = pd.DataFrame({"g": [1.0, 3.0, 5.0]}, index=["A+ctrl", "ctrl+A", "B+ctrl"])
    pooled = canonical_pseudobulk(means, ["A+ctrl", "ctrl+A", "B+ctrl"], pd.Series({"A+ctrl": 1, "ctrl+A": 3, "B+ctrl": 2}))
    assert pooled.loc["A+ctrl", "g"] == pytest.approx((1 * 1 + 3 * 3) / 4)
    assert list(pooled.index) == ["A+ctrl", "B+ctrl"]
