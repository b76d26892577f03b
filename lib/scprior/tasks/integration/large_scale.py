"""scib-metrics at atlas scale: one exact kNN graph per embedding, and a stated stratified
subsample for the metrics whose cost grows with the square of the cells.

The metrics, their inputs and the aggregation are scib-metrics' Benchmarker defaults (same metric
functions, same neighbour counts: 90 for LISI, 15 for graph connectivity, 50 for kBET; Bio
conservation / Batch correction = means of their metrics, Total = 0.6 bio + 0.4 batch):

* on **all cells**, from one exact Euclidean kNN (sklearn, 90 neighbours, computed once and cut
  to 15/50): cLISI, iLISI, graph connectivity, kBET per label (optional, as in :func:`scib_benchmark`);
  and, linear in cells, PCR comparison and KMeans NMI/ARI (scib-metrics' own k-means);
* on a **stratified subsample** of ``subsample`` cells (every label x batch stratum in proportion,
  at least ``min_per_stratum`` cells each, seeded): silhouette label, BRAS, isolated labels (their
  cost grows with the square of the cells). ``kmeans_on="subsample"`` also fits the k-means there
  and labels every cell by its nearest centroid. By default (``backend="numpy"``) these three
  come from :mod:`scprior.tasks.integration.silhouette` (scib-metrics' definitions in numpy, one
  label silhouette shared by silhouette label and isolated labels), because scib-metrics' JAX
  silhouette recompiles per label-subset shape, and the k-means from
  :mod:`scprior.tasks.integration.kmeans` (scib-metrics' k-means++ init and Lloyd loop, the loop in
  numpy); ``backend="scib"`` calls scib-metrics' functions for both.

:func:`large_scale_scores` returns the scores in the Benchmarker's table layout (scib-metrics'
own metric names) plus what was subsampled (``uns``-style dict), so tables from both modes compare.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from scprior.errors import ScpriorInputError
from scprior.tasks.integration.metrics import numba_env_matches_its_threads

BIO = ("isolated_labels", "nmi_ari_cluster_labels_kmeans_nmi", "nmi_ari_cluster_labels_kmeans_ari",
       "silhouette_label", "clisi_knn")
BATCH = ("bras", "ilisi_knn", "kbet_per_label", "graph_connectivity", "pcr_comparison")


def stratified_subsample(strata: Sequence, n: int, *, seed: int = 0, min_per_stratum: int = 1) -> np.ndarray:
    """Sorted indices of about ``n`` cells: each stratum (e.g. label x batch) in proportion to its
    size, but at least ``min_per_stratum`` cells (all of a smaller stratum); all cells if ``n`` >=
    their number."""
    codes, inverse = np.unique(np.asarray(strata).astype(str), return_inverse=True)
    total = len(inverse)
    if n >= total:
        return np.arange(total)
    rng = np.random.default_rng(seed)
    out = []
    for c in range(len(codes)):
        idx = np.flatnonzero(inverse == c)
        k = int(min(len(idx), max(1, min_per_stratum, round(n * len(idx) / total))))
        out.append(rng.choice(idx, size=k, replace=False))
    return np.sort(np.concatenate(out))


def exact_knn(x: np.ndarray, k: int = 90):
    """Exact Euclidean kNN of every cell (self included), as scib-metrics ``NeighborsResults``."""
    from scprior.tasks.integration.metrics import sklearn_neighbors

    return sklearn_neighbors(x, k)


def _kmeans_all_cells(x_sub: np.ndarray, x: np.ndarray, n_clusters: int, chunk: int = 65536,
                      backend: str = "numpy") -> np.ndarray:
    """scib-metrics' KMeans (k-means++, seed 0) fitted on ``x_sub`` (``backend="numpy"``: its loop
    in numpy, :func:`~scprior.tasks.integration.kmeans.kmeans_labels`); every row of ``x`` labelled
    by its nearest centroid (in chunks: memory stays bounded at 1M cells)."""
    if backend == "numpy":
        from scprior.tasks.integration.kmeans import kmeans_labels

        c = kmeans_labels(x_sub, n_clusters)[1].astype(np.float64)
    else:
        from scib_metrics.utils import KMeans

        c = np.asarray(KMeans(n_clusters).fit(np.array(x_sub, dtype=np.float32)).cluster_centroids_, dtype=np.float64)
    cn = (c**2).sum(1)
    out = np.empty(len(x), dtype=np.int64)
    for lo in range(0, len(x), chunk):
        xb = np.asarray(x[lo:lo + chunk], dtype=np.float64)
        out[lo:lo + chunk] = np.argmin(cn[None, :] - 2 * xb @ c.T, axis=1)
    return out


def large_scale_scores(emb: np.ndarray, labels: Sequence, batch: Sequence, pre: np.ndarray, *,
                       subsample: int = 20_000, seed: int = 0, kbet: bool = False, k: int = 90,
                       min_per_stratum: int = 50, kmeans_on: str = "all", neighbors=None,
                       backend: str = "numpy") -> tuple[pd.Series, dict]:
    """scib-metrics scores of one embedding (n_cells, d) at scale; see the module docstring.

    ``pre``: the unintegrated embedding for PCR comparison (e.g. ``X_pca``), same cells.
    ``neighbors``: a precomputed ``NeighborsResults`` with >= ``k`` neighbours (else exact kNN).
    ``min_per_stratum``: cells every label x batch stratum keeps in the subsample (all of a smaller
    one): BRAS and isolated labels average over labels, so small labels need cells. ``kmeans_on``:
    ``"all"`` (default; scib-metrics' k-means on every cell, linear cost) or ``"subsample"``
    (centroids fitted on the subsample, every cell labelled by its nearest centroid).
    ``backend``: ``"numpy"`` (default; :func:`~scprior.tasks.integration.silhouette.subsample_scores`
    and :func:`~scprior.tasks.integration.kmeans.kmeans_labels`) or ``"scib"`` (scib-metrics' JAX
    functions; same definitions, slower: compiles per shape, >= 300 k-means iterations in JAX).
    Returns (scores: metric name -> value incl. ``Bio conservation``, ``Batch correction``,
    ``Total``; info: ``n_cells``, ``subsample`` size and seed, seconds per step).
    """
    numba_env_matches_its_threads()
    import scib_metrics
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    emb = np.asarray(emb, dtype=np.float32)
    pre = np.asarray(pre, dtype=np.float32)
    labels = np.asarray(labels).astype(str)
    batch = np.asarray(batch).astype(str)
    if not (len(emb) == len(labels) == len(batch) == len(pre)):
        raise ScpriorInputError(f"embedding ({len(emb)}), labels ({len(labels)}), batch ({len(batch)}) and pre "
                                f"({len(pre)}) must describe the same cells.")
    if not np.isfinite(emb).all():
        raise ScpriorInputError("The embedding has NaN/inf values.")
    t: dict[str, float] = {}
    s: dict[str, float] = {}
    t0 = time.perf_counter()
    nn = neighbors if neighbors is not None else exact_knn(emb, k)
    t["knn"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    s["clisi_knn"] = float(scib_metrics.clisi_knn(nn.subset_neighbors(90), labels))
    s["ilisi_knn"] = float(scib_metrics.ilisi_knn(nn.subset_neighbors(90), batch))
    s["graph_connectivity"] = float(scib_metrics.graph_connectivity(nn.subset_neighbors(15), labels))
    s["pcr_comparison"] = float(scib_metrics.pcr_comparison(pre, emb, batch, categorical=True))  # linear: all cells
    if kbet:
        s["kbet_per_label"] = float(scib_metrics.kbet_per_label(nn.subset_neighbors(50), batch, labels))
    t["knn_metrics"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if kmeans_on not in ("all", "subsample"):
        raise ScpriorInputError(f"kmeans_on must be 'all' or 'subsample', got {kmeans_on!r}.")
    if backend not in ("numpy", "scib"):
        raise ScpriorInputError(f"backend must be 'numpy' or 'scib', got {backend!r}.")
    sub = stratified_subsample(np.char.add(np.char.add(labels, "\x00"), batch), subsample, seed=seed,
                               min_per_stratum=min_per_stratum)
    xs, ls, bs = emb[sub], labels[sub], batch[sub]
    if backend == "numpy":
        from scprior.tasks.integration.silhouette import subsample_scores

        s.update(subsample_scores(xs, ls, bs))
    else:
        s["silhouette_label"] = float(scib_metrics.silhouette_label(xs, ls))
        s["bras"] = float(scib_metrics.bras(xs, ls, bs))
        s["isolated_labels"] = float(scib_metrics.isolated_labels(xs, ls, bs))
    t["subsample_metrics"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    n_types = len(np.unique(labels))
    if kmeans_on == "all" and backend == "scib":  # k-means is linear in cells: scib-metrics' own call
        s.update({f"nmi_ari_cluster_labels_kmeans_{k_}": float(v)
                  for k_, v in scib_metrics.nmi_ari_cluster_labels_kmeans(emb, labels).items()})
    else:
        if kmeans_on == "all":  # the same k-means, its Lloyd loop in numpy
            from scprior.tasks.integration.kmeans import kmeans_labels

            pred = kmeans_labels(emb, n_types)[0]
        else:
            pred = _kmeans_all_cells(xs, emb, n_types, backend=backend)
        s["nmi_ari_cluster_labels_kmeans_nmi"] = float(normalized_mutual_info_score(labels, pred,
                                                                                    average_method="arithmetic"))
        s["nmi_ari_cluster_labels_kmeans_ari"] = float(adjusted_rand_score(labels, pred))
    t["kmeans"] = time.perf_counter() - t0
    bio = float(np.mean([s[m] for m in BIO if m in s]))
    bat = float(np.mean([s[m] for m in BATCH if m in s]))
    scores = pd.Series({**s, "Bio conservation": bio, "Batch correction": bat, "Total": 0.6 * bio + 0.4 * bat})
    info = {"mode": "large_scale", "n_cells": int(len(emb)), "subsample": int(len(sub)), "subsample_seed": int(seed),
            "min_per_stratum": int(min_per_stratum), "kmeans_on": kmeans_on, "backend": backend,
            "subsampled": ["silhouette_label", "bras", "isolated_labels"]
            + (["kmeans fit"] if kmeans_on == "subsample" else []),
            "knn": f"exact sklearn, k={k}", "seconds": t}
    return scores, info


def large_scale_table(embeddings: Mapping[str, np.ndarray], labels: Sequence, batch: Sequence, pre: np.ndarray,
                      **kw) -> tuple[pd.DataFrame, dict]:
    """:func:`large_scale_scores` for several embeddings: rows = embedding names (as
    :func:`~scprior.tasks.integration.metrics.scib_scores`), and the info of each."""
    rows, infos = {}, {}
    for name, emb in embeddings.items():
        rows[name], infos[name] = large_scale_scores(emb, labels, batch, pre, **kw)
    return pd.DataFrame(rows).T, infos
