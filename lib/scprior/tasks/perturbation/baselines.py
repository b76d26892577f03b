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
- :class:`Combined`: additive where every perturbed gene has a training single, control + the
  seen single's effect + the training-mean effect where one of two has, the training mean where
  none has;
- :class:`LinearGeneEmbedding`: Ahlmann-Eltze et al.'s linear model, ``Y = G W P^T + b`` with ``G``
  the top-K PCA gene embedding of the training pseudobulk and ``P`` the perturbation embedding:
  the rows of ``G`` of the perturbed genes (``linear_pca``; only measured genes have one) or, their
  variant for unmeasured perturbed genes, rows of a knowledge embedding (``linear_go``,
  ``linear_text``); summed for doubles; ridge-penalised least squares for ``W``;
- :class:`KnowledgeRegressor`: Csendes et al.'s ridge / random forest from prior-knowledge
  features of the perturbed genes (GO annotations, text embeddings) to the expression change;
- :class:`ResidualKnowledge`: the knowledge model of this repo: ridge from knowledge features to
  the residual of the combined baseline, trained on leave-own-genes-out residuals, its penalty
  (including "no residual") chosen on the validation conditions.

Every gene lookup is case-insensitive on symbols (``scprior.data.perturbation_data.symbol_key``);
the tables' columns are ``var['gene_name']`` symbols, never Ensembl ``var_names``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from scprior.data.perturbation_data import (
    GeneIndex,
    canonical_pseudobulk,
    perturbation_coverage,
    symbol_key,
)
from scprior.data.perturbations import is_control, parse_condition
from scprior.errors import ScpriorInputError
from scprior.knowledge.go_features import go_feature_table

__all__ = ["NoChange", "TrainMean", "Additive", "Combined", "LinearGeneEmbedding", "KnowledgeRegressor",
           "ResidualKnowledge", "canonical_pseudobulk", "go_feature_table"]


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
                self.effects_[symbol_key(genes[0])] = train.loc[cond].to_numpy() - self.ctrl_
        return self

    def coverage(self, conditions: Sequence[str]) -> float:
        """Fraction of perturbed genes of ``conditions`` that have a training single."""
        return perturbation_coverage(conditions, self.effects_)

    def predict(self, conditions: Sequence[str]) -> pd.DataFrame:
        rows = []
        for c in conditions:
            pred = self.ctrl_.copy()
            for g in parse_condition(c):
                pred = pred + self.effects_.get(symbol_key(g), 0.0)
            rows.append(pred)
        return pd.DataFrame(rows, index=list(conditions), columns=self.genes_)


class Combined(Additive):
    """Additive where possible, the training-mean effect for every perturbed gene without a single.

    ``ctrl + sum(effect of each seen gene) + (mean training effect if any gene is unseen)``: the
    additive model for doubles of two seen genes, control + the seen single + the mean effect for
    doubles with one, the training mean for unseen singles and doubles of two unseen genes.
    """

    name = "combined"

    def fit(self, train: pd.DataFrame, ctrl: np.ndarray) -> Combined:
        super().fit(train, ctrl)
        perts = _perturbations(train)
        if perts.empty:
            raise ScpriorInputError("Combined needs at least one training perturbation.")
        self.mean_effect_ = perts.mean(axis=0).to_numpy() - self.ctrl_
        return self

    def predict(self, conditions: Sequence[str], *, hide: Sequence[str] = ()) -> pd.DataFrame:
        """``hide``: genes treated as unseen (used for leave-own-genes-out training residuals)."""
        hidden = {symbol_key(g) for g in hide}
        rows = []
        for c in conditions:
            pred = self.ctrl_.copy()
            keys = [symbol_key(g) for g in parse_condition(c)]
            seen = [k for k in keys if k in self.effects_ and k not in hidden]
            for k in seen:
                pred = pred + self.effects_[k]
            if len(seen) < len(keys):
                pred = pred + self.mean_effect_
            rows.append(pred)
        return pd.DataFrame(rows, index=list(conditions), columns=self.genes_)


class LinearGeneEmbedding(NoChange):
    """Ahlmann-Eltze et al. linear model: Y ~ G W P^T + b, G = PCA gene embedding (K dims).

    ``pert_embedding`` (rows: gene symbols, any case; columns: L dims) gives ``P`` for the
    perturbed genes (their variant for perturbed genes that are not measured); without it ``P``
    is the rows of ``G`` of the perturbed genes (only measured ones have a row). A perturbation
    whose genes all lack a row has ``P = 0`` and is predicted as ``b`` (the training mean).
    """

    name = "linear_pca"

    def __init__(self, *, n_components: int = 10, ridge: float = 0.1, pert_embedding: pd.DataFrame | None = None,
                 label: str = ""):
        self.n_components = n_components
        self.ridge = ridge
        self.pert_embedding = None
        if pert_embedding is not None:
            if pert_embedding.empty:
                raise ScpriorInputError("LinearGeneEmbedding got an empty perturbation embedding.")
            emb = pert_embedding.astype(np.float64)
            self.pert_embedding = emb.groupby(emb.index.map(symbol_key)).mean()
            self.name = f"linear_{label}" if label else "linear_knowledge"

    def fit(self, train: pd.DataFrame, ctrl: np.ndarray) -> LinearGeneEmbedding:
        super().fit(train, ctrl)
        perts = _perturbations(train)
        Y = perts.to_numpy(dtype=np.float64).T  # genes x perturbations
        self.b_ = Y.mean(axis=1)
        Yc = Y - self.b_[:, None]
        k = int(min(self.n_components, min(Yc.shape) - 1 if min(Yc.shape) > 1 else 1))
        U, s, _ = np.linalg.svd(Yc, full_matrices=False)
        self.G_ = U[:, :k] * s[:k]
        self.gene_index_ = GeneIndex(list(train.columns))
        P = self._pert_embedding(perts.index)  # n_perts x L
        lam = self.ridge
        A = self.G_
        left = np.linalg.solve(A.T @ A + lam * np.eye(k), A.T @ Yc)  # k x n_perts
        L = P.shape[1]
        self.W_ = np.linalg.solve(P.T @ P + lam * np.eye(L), (left @ P).T).T  # k x L
        return self

    def _row(self, gene: str) -> np.ndarray | None:
        if self.pert_embedding is not None:
            key = symbol_key(gene)
            return self.pert_embedding.loc[key].to_numpy() if key in self.pert_embedding.index else None
        pos = self.gene_index_.position(gene)
        return None if pos is None else self.G_[pos]

    def _pert_embedding(self, conditions: Sequence[str]) -> np.ndarray:
        dim = self.G_.shape[1] if self.pert_embedding is None else self.pert_embedding.shape[1]
        P = np.zeros((len(conditions), dim))
        for i, c in enumerate(conditions):
            for g in parse_condition(c):
                row = self._row(g)
                if row is not None:
                    P[i] += row
        return P

    def coverage(self, conditions: Sequence[str]) -> float:
        """Fraction of perturbed genes of ``conditions`` that have a row in ``P``."""
        known = self.pert_embedding.index if self.pert_embedding is not None else self.gene_index_.symbols
        return perturbation_coverage(conditions, known)

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
        self.features = features.groupby(features.index.map(symbol_key)).mean()
        self.kind = kind
        self.alphas = tuple(alphas)
        self.n_estimators = n_estimators
        self.seed = seed
        self.name = f"{kind}_{label}" if label else kind

    def _x(self, conditions: Sequence[str]) -> np.ndarray:
        X = np.zeros((len(conditions), self.features.shape[1]))
        for i, c in enumerate(conditions):
            for g in parse_condition(c):
                key = symbol_key(g)
                if key in self.features.index:
                    X[i] += self.features.loc[key].to_numpy()
        return X

    def coverage(self, conditions: Sequence[str]) -> float:
        """Fraction of perturbed genes of ``conditions`` that have features."""
        return perturbation_coverage(conditions, self.features.index)

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


class ResidualKnowledge(NoChange):
    """Combined baseline + a ridge from knowledge features of the perturbed genes to its residual.

    The residual depends on the situation of a perturbation at prediction time, its *type*
    ``(n genes, n genes without a training single)``: an unseen single (1, 1) is predicted by the
    training mean, a double of two seen genes (2, 0) additively, and so on. One ridge per type is
    fitted on training examples of that type, made by hiding genes of the training perturbations
    from the combined baseline (a training single with its own gene hidden is a (1, 1) example; a
    training double gives (2, 0), (2, 1) and (2, 2) examples). Features: the sum over the type's
    unseen genes (over both genes for (2, 0)) of the gene's row in ``features``. Each type's
    penalty is chosen among ``alphas`` and *no residual at all* on the validation conditions of
    that type (no residual where there are none), so on validation it never does worse than the
    combined baseline.
    """

    def __init__(self, features: pd.DataFrame, *, label: str = "", alphas=(1.0, 10.0, 100.0, 1000.0)):
        if features.empty:
            raise ScpriorInputError("ResidualKnowledge got an empty feature table.")
        self.features = features.astype(np.float64).groupby(features.index.map(symbol_key)).mean()
        self.alphas = tuple(alphas)
        self.name = f"residual_{label}" if label else "residual"

    def _x(self, keys: Sequence[str]) -> np.ndarray:
        x = np.zeros(self.features.shape[1])
        for k in keys:
            if k in self.features.index:
                x += self.features.loc[k].to_numpy()
        return x

    def _example(self, condition: str, hide: Sequence[str] = ()) -> tuple[tuple[int, int], np.ndarray, np.ndarray]:
        """(type, features, combined prediction) of ``condition`` with genes ``hide`` unseen."""
        keys = [symbol_key(g) for g in parse_condition(condition)]
        unseen = [k for k in keys if k not in self.base_.effects_ or k in set(hide)]
        kind = (len(keys), len(unseen))
        x = self._x(unseen if unseen else keys)
        base = self.base_.predict([condition], hide=hide).to_numpy()[0]
        return kind, x, base

    def coverage(self, conditions: Sequence[str]) -> float:
        """Fraction of perturbed genes of ``conditions`` that have features."""
        return perturbation_coverage(conditions, self.features.index)

    def fit(self, train: pd.DataFrame, ctrl: np.ndarray, *, val: pd.DataFrame | None = None) -> ResidualKnowledge:
        from sklearn.linear_model import Ridge

        super().fit(train, ctrl)
        self.base_ = Combined().fit(train, ctrl)
        examples: dict[tuple[int, int], tuple[list, list]] = {}
        for cond in _perturbations(train).index:
            y = train.loc[cond].to_numpy()
            genes = [symbol_key(g) for g in parse_condition(cond)]
            hides = [tuple(genes)] if len(genes) == 1 else [(), (genes[0],), (genes[1],), tuple(genes)]
            for hide in hides:
                kind, x, base = self._example(cond, hide)
                examples.setdefault(kind, ([], []))
                examples[kind][0].append(x)
                examples[kind][1].append(y - base)
        val_by_kind: dict[tuple[int, int], tuple[list, list]] = {}
        if val is not None:
            for cond in _perturbations(val).index:
                kind, x, base = self._example(cond)
                val_by_kind.setdefault(kind, ([], []))
                val_by_kind[kind][0].append(x)
                val_by_kind[kind][1].append(val.loc[cond].to_numpy() - base)
        self.models_, self.alpha_ = {}, {}
        for kind, (X, R) in examples.items():
            X, R = np.asarray(X), np.asarray(R)
            if kind not in val_by_kind or len(X) < 3 or not np.any(X):
                self.alpha_[str(kind)] = None
                continue
            Xv, Rv = (np.asarray(v) for v in val_by_kind[kind])
            best, best_err = None, float(np.mean(Rv ** 2))  # no residual
            for a in self.alphas:
                model = Ridge(alpha=a).fit(X, R)
                err = float(np.mean((model.predict(Xv) - Rv) ** 2))
                if err < best_err:
                    best, best_err = (a, model), err
            self.alpha_[str(kind)] = None if best is None else best[0]
            if best is not None:
                self.models_[kind] = best[1]
        return self

    def predict(self, conditions: Sequence[str]) -> pd.DataFrame:
        rows = []
        for c in conditions:
            kind, x, base = self._example(c)
            model = self.models_.get(kind)
            rows.append(base + (model.predict(x[None, :])[0] if model is not None else 0.0))
        return pd.DataFrame(rows, index=list(conditions), columns=self.genes_)
