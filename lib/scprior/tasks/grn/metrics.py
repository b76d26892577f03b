"""GRN scoring: per-TF AUPRC (and its ratio to random), AUROC, early precision ratio, precision@k.

A method's output is a score matrix (:class:`pandas.DataFrame`, TFs x candidate genes; higher =
more likely a target). For one TF the candidates are every gene of the matrix except the TF
itself; the positives are its ground-truth targets among them. With ``P`` positives out of ``N``
candidates:

- ``auprc``: average precision (scikit-learn's step-wise area under the PR curve);
  ``auprc_random = P / N`` (its expectation for a random ranking); ``auprc_ratio = auprc / (P / N)``.
- ``auroc``: area under the ROC curve.
- ``precision_at_k``: precision of the top ``k = P`` genes (GeneCompass: k = the TF's number of
  ChIP targets, compared with the random ``k / N``); ``epr`` (BEELINE's early precision ratio) =
  ``precision_at_k / (P / N)``.

Ties in the top-k cut are broken by gene name (deterministic). Missing scores (NaN: e.g. a gene
without an embedding) rank below every scored gene.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

METRICS = ("auprc", "auprc_ratio", "auroc", "epr")


def _filled(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=float)
    if np.isnan(scores).all():
        return np.zeros_like(scores)
    floor = np.nanmin(scores) - 1.0
    return np.where(np.isnan(scores), floor, scores)


def precision_at_k(scores: np.ndarray, labels: np.ndarray, k: int, names: np.ndarray | None = None) -> float:
    """Fraction of true labels among the ``k`` highest scores (ties broken by ``names``, else position)."""
    scores, labels = _filled(scores), np.asarray(labels, dtype=bool)
    if k <= 0:
        return float("nan")
    tiebreak = np.asarray(names, dtype=str) if names is not None else np.arange(len(scores))
    order = np.lexsort((tiebreak, -scores))
    return float(labels[order[:k]].mean())


def tf_metrics(scores: pd.Series, positives: Iterable[str]) -> dict[str, float]:
    """Metrics of one TF's scores over its candidates (``scores`` index = gene names)."""
    names = scores.index.to_numpy(dtype=str)
    labels = np.isin(names, list(set(positives)))
    n, p = len(labels), int(labels.sum())
    out = {"n_candidates": n, "n_true": p, "auprc": float("nan"), "auprc_random": float("nan"),
           "auprc_ratio": float("nan"), "auroc": float("nan"), "precision_at_k": float("nan"),
           "precision_random": float("nan"), "epr": float("nan")}
    if p == 0 or p == n:
        return out
    s = _filled(scores.to_numpy())
    base = p / n
    ap = float(average_precision_score(labels, s))
    prec = precision_at_k(s, labels, p, names)
    out.update(auprc=ap, auprc_random=base, auprc_ratio=ap / base, auroc=float(roc_auc_score(labels, s)),
               precision_at_k=prec, precision_random=base, epr=prec / base)
    return out


def candidate_scores(matrix: pd.DataFrame, tf: str) -> pd.Series:
    """One TF's row of a score matrix without the TF itself."""
    row = matrix.loc[tf]
    return row.drop(labels=[tf], errors="ignore")


def score_matrix(matrix: pd.DataFrame, truth: Mapping[str, set[str]], tfs: Iterable[str] | None = None) -> pd.DataFrame:
    """Per-TF metrics (one row per TF) of a TFs x genes score matrix against ``{tf: targets}``."""
    tfs = list(matrix.index if tfs is None else tfs)
    rows = []
    for tf in tfs:
        if tf not in matrix.index:
            raise KeyError(f"TF {tf!r} has no row in the score matrix.")
        rows.append({"tf": tf, **tf_metrics(candidate_scores(matrix, tf), truth.get(tf, set()))})
    return pd.DataFrame(rows)


def score_methods(matrices: Mapping[str, pd.DataFrame], truth: Mapping[str, set[str]],
                  tfs: Iterable[str]) -> pd.DataFrame:
    """Per-TF metrics of every method (column ``method``) on the same TFs and candidates."""
    tfs = list(tfs)
    genes = None
    frames = []
    for method, matrix in matrices.items():
        cols = set(matrix.columns)
        if genes is None:
            genes = cols
        elif cols != genes:
            raise ValueError(f"Method {method!r} scores other candidate genes than the first method: "
                             "every method must score the same TFs x genes.")
        frames.append(score_matrix(matrix, truth, tfs).assign(method=method))
    return pd.concat(frames, ignore_index=True)


def summarise(per_tf: pd.DataFrame) -> pd.DataFrame:
    """Mean over TFs (each TF weighs the same, as GeneCompass scores per TF) of every metric per method."""
    cols = [*METRICS, "precision_at_k", "precision_random"]
    scored = per_tf.dropna(subset=["auprc"])
    out = scored.groupby("method", sort=False)[cols].mean()
    out["n_tfs"] = scored.groupby("method", sort=False)["tf"].nunique()
    return out


def pooled_pr_curve(matrix: pd.DataFrame, truth: Mapping[str, set[str]], tfs: Iterable[str]) -> pd.DataFrame:
    """Precision-recall curve of all (TF, candidate) pairs pooled (BEELINE's network-level curve)."""
    s, y = [], []
    for tf in tfs:
        row = candidate_scores(matrix, tf)
        s.append(_filled(row.to_numpy()))
        y.append(np.isin(row.index.to_numpy(dtype=str), list(truth.get(tf, set()))))
    scores, labels = np.concatenate(s), np.concatenate(y)
    precision, recall, _ = precision_recall_curve(labels, scores)
    return pd.DataFrame({"precision": precision, "recall": recall, "random": labels.mean()})
