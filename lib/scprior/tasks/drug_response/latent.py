"""How much drug information the basal latent keeps: CPA's disentanglement check.

A logistic regression (fixed ``C``, stratified 5-fold cross-validation, seeded) predicts each
cell's drug (vehicle counted as its own class) from a representation; a drug-invariant basal latent
gives an accuracy near the majority-class rate, the input expression (PCA) a high one.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.preprocessing import StandardScaler

from scprior.models.cpa import CPA
from scprior.tasks.drug_response.data import DrugTask


def drug_labels(task: DrugTask, idx: np.ndarray) -> np.ndarray:
    """Drug name per cell (``vehicle`` for control cells)."""
    return np.where(task.control[idx], "vehicle", np.asarray(task.drugs, dtype=object)[task.drug[idx]]).astype(str)


def basal_latent(model: CPA, task: DrugTask, idx: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Basal latent (len(idx), latent_dim) of cells ``idx``."""
    parts = [model.embed_basal(torch.as_tensor(task.counts[idx[i:i + batch_size]])).numpy()
             for i in range(0, len(idx), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, model.config.latent_dim), dtype=np.float32)


def classifier_accuracy(features: np.ndarray, labels: np.ndarray, *, seed: int = 0, c: float = 1.0,
                        folds: int = 5) -> float:
    """Mean cross-validated accuracy of a logistic regression predicting ``labels`` from ``features``."""
    _, counts = np.unique(labels, return_counts=True)
    folds = int(max(2, min(folds, counts.min())))
    x = StandardScaler().fit_transform(features)
    clf = LogisticRegression(C=c, max_iter=500)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return float(cross_val_score(clf, x, labels, cv=cv).mean())


def majority_rate(labels: np.ndarray) -> float:
    """Accuracy of always predicting the most common label."""
    _, counts = np.unique(labels, return_counts=True)
    return float(counts.max() / counts.sum())


def disentanglement(model: CPA, task: DrugTask, idx: np.ndarray, *, seed: int = 0, n_pcs: int = 32) -> dict[str, float]:
    """Drug-classifier accuracy on the basal latent vs on the input's PCA, and the chance rate."""
    labels = drug_labels(task, idx)
    z = basal_latent(model, task, idx)
    pcs = PCA(n_components=min(n_pcs, len(idx) - 1, task.n_genes), random_state=seed).fit_transform(task.logx[idx])
    return {"accuracy_basal": classifier_accuracy(z, labels, seed=seed),
            "accuracy_input_pca": classifier_accuracy(pcs, labels, seed=seed),
            "majority_rate": majority_rate(labels), "n_cells": int(len(idx)), "n_classes": int(len(set(labels)))}
