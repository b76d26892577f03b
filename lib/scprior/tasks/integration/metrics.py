"""Scores of a cross-species embedding: scib-metrics (bio on cell type, batch on species and on
donor within species), SATURN's label-transfer protocol, and the cross-species cell-type tree with its
mutual-nearest-centroid score."""

from __future__ import annotations

import gc
from collections.abc import Collection, Mapping, Sequence

import anndata as ad
import numpy as np
import pandas as pd

from scprior.errors import ScpriorInputError


# ------------------------------------------------------------------------------ scib-metrics
def numba_env_matches_its_threads() -> None:
    """scib-metrics imports umap, whose numba functions reload numba's config from the environment;
    if ``NUMBA_NUM_THREADS`` no longer says what numba launched with (another library dropped or
    changed it), numba raises. Put the launched value back before importing scib-metrics."""
    import os
    import sys

    if "numba" in sys.modules:
        from numba.np.ufunc import parallel

        if parallel._is_initialized:
            import numba

            os.environ["NUMBA_NUM_THREADS"] = str(numba.config.NUMBA_NUM_THREADS)


def sklearn_neighbors(x: np.ndarray, k: int):
    """Exact Euclidean kNN (self included) as scib-metrics ``NeighborsResults`` (fast on small data)."""
    numba_env_matches_its_threads()
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
    numba_env_matches_its_threads()
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
#: SATURN's classifier strength (score_adata.py, classify_cell_types): fixed, never tuned
SATURN_C = 0.005
TRANSFER_PROTOCOL = (
    "SATURN classify_cell_types (score_adata.py): LogisticRegression(C=0.005, multinomial lbfgs, "
    "random_state=0) on the raw embedding (no scaling), fit on a seeded 80% of the source species' cells; "
    "every target cell scored, predictions mapped through the cell-type map (shared Cell Ontology names), "
    "target types the source lacks count as errors; accuracy and balanced accuracy beside a prior-class "
    "dummy and the ceiling (fraction of target cells whose type the source has)")


def saturn_label_transfer(emb: np.ndarray, labels: Sequence[str], species: Sequence[str], *, source: str,
                          target: str, seed: int = 0, C: float = SATURN_C, train_fraction: float = 0.8,
                          cell_type_map: Mapping[str, str | Collection[str]] | None = None,
                          return_correct: bool = False) -> dict[str, float]:
    """SATURN's label-transfer score from ``source`` to ``target`` cells of ``emb`` (n_cells, d).

    As SATURN's ``classify_cell_types``: the raw embedding (no standardising), a multinomial
    ``LogisticRegression(C=0.005, random_state=0)`` fit on a random ``train_fraction`` of the source
    cells (split seeded by ``seed``), and **every** target cell predicted; a predicted source type
    is mapped through ``cell_type_map`` (default: identity, the Baron labels share Cell Ontology
    names) and a target cell whose type the source lacks is always an error. Returns ``accuracy``,
    ``balanced_accuracy`` (mean recall over the target's true types), ``dummy`` (accuracy of a
    prior-class :class:`~sklearn.dummy.DummyClassifier` fit on the same cells), ``ceiling`` (the
    fraction of target cells whose type the source has: the most any classifier can reach),
    ``source_test_accuracy`` (on the held-out 20% of the source), ``n_target`` and ``n_types``.
    A map value may be a set of target types (a source type matching several, e.g. fly
    enterocyte subtypes -> mouse ``Enterocyte``): a prediction is right if the truth is among them.
    ``return_correct=True`` adds ``correct`` (bool per target cell, in ``species == target`` order).
    """
    from sklearn.dummy import DummyClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score
    from sklearn.model_selection import train_test_split

    emb = np.asarray(emb, dtype=np.float64)
    labels = np.asarray(labels).astype(str)
    species = np.asarray(species).astype(str)
    if emb.ndim != 2 or len(emb) != len(labels) or len(labels) != len(species):
        raise ScpriorInputError(f"embedding {emb.shape}, labels ({len(labels)}) and species ({len(species)}) "
                                "must describe the same cells.")
    if not np.isfinite(emb).all():
        raise ScpriorInputError("The embedding has NaN/inf values; label transfer needs finite values.")
    src, tgt = np.flatnonzero(species == source), np.flatnonzero(species == target)
    if len(src) < 2 or not len(tgt):
        raise ScpriorInputError(f"label transfer needs cells of both {source!r} and {target!r} "
                                f"(has {sorted(set(species))}).")
    if len(set(labels[src])) < 2:
        raise ScpriorInputError(f"The {source} cells have fewer than two cell types; nothing to transfer.")
    mapping = ({k: frozenset([v]) if isinstance(v, str) else frozenset(v) for k, v in cell_type_map.items()}
               if cell_type_map is not None else {t: frozenset([t]) for t in set(labels[src])})
    train, held = train_test_split(src, test_size=1.0 - train_fraction, random_state=int(seed))
    clf = LogisticRegression(C=C, random_state=0, max_iter=1000).fit(emb[train], labels[train])
    dummy = DummyClassifier(strategy="prior").fit(emb[train], labels[train])
    truth = labels[tgt]

    def right(pred: np.ndarray) -> np.ndarray:
        return np.asarray([t in mapping.get(p, ()) for p, t in zip(pred, truth)], dtype=bool)

    def balanced(ok: np.ndarray) -> float:  # mean recall over the target's true types
        return float(np.mean([ok[truth == t].mean() for t in np.unique(truth)]))

    correct = right(clf.predict(emb[tgt]))
    reachable = set().union(*mapping.values()) if mapping else set()
    out = {"accuracy": float(correct.mean()), "balanced_accuracy": balanced(correct),
           "dummy": float(right(dummy.predict(emb[tgt])).mean()),
           "ceiling": float(np.isin(truth, list(reachable)).mean()),
           "source_test_accuracy": float(accuracy_score(labels[held], clf.predict(emb[held]))) if len(held) else float("nan"),
           "n_target": int(len(tgt)), "n_types": int(len(set(truth)))}
    if return_correct:
        out["correct"] = correct
    return out


def transfer_both_ways(emb: np.ndarray | Mapping[str, np.ndarray], labels: Sequence[str], species: Sequence[str], *,
                       pair: tuple[str, str] = ("human", "mouse"), **kw) -> dict[str, dict[str, float]]:
    """:func:`saturn_label_transfer` a->b and b->a, keyed ``"a->b"``.

    ``emb`` is one embedding for both directions, or a mapping ``{"a->b": emb, "b->a": emb}``
    (e.g. a model trained with the labels of the source species only, once per direction).
    """
    a, b = pair
    out = {}
    for s, t in ((a, b), (b, a)):
        d = f"{s}->{t}"
        e = emb[d] if isinstance(emb, Mapping) else emb
        out[d] = saturn_label_transfer(e, labels, species, source=s, target=t, **kw)
    return out


# ------------------------------------------------------------------------- within-species kNN
def within_species_knn(emb: np.ndarray, labels: Sequence[str], species: Sequence[str], *, k: int = 15,
                       folds: int = 5, seed: int = 0) -> dict[str, float]:
    """Per species: balanced accuracy of a ``k``-nearest-neighbour classifier (Euclidean) in
    ``folds``-fold cross-validation on that species' cells alone (stratified, seeded). How much
    cell-type structure an embedding keeps, whatever it does across species."""
    import warnings

    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.neighbors import KNeighborsClassifier

    emb = np.asarray(emb, dtype=np.float64)
    labels = np.asarray(labels).astype(str)
    species = np.asarray(species).astype(str)
    out = {}
    for s in sorted(set(species)):
        idx = np.flatnonzero(species == s)
        if len(idx) < folds * 2 or len(set(labels[idx])) < 2:
            raise ScpriorInputError(f"{s}: too few cells or cell types for {folds}-fold kNN.")
        cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=int(seed))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # types with fewer cells than folds
            pred = cross_val_predict(KNeighborsClassifier(n_neighbors=int(min(k, len(idx) // 2))), emb[idx],
                                     labels[idx], cv=cv)
            out[s] = float(balanced_accuracy_score(labels[idx], pred))
    return out


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
