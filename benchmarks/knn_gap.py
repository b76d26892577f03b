"""Why PCA's within-species kNN balanced accuracy is 0.74 (human) in notebook 01, not 0.965.

On the cells notebook 01 scores (every processed Baron cell), PCA of the pipeline's 2,000 ortholog
HVGs, prints the 5-fold kNN score under the issue's definition (k=15, balanced accuracy) and
variants that change one thing each: plain accuracy, k=5, balanced accuracy over the cell types
with at least 2k cells, PCA on each species' own HVGs. The per-type recall table shows which types
a k=15 majority vote can never predict (fewer than ~k/2 cells per training fold).

Usage: ``PYTHONPATH=lib .venv/bin/python benchmarks/knn_gap.py``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from scprior.runtime import set_threads
from scprior.tasks.integration import baselines
from scprior.tasks.integration.methods import prepare_task
from scprior.tasks.integration.metrics import within_species_knn


def knn_variants(emb: np.ndarray, labels: np.ndarray, *, seed: int = 0) -> tuple[dict, pd.Series]:
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, recall_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.neighbors import KNeighborsClassifier

    out = {}
    cv = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k in (15, 5):
            pred = cross_val_predict(KNeighborsClassifier(n_neighbors=k), emb, labels, cv=cv)
            out[f"k={k} balanced_accuracy"] = balanced_accuracy_score(labels, pred)
            out[f"k={k} accuracy"] = accuracy_score(labels, pred)
            if k == 15:
                types, n = np.unique(labels, return_counts=True)
                common = np.isin(labels, types[n >= 2 * k])
                out["k=15 balanced_accuracy, types >= 30 cells"] = balanced_accuracy_score(labels[common], pred[common])
                recall = pd.Series(recall_score(labels, pred, labels=types, average=None), index=types)
                table = pd.DataFrame({"cells": n, "recall": recall.round(3)}, index=types).sort_values("cells")
    return {k: round(float(v), 3) for k, v in out.items()}, table


def main() -> None:
    import scanpy as sc

    set_threads(1)
    task = prepare_task("data/processed", "data/processed/knowledge", n_hvg=1000, n_hvg_orthologs=2000)
    pca = baselines.pca_embedding(task.orthologs, n_comps=50, seed=0)
    labels = task.obs["cell_type"].astype(str).to_numpy()
    species = task.obs["species"].astype(str).to_numpy()
    print("pipeline metric (within_species_knn):", within_species_knn(pca, labels, species, seed=0))
    for s in ("human", "mouse"):
        idx = species == s
        scores, table = knn_variants(pca[idx], labels[idx])
        print(f"\n{s}, PCA of the joint ortholog HVGs:", scores)
        print(table.to_string())
        own = task.adatas[s].copy()  # X is log-normalised already (processed layout)
        sc.pp.highly_variable_genes(own, n_top_genes=2000, flavor="seurat")
        own_pca = baselines.pca_embedding(own[:, own.var["highly_variable"]], n_comps=50, seed=0)
        print(f"{s}, PCA of its own 2,000 HVGs:", knn_variants(own_pca, labels[idx])[0])


if __name__ == "__main__":
    main()
