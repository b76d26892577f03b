"""Baselines, each fitted on the task's training cells only and asked once about the test cells.

- ``logistic_regression``: log-normalised HVGs (chosen on training cells), L2 logistic regression
  with C chosen by stratified k-fold cross-validation on the training cells;
- ``knn_pca``: PCA fitted on the training cells' HVGs, k-nearest-neighbour vote;
- ``celltypist``: the CellTypist package's own training on our training cells (the same HVGs:
  all genes cost ~8x the time on 2 cores for a lower macro-F1 in a trial), in its SGD
  logistic-regression mode (its default LR mode passes an argument scikit-learn 1.8 removed; its
  pretrained models are downloads and are not used);
- ``scanvi``: scVI then scANVI (scvi-tools) on the training cells' counts; test cells are
  predicted by the trained model (not seen during training);
- ``saturn_lr`` (cross-species): the SATURN macrogene core (protein embeddings) trained
  label-free (k-means cluster mode, so no label of either species is used), then logistic
  regression on the training species' embedding (SATURN's own scorer: C=0.005, multinomial).

Cross-species tasks put both species on their one-to-one orthologs (human symbols).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scprior.tasks.annotation.data import TaskSplit


def shared_space(task: TaskSplit, orthologs: pd.DataFrame | None = None) -> tuple[ad.AnnData, ad.AnnData]:
    """(train, test) on the same genes: the dataset's genes, or one-to-one orthologs (human symbols)."""
    if not task.cross_species:
        return task.train, task.test
    from scprior.tasks.integration.data import one2one_pairs

    by = {task.train_species: task.train, task.test_species: task.test}
    pairs = one2one_pairs(orthologs, by["human"].var_names, by["mouse"].var_names)
    out = {}
    for species, a in by.items():
        sub = a[:, pairs[species].to_numpy()]
        new = ad.AnnData(X=sp.csr_matrix(sub.X, dtype=np.float32), obs=sub.obs.copy(),
                         var=pd.DataFrame(index=pd.Index(pairs["human"].to_numpy())))
        new.layers["counts"] = sp.csr_matrix(sub.layers["counts"], dtype=np.float32)
        out[species] = new
    return out[task.train_species], out[task.test_species]


def hvgs(train: ad.AnnData, n_top: int) -> list[str]:
    """``n_top`` highly variable genes of the *training* cells (seurat_v3 on counts)."""
    from scprior.tasks.integration.data import select_hvgs

    return select_hvgs(train, n_top)


def _dense(x) -> np.ndarray:
    return x.toarray() if sp.issparse(x) else np.asarray(x)


def logistic_regression(x_train, y_train, x_test, *, cs: Sequence[float] = (0.01, 0.1, 1.0), folds: int = 3,
                        seed: int = 0, max_iter: int = 300) -> tuple[np.ndarray, dict]:
    """L2 logistic regression, C by stratified ``folds``-fold CV on the training cells (macro-F1)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    y_train = np.asarray(y_train).astype(str)
    n_min = int(pd.Series(y_train).value_counts().min())
    k = max(2, min(folds, n_min))
    cv = StratifiedKFold(k, shuffle=True, random_state=seed) if n_min >= 2 else 2
    grid = GridSearchCV(LogisticRegression(max_iter=max_iter, random_state=seed), {"C": list(cs)},
                        scoring="f1_macro", cv=cv, n_jobs=1, error_score=np.nan)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        grid.fit(_dense(x_train), y_train)
    return grid.predict(_dense(x_test)), {"C": float(grid.best_params_["C"]), "cv_folds": int(k)}


def knn_pca(x_train, y_train, x_test, *, n_pcs: int = 50, k: int = 15, seed: int = 0) -> tuple[np.ndarray, dict]:
    """PCA (fitted on training cells) then a k-nearest-neighbour majority vote."""
    from sklearn.decomposition import PCA
    from sklearn.neighbors import KNeighborsClassifier

    xtr = _dense(x_train)
    n = int(min(n_pcs, xtr.shape[0] - 1, xtr.shape[1]))
    pca = PCA(n, random_state=seed).fit(xtr)
    knn = KNeighborsClassifier(n_neighbors=int(min(k, len(xtr))))
    knn.fit(pca.transform(xtr), np.asarray(y_train).astype(str))
    return knn.predict(pca.transform(_dense(x_test))), {"n_pcs": n, "k": int(knn.n_neighbors)}


def celltypist_predict(train: ad.AnnData, y_train, test: ad.AnnData, *, seed: int = 0,
                       max_iter: int = 200) -> tuple[np.ndarray, dict]:
    """Train a CellTypist model on log-normalised (1e4, log1p) training cells; predict the test cells."""
    import celltypist

    from scprior.runtime import seed_everything

    seed_everything(seed)
    tr = ad.AnnData(X=sp.csr_matrix(train.X, dtype=np.float32), var=pd.DataFrame(index=train.var_names.astype(str)))
    te = ad.AnnData(X=sp.csr_matrix(test.X, dtype=np.float32), var=pd.DataFrame(index=test.var_names.astype(str)))
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        # use_SGD: CellTypist's default path builds LogisticRegression(multi_class='ovr'), an argument
        # scikit-learn >= 1.8 removed; its SGD logistic regression (log loss) is its other documented mode
        model = celltypist.train(tr, labels=np.asarray(y_train).astype(str), check_expression=False, n_jobs=1,
                                 max_iter=max_iter, feature_selection=False, use_SGD=True)
        pred = celltypist.annotate(te, model=model, majority_voting=False)
    labels = pred.predicted_labels["predicted_labels"].astype(str).to_numpy()
    return labels, {"n_genes": int(tr.n_vars), "max_iter": int(max_iter)}


def scanvi_predict(train: ad.AnnData, y_train, test: ad.AnnData, *, seed: int = 0, n_latent: int = 10,
                   scvi_epochs: int = 30, scanvi_epochs: int = 10, batch_size: int = 128) -> tuple[np.ndarray, dict]:
    """scVI then scANVI on the training cells' counts (genes = ``train.var_names``); predict ``test``."""
    import logging

    import scvi

    from scprior.runtime import pick_device

    logging.getLogger("scvi").setLevel(logging.WARNING)
    logging.getLogger("lightning").setLevel(logging.WARNING)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    scvi.settings.seed = int(seed)
    y = np.asarray(y_train).astype(str)

    def make(a, labels):  # a plain in-memory copy (scvi reads views of views slowly)
        t = ad.AnnData(X=sp.csr_matrix(a.layers["counts"], dtype=np.float32, copy=True),
                       obs=pd.DataFrame({"label": labels}, index=a.obs_names.astype(str)),
                       var=pd.DataFrame(index=a.var_names.astype(str)))
        t.layers["counts"] = t.X.copy()
        return t

    tr = make(train, y)
    scvi.model.SCVI.setup_anndata(tr, layer="counts")
    accelerator = {"cuda": "gpu", "mps": "mps"}.get(pick_device("auto"), "cpu")
    kw = {"accelerator": accelerator, "devices": 1, "enable_progress_bar": False, "batch_size": batch_size}
    vae = scvi.model.SCVI(tr, n_latent=n_latent)
    vae.train(max_epochs=scvi_epochs, early_stopping=True, early_stopping_patience=5, **kw)
    lvae = scvi.model.SCANVI.from_scvi_model(vae, unlabeled_category="__unlabelled__", labels_key="label")
    lvae.train(max_epochs=scanvi_epochs, **kw)
    te = make(test, np.full(test.n_obs, "__unlabelled__"))
    pred = np.asarray(lvae.predict(te)).astype(str)
    return pred, {"n_genes": int(tr.n_vars), "scvi_epochs": int(scvi_epochs), "scanvi_epochs": int(scanvi_epochs)}


def saturn_embeddings(adatas: Mapping[str, ad.AnnData], protein, *, seed: int = 0, settings: Mapping | None = None,
                      n_hvg: int = 1000) -> dict[str, np.ndarray]:
    """SATURN core (macrogenes over protein embeddings), pretrained then metric-learned on k-means
    clusters (label-free); returns species -> cell embedding (cells in the order of ``adatas``)."""
    from scprior.models.macrogene_integrator import (
        MacrogeneIntegratorConfig,
        metric_learn,
        pretrain,
    )
    from scprior.tasks.integration.data import species_hvgs

    covered = {s: set(protein[s].symbols) for s in adatas}
    hv = species_hvgs(adatas, n_hvg, covered=covered)
    cfg = MacrogeneIntegratorConfig(**{**dict(settings or {}), "seed": seed, "progress": False,
                                       "label_mode": "clusters", "adversarial_weight": 0.0})
    pre = pretrain(hv, {"protein": protein}, config=cfg, label_key=None, name="saturn")
    _, _, z = metric_learn(pre, label_mode="clusters", name="saturn")
    out, start = {}, 0
    for s, a in hv.items():
        out[s] = np.asarray(z[start:start + a.n_obs], dtype=np.float32)
        start += a.n_obs
    return out


def saturn_lr(z_train: np.ndarray, y_train, z_test: np.ndarray, *, seed: int = 0, c: float = 0.005
              ) -> tuple[np.ndarray, dict]:
    """SATURN's label-transfer scorer: multinomial L2 logistic regression, C=0.005, raw embedding."""
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=c, max_iter=1000, random_state=seed).fit(z_train, np.asarray(y_train).astype(str))
    return lr.predict(z_test), {"C": c}
