"""Scores of a cross-species embedding: scib-metrics (bio on cell type, batch on species and on
donor within species), SATURN-style label transfer, and the cross-species cell-type tree with its
mutual-nearest-centroid score."""

from __future__ import annotations

import gc
from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd

from scprior.errors import ScpriorInputError


# ------------------------------------------------------------------------------ scib-metrics
def sklearn_neighbors(x: np.ndarray, k: int):
    """Exact Euclidean kNN (self included) as scib-metrics ``NeighborsResults`` (fast on small data)."""
    from scib_metrics.nearest_neighbors import NeighborsResults
    from sklearn.neighbors import NearestNeighbors

    x = np.asarray(x, dtype=np.float32)
    k = int(min(k, len(x)))
    dist, idx = NearestNeighbors(n_neighbors=k).fit(x).kneighbors(x)
    return NeighborsResults(indices=idx.astype(np.int64), distances=dist.astype(np.float32))


def scib_benchmark(adata: ad.AnnData, embedding_keys: Sequence[str], *, label_key: str = "cell_type",
                   batch_key: str = "species", pre_key: str = "X_pca", bio: bool = True,
                   batch: bool = True, kbet: bool = False, progress: bool = False):
    """Run the scib-metrics Benchmarker (sklearn kNN); return (results table, benchmarker).

    ``kbet=False`` leaves kBET out of the batch metrics (it costs ~10 s per embedding and a JIT
    compile per label on 2 CPU cores; the batch score is then the mean of BRAS, iLISI, graph
    connectivity and PCR comparison).
    The table is ``get_results(min_max_scale=False, clean_names=False)``: rows = embeddings (plus
    the ``Metric Type`` row), columns = metrics (scib-metrics' own names) and the aggregates
    ``Bio conservation``, ``Batch correction``, ``Total``.
    """
    from scib_metrics.benchmark import BatchCorrection, Benchmarker, BioConservation

    for key in [*embedding_keys, pre_key]:
        if key not in adata.obsm:
            raise ScpriorInputError(f"adata.obsm has no {key!r} (has {list(adata.obsm)}).")
        if not np.isfinite(np.asarray(adata.obsm[key])).all():
            raise ScpriorInputError(f"adata.obsm[{key!r}] has NaN/inf values.")
    tmp = ad.AnnData(X=np.zeros((adata.n_obs, 1), dtype=np.float32), obs=adata.obs[[label_key, batch_key]].copy())
    for key in [*embedding_keys, pre_key]:
        tmp.obsm[key] = np.asarray(adata.obsm[key], dtype=np.float32)
    bm = Benchmarker(tmp, batch_key=batch_key, label_key=label_key, embedding_obsm_keys=list(embedding_keys),
                     pre_integrated_embedding_obsm_key=pre_key,
                     bio_conservation_metrics=BioConservation() if bio else None,
                     batch_correction_metrics=BatchCorrection(kbet_per_label=kbet) if batch else None,
                     n_jobs=1, progress_bar=progress)
    # The Benchmarker calls gc.collect() before every metric; with a large heap (a notebook holding
    # models and data) each call takes ~0.3 s. Freezing the current heap makes those calls cheap.
    gc.collect()
    gc.freeze()
    try:
        bm.prepare(neighbor_computer=sklearn_neighbors)
        bm.benchmark()
    finally:
        gc.unfreeze()
    return bm.get_results(min_max_scale=False, clean_names=False), bm


def scib_scores(table: pd.DataFrame) -> pd.DataFrame:
    """The numeric part of a results table: one row per embedding, float columns."""
    t = table.drop(index="Metric Type", errors="ignore")
    return t.apply(pd.to_numeric, errors="coerce")


def donor_batch_scores(adata: ad.AnnData, embedding_keys: Sequence[str], *, label_key: str = "cell_type",
                       donor_key: str = "batch", species_key: str = "species", pre_key: str = "X_pca",
                       kbet: bool = False) -> pd.DataFrame:
    """Batch correction across donors *within* each species (scib batch metrics), then the mean
    over species: rows = embeddings, columns = species names and ``mean``. Species with one donor
    are skipped."""
    cols = {}
    for species in adata.obs[species_key].astype(str).unique():
        sub = adata[adata.obs[species_key].astype(str) == species]
        if sub.obs[donor_key].nunique() < 2:
            continue
        table, _ = scib_benchmark(sub, embedding_keys, label_key=label_key, batch_key=donor_key, pre_key=pre_key,
                                  bio=False, batch=True, kbet=kbet)
        cols[species] = scib_scores(table)["Batch correction"]
    if not cols:
        raise ScpriorInputError("No species has two or more donors; donor batch scores need them.")
    out = pd.DataFrame(cols)
    out["mean"] = out.mean(axis=1)
    return out


# ---------------------------------------------------------------------------- label transfer
def label_transfer(emb: np.ndarray, labels: Sequence[str], species: Sequence[str], *, source: str, target: str,
                   C: float = 0.1, min_cells: int = 5, seed: int = 0) -> dict[str, float]:
    """Train logistic regression on ``source`` cells (standardised embedding), predict ``target`` cells.

    Cell types with fewer than ``min_cells`` source cells are not learned; target cells of types the
    classifier does not know are left out (as SATURN scores through a cell-type map). Returns
    accuracy, balanced accuracy (mean recall over the evaluated target types), and counts.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, balanced_accuracy_score
    from sklearn.preprocessing import StandardScaler

    emb = np.asarray(emb)
    labels = np.asarray(labels).astype(str)
    species = np.asarray(species).astype(str)
    src, tgt = species == source, species == target
    if not src.any() or not tgt.any():
        raise ScpriorInputError(f"label transfer needs cells of both {source!r} and {target!r}.")
    counts = pd.Series(labels[src]).value_counts()
    known = set(counts[counts >= min_cells].index)
    train = src & np.isin(labels, list(known))
    test = tgt & np.isin(labels, list(known))
    if len(known) < 2 or not test.any():
        raise ScpriorInputError(f"Too few shared cell types to score transfer {source}->{target}.")
    scaler = StandardScaler().fit(emb[train])
    clf = LogisticRegression(C=C, max_iter=2000, random_state=seed).fit(scaler.transform(emb[train]), labels[train])
    pred = clf.predict(scaler.transform(emb[test]))
    return {"accuracy": float(accuracy_score(labels[test], pred)),
            "balanced_accuracy": float(balanced_accuracy_score(labels[test], pred)),
            "n_test": int(test.sum()), "n_types": int(len(set(labels[test])))}


def transfer_both_ways(emb: np.ndarray, labels: Sequence[str], species: Sequence[str], *,
                       pair: tuple[str, str] = ("human", "mouse"), **kw) -> dict[str, dict[str, float]]:
    """:func:`label_transfer` a->b and b->a, keyed ``"a->b"``."""
    a, b = pair
    return {f"{a}->{b}": label_transfer(emb, labels, species, source=a, target=b, **kw),
            f"{b}->{a}": label_transfer(emb, labels, species, source=b, target=a, **kw)}


# ------------------------------------------------------------------------------ cell-type tree
def celltype_centroids(emb: np.ndarray, labels: Sequence[str], species: Sequence[str], *,
                       min_cells: int = 5) -> pd.DataFrame:
    """Mean embedding per (species, cell type) with >= ``min_cells`` cells; MultiIndex rows."""
    df = pd.DataFrame(np.asarray(emb, dtype=np.float64))
    df["species"] = np.asarray(species).astype(str)
    df["cell_type"] = np.asarray(labels).astype(str)
    g = df.groupby(["species", "cell_type"], sort=True)
    sizes = g.size()
    return g.mean()[sizes >= min_cells]


def _cosine_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    an = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    bn = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return 1.0 - an @ bn.T


def mutual_nn_score(centroids: pd.DataFrame, *, pair: tuple[str, str] = ("human", "mouse")) -> tuple[float, pd.DataFrame]:
    """Fraction of cell types shared by both species whose two centroids are each other's nearest
    centroid of the other species (cosine distance, among all of that species' centroids).

    Returns (score, table with one row per shared type: nearest in b, nearest back in a, mutual).
    """
    a, b = pair
    ca, cb = centroids.loc[a], centroids.loc[b]
    shared = sorted(set(ca.index) & set(cb.index))
    if not shared:
        raise ScpriorInputError("No cell type has enough cells in both species for the tree score.")
    d = _cosine_distances(ca.to_numpy(), cb.to_numpy())
    nn_ab = cb.index[d.argmin(axis=1)]
    nn_ba = ca.index[d.argmin(axis=0)]
    rows = []
    for t in shared:
        i, j = ca.index.get_loc(t), cb.index.get_loc(t)
        rows.append({"cell_type": t, f"nearest_{b}": nn_ab[i], f"nearest_{a}": nn_ba[j],
                     "mutual": bool(nn_ab[i] == t and nn_ba[j] == t)})
    table = pd.DataFrame(rows).set_index("cell_type")
    return float(table["mutual"].mean()), table


def celltype_tree(centroids: pd.DataFrame, *, method: str = "average") -> np.ndarray:
    """Hierarchical clustering (scipy linkage, cosine distance) of the species x cell-type centroids."""
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import pdist

    if len(centroids) < 2:
        raise ScpriorInputError("A tree needs at least two centroids.")
    return linkage(pdist(centroids.to_numpy(), metric="cosine"), method=method)
