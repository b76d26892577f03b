"""scib-metrics' silhouette label, BRAS and isolated labels in numpy, from chunked exact distances.

Why ours: scib-metrics (0.5.x) computes these with a JAX ``jit`` that recompiles for every new
array shape (each label's cell count for BRAS, the last chunk of every call), so at scale its fixed
compile cost dominates (27-95 s for 5,000 cells on 2 shared cores). The definitions below are
scib-metrics' own, read from ``scib_metrics.utils.silhouette_samples`` and
``scib_metrics.metrics.{silhouette_label, bras, isolated_labels}`` (``tests/test_silhouette.py``
checks equality with scib-metrics to 1e-4):

* per cell, ``a`` = summed distance to its own cluster / (cluster size - 1); ``b`` = ``"nearest"``:
  the smallest mean distance to another cluster, or ``"mean_other"``: the mean distance to all
  cells of the other clusters; ``s = (b - a) / max(a, b)``, NaN -> 0 (singletons, ``a = b = 0``);
* silhouette label: mean of ``s`` over cells (Euclidean, labels as clusters), rescaled ``(s+1)/2``;
* isolated labels: labels present in the fewest batches (``<= min`` batches per label); the mean
  rescaled label silhouette (the same per-cell values) over each such label's cells, averaged
  over those labels;
* BRAS: within each label with more than one batch and fewer batches than cells, the batch
  silhouette with **cosine** distance and ``"mean_other"``; ``1 - |s|`` averaged per label, then
  over labels.

Distances are exact, in float64, ``chunk`` rows at a time (memory ``chunk x n``), diagonal 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def _distances(xa: np.ndarray, x: np.ndarray, sq: np.ndarray, metric: str) -> np.ndarray:
    """(len(xa), len(x)) distances; ``sq``: squared row norms of ``x``."""
    g = xa @ x.T
    sa = (xa**2).sum(1)
    if metric == "euclidean":
        return np.sqrt(np.maximum(sa[:, None] + sq[None, :] - 2 * g, 0.0))
    if metric == "cosine":
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.clip(1.0 - g / np.sqrt(sa[:, None] * sq[None, :]), 0.0, 2.0)
    raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}.")


def silhouette_samples(x: np.ndarray, labels: Sequence, *, metric: str = "euclidean",
                       between: str = "nearest", chunk: int = 1024) -> np.ndarray:
    """Per-cell silhouette (n_cells,) of ``x`` (n_cells, d) with ``labels`` as clusters, as
    ``scib_metrics.utils.silhouette_samples`` (``between`` = its ``between_cluster_distances``:
    ``"nearest"`` or ``"mean_other"``)."""
    if between not in ("nearest", "mean_other"):
        raise ValueError(f"between must be 'nearest' or 'mean_other', got {between!r}.")
    x = np.asarray(x, dtype=np.float64)
    codes = pd.Categorical(np.asarray(labels)).codes.astype(np.int64)
    if len(codes) != len(x):
        raise ValueError("x and labels should have the same number of samples")
    k = int(codes.max()) + 1
    freq = np.bincount(codes, minlength=k).astype(np.float64)
    onehot = np.zeros((len(x), k))
    onehot[np.arange(len(x)), codes] = 1.0
    sq = (x**2).sum(1)
    n = len(x)
    intra = np.empty(n)
    inter = np.empty(n)
    for lo in range(0, n, chunk):
        hi = min(lo + chunk, n)
        d = _distances(x[lo:hi], x, sq, metric)
        d[np.arange(hi - lo), np.arange(lo, hi)] = 0.0
        cd = d @ onehot  # (chunk, k): summed distance to each cluster
        own = codes[lo:hi]
        rows = np.arange(hi - lo)
        intra[lo:hi] = cd[rows, own]
        if between == "nearest":
            cd = cd / freq[None, :]
            cd[rows, own] = np.inf
            inter[lo:hi] = cd.min(1)
        else:
            inter[lo:hi] = (cd.sum(1) - cd[rows, own]) / (n - freq[own])
    with np.errstate(invalid="ignore", divide="ignore"):
        intra = intra / (freq[codes] - 1)
        s = (inter - intra) / np.maximum(intra, inter)
    return np.nan_to_num(s)


def isolated_label_names(labels: Sequence, batch: Sequence) -> np.ndarray:
    """Labels present in no more batches than the label with the fewest (scib-metrics'
    ``iso_threshold=None``)."""
    per = pd.DataFrame({"l": np.asarray(labels), "b": np.asarray(batch)}).drop_duplicates().groupby("l")["b"].count()
    return np.asarray(per[per <= per.min()].index)


def subsample_scores(x: np.ndarray, labels: Sequence, batch: Sequence, *, chunk: int = 1024) -> dict[str, float]:
    """``silhouette_label``, ``bras`` and ``isolated_labels`` of ``x`` (n_cells, d), as
    scib-metrics' functions with their defaults (see the module docstring); the label silhouette
    is computed once and serves both silhouette label and isolated labels."""
    x = np.asarray(x, dtype=np.float64)
    labels = np.asarray(labels).astype(str)
    batch = np.asarray(batch).astype(str)
    sil = (silhouette_samples(x, labels, metric="euclidean", between="nearest", chunk=chunk) + 1) / 2
    iso = [float(np.mean(sil[labels == lab])) for lab in isolated_label_names(labels, batch)]
    per_label = []
    for lab in np.unique(labels):
        m = labels == lab
        nb = len(np.unique(batch[m]))
        if nb == 1 or nb == int(m.sum()):
            continue
        s = silhouette_samples(x[m], batch[m], metric="cosine", between="mean_other", chunk=chunk)
        per_label.append(float(np.mean(1 - np.abs(s))))
    if not per_label:
        raise ValueError("BRAS: no label has cells from more than one batch (scib-metrics fails here too).")
    return {"silhouette_label": float(np.mean(sil)), "bras": float(np.mean(per_label)),
            "isolated_labels": float(np.mean(iso)) if iso else float("nan")}
