"""The simple baselines every perturbation model must be reported beside.

All work on pseudobulk profiles: ``train`` is a DataFrame (canonical condition -> mean
log-normalised expression over genes) of the *training* conditions, ``ctrl`` the control mean.
Each baseline has ``fit(train, ctrl)`` and ``predict(conditions) -> DataFrame`` (canonical names in,
mean profiles out).

- :class:`NoChange`: the control mean (GEARS's pearson_delta is 0 for it by convention);
- :class:`TrainMean`: the mean of the training perturbations (matches GEARS on Norman, per the
  scGPT/GEARS re-evaluations);
- :class:`Additive`: control plus the sum of the perturbed genes' single-perturbation effects seen
  in training (a gene without a training single adds nothing);
- :class:`LinearGeneEmbedding`: Ahlmann-Eltze et al.'s linear model, ``Y = G W P^T + b`` with ``G``
  the top-K PCA gene embedding of the training pseudobulk, ``P`` the rows of ``G`` of the perturbed
  genes (summed for doubles), ridge-penalised least squares for ``W``;
- :class:`KnowledgeRegressor`: Csendes et al.'s ridge / random forest from prior-knowledge
  features of the perturbed genes (GO annotations, text embeddings) to the expression change.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from scprior.data.perturbations import canonical_condition, is_control, parse_condition
from scprior.errors import ScpriorInputError


def _perturbations(train: pd.DataFrame) -> pd.DataFrame:
    return train.loc[[c for c in train.index if not is_control(c)]]


class NoChange:
    """Predict the control mean for every perturbation."""

    name = "no_change"

    def fit(self, train: pd.DataFrame, ctrl: np.ndarray) -> NoChange:
        self.genes_, self.ctrl_ = train.columns, np.asarray(ctrl, dtype=np.float64)
        return self

    def predict(self, conditions: Sequence[str]) -> pd.DataFrame:
        return pd.DataFrame(np.tile(self.ctrl_, (len(conditions), 1)), index=list(conditions), columns=self.genes_)


class TrainMean(NoChange):
    """Predict the mean profile of the training perturbations for every perturbation."""

    name = "train_mean"

    def fit(self, train: pd.DataFrame, ctrl: np.ndarray) -> TrainMean:
        super().fit(train, ctrl)
        perts = _perturbations(train)
        if perts.empty:
            raise ScpriorInputError("TrainMean needs at least one training perturbation.")
        self.ctrl_ = perts.mean(axis=0).to_numpy()
        return self


class Additive(NoChange):
    """Control + sum over perturbed genes of (training single mean - control)."""

    name = "additive"

    def fit(self, train: pd.DataFrame, ctrl: np.ndarray) -> Additive:
        super().fit(train, ctrl)
        self.effects_ = {}
        for cond in train.index:
            genes = parse_condition(cond)
            if len(genes) == 1:
                self.effects_[genes[0]] = train.loc[cond].to_numpy() - self.ctrl_
        return self

    def coverage(self, conditions: Sequence[str]) -> float:
        """Fraction of perturbed genes of ``conditions`` that have a training single."""
        genes = [g for c in conditions for g in parse_condition(c)]
        return float(np.mean([g in self.effects_ for g in genes])) if genes else 0.0

    def predict(self, conditions: Sequence[str]) -> pd.DataFrame:
        rows = []
        for c in conditions:
            pred = self.ctrl_.copy()
            for g in parse_condition(c):
                if g in self.effects_:
                    pred = pred + self.effects_[g]
            rows.append(pred)
        return pd.DataFrame(rows, index=list(conditions), columns=self.genes_)


class LinearGeneEmbedding(NoChange):
    """Ahlmann-Eltze et al. linear model: Y ~ G W P^T + b, G = PCA gene embedding (K dims)."""

    name = "linear_pca"

    def __init__(self, *, n_components: int = 10, ridge: float = 0.1):
        self.n_components = n_components
        self.ridge = ridge

    def fit(self, train: pd.DataFrame, ctrl: np.ndarray) -> LinearGeneEmbedding:
        super().fit(train, ctrl)
        perts = _perturbations(train)
        Y = perts.to_numpy(dtype=np.float64).T  # genes x perturbations
        self.b_ = Y.mean(axis=1)
        Yc = Y - self.b_[:, None]
        k = int(min(self.n_components, min(Yc.shape) - 1 if min(Yc.shape) > 1 else 1))
        U, s, _ = np.linalg.svd(Yc, full_matrices=False)
        self.G_ = U[:, :k] * s[:k]
        self.gene_pos_ = {g: i for i, g in enumerate(train.columns)}
        P = self._pert_embedding(perts.index)  # n_perts x k
        lam = self.ridge
        A = self.G_
        left = np.linalg.solve(A.T @ A + lam * np.eye(k), A.T @ Yc)  # k x n_perts
        self.W_ = np.linalg.solve(P.T @ P + lam * np.eye(k), (left @ P).T).T  # k x k
        return self

    def _pert_embedding(self, conditions: Sequence[str]) -> np.ndarray:
        P = np.zeros((len(conditions), self.G_.shape[1]))
        for i, c in enumerate(conditions):
            for g in parse_condition(c):
                if g in self.gene_pos_:
                    P[i] += self.G_[self.gene_pos_[g]]
        return P

    def coverage(self, conditions: Sequence[str]) -> float:
        """Fraction of perturbed genes of ``conditions`` that are measured (have a row in G)."""
        genes = [g for c in conditions for g in parse_condition(c)]
        return float(np.mean([g in self.gene_pos_ for g in genes])) if genes else 0.0

    def predict(self, conditions: Sequence[str]) -> pd.DataFrame:
        P = self._pert_embedding(conditions)
        pred = (self.G_ @ self.W_ @ P.T).T + self.b_[None, :]
        return pd.DataFrame(pred, index=list(conditions), columns=self.genes_)


class KnowledgeRegressor(NoChange):
    """Ridge or random forest from gene knowledge features to the expression change (Csendes et al.).

    ``features``: DataFrame indexed by gene symbol (rows: genes, columns: features, e.g. GO
    indicators or a text embedding). A perturbation's feature vector is the sum over its genes
    (zeros for a gene without features). The target is ``mean - ctrl`` of each training
    perturbation; the prediction is ``ctrl`` + the regressor's output. With ``kind="ridge"`` the
    penalty is chosen from ``alphas`` on validation conditions when ``fit`` gets them.
    """

    def __init__(self, features: pd.DataFrame, *, kind: str = "ridge", label: str = "", alphas=(0.1, 1.0, 10.0, 100.0),
                 n_estimators: int = 100, seed: int = 0):
        if kind not in {"ridge", "rf"}:
            raise ScpriorInputError(f"kind must be 'ridge' or 'rf', got {kind!r}")
        if features.empty:
            raise ScpriorInputError("KnowledgeRegressor got an empty feature table.")
        self.features = features.groupby(features.index.astype(str).str.upper()).mean()
        self.kind = kind
        self.alphas = tuple(alphas)
        self.n_estimators = n_estimators
        self.seed = seed
        self.name = f"{kind}_{label}" if label else kind

    def _x(self, conditions: Sequence[str]) -> np.ndarray:
        X = np.zeros((len(conditions), self.features.shape[1]))
        for i, c in enumerate(conditions):
            for g in parse_condition(c):
                key = g.upper()
                if key in self.features.index:
                    X[i] += self.features.loc[key].to_numpy()
        return X

    def coverage(self, conditions: Sequence[str]) -> float:
        """Fraction of perturbed genes of ``conditions`` that have features."""
        genes = [g.upper() for c in conditions for g in parse_condition(c)]
        return float(np.mean([g in self.features.index for g in genes])) if genes else 0.0

    def _model(self, alpha: float):
        if self.kind == "ridge":
            from sklearn.linear_model import Ridge

            return Ridge(alpha=alpha)
        from sklearn.ensemble import RandomForestRegressor

        return RandomForestRegressor(n_estimators=self.n_estimators, max_features="sqrt", min_samples_leaf=2,
                                     random_state=self.seed, n_jobs=1)

    def fit(self, train: pd.DataFrame, ctrl: np.ndarray, *, val: pd.DataFrame | None = None) -> KnowledgeRegressor:
        super().fit(train, ctrl)
        perts = _perturbations(train)
        X, Y = self._x(perts.index), perts.to_numpy() - self.ctrl_[None, :]
        alpha = self.alphas[len(self.alphas) // 2]
        if self.kind == "ridge" and val is not None and len(_perturbations(val)):
            vp = _perturbations(val)
            Xv, Yv = self._x(vp.index), vp.to_numpy() - self.ctrl_[None, :]
            errors = [np.mean((self._model(a).fit(X, Y).predict(Xv) - Yv) ** 2) for a in self.alphas]
            alpha = self.alphas[int(np.argmin(errors))]
        self.alpha_ = alpha
        self.model_ = self._model(alpha).fit(X, Y)
        return self

    def predict(self, conditions: Sequence[str]) -> pd.DataFrame:
        pred = self.model_.predict(self._x(conditions)) + self.ctrl_[None, :]
        return pd.DataFrame(pred, index=list(conditions), columns=self.genes_)


def go_feature_table(annotations: pd.DataFrame, genes: Sequence[str], *, min_genes: int = 2) -> pd.DataFrame:
    """Binary gene x GO-term table for ``genes`` from an annotation table (``symbol``, ``go_id``).

    Keeps terms annotated to at least ``min_genes`` of ``genes`` (others cannot generalise).
    Genes without any kept term are absent from the result (they get zero features).
    """
    for col in ("symbol", "go_id"):
        if col not in annotations:
            raise ScpriorInputError(f"GO annotations need columns 'symbol' and 'go_id' (has {list(annotations.columns)}).")
    wanted = {str(g).upper() for g in genes}
    ann = annotations.assign(symbol=annotations["symbol"].astype(str).str.upper())
    ann = ann[ann["symbol"].isin(wanted)][["symbol", "go_id"]].drop_duplicates()
    counts = ann.groupby("go_id")["symbol"].nunique()
    ann = ann[ann["go_id"].isin(counts[counts >= min_genes].index)]
    if ann.empty:
        return pd.DataFrame(index=pd.Index([], name="symbol"))
    table = pd.crosstab(ann["symbol"], ann["go_id"]).clip(upper=1).astype(np.float32)
    return table


def canonical_pseudobulk(means_by_label: pd.DataFrame, labels: Sequence[str], cells_per_label: pd.Series) -> pd.DataFrame:
    """Pool raw-label means into canonical target sets (weighted by cells): canonical -> mean profile."""
    rows, index = [], []
    groups: dict[str, list[str]] = {}
    for label in labels:
        groups.setdefault(canonical_condition(label), []).append(label)
    for canon, members in groups.items():
        w = cells_per_label.loc[members].to_numpy(dtype=np.float64)
        rows.append((means_by_label.loc[members].to_numpy() * w[:, None]).sum(0) / w.sum())
        index.append(canon)
    return pd.DataFrame(rows, index=index, columns=means_by_label.columns)
