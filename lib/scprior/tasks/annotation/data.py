"""Annotation tasks: which cells train, which validate, which test, in which gene space.

Five tasks (GeneCompass's annotation setting, on the data we have):

=====================  ===========================================================================
``human_donor_holdout``  Baron human: train on the other donors, test on ``test_donors['human']``
``mouse_donor_holdout``  Baron mouse: train on one donor, test on ``test_donors['mouse']``
``human_to_mouse``       train on every human cell, test on every mouse cell
``mouse_to_human``       train on every mouse cell, test on every human cell
``pbmc``                 PBMC 68k reduced: a seeded stratified 30 % test split (one batch, no donors)
=====================  ===========================================================================

Labels are ``obs['cell_type']``: for Baron the Cell Ontology class, which is shared across species
(so cross-species labels match by class); test classes absent from training count as errors.
A validation set is carved from the training cells (stratified, per seed); test cells are only
predicted once, at the end.

PBMC 68k reduced ships no counts: its ``X`` is log-normalised. :func:`pbmc_pseudo_counts` turns it
back into per-cell normalised values, expm1(X) rescaled to 10,000 per cell (rounded for the
count models): *pseudo-counts*, not the sequenced counts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import anndata as ad
import numpy as np
import scipy.sparse as sp

from scprior.data.processed import read_processed
from scprior.errors import ScpriorInputError

TASKS = ("human_donor_holdout", "mouse_donor_holdout", "human_to_mouse", "mouse_to_human", "pbmc")
CROSS_SPECIES = ("human_to_mouse", "mouse_to_human")
DATASETS = {"human": "baron_human", "mouse": "baron_mouse", "pbmc": "pbmc68k_reduced"}
SPECIES_OF = {"human": "human", "mouse": "mouse", "pbmc": "human"}


def pbmc_pseudo_counts(adata: ad.AnnData, *, target_sum: float = 1e4) -> ad.AnnData:
    """``layers['counts']`` for a log-normalised AnnData: expm1(X) rescaled to ``target_sum`` per
    cell and rounded (a copy; ``uns['scprior']['counts']`` says they are pseudo-counts)."""
    out = adata.copy()
    x = out.X.toarray() if sp.issparse(out.X) else np.asarray(out.X, dtype=np.float64)
    if x.min() < 0:
        raise ScpriorInputError("X has negative values: pass log-normalised data (not scaled) to pbmc_pseudo_counts.")
    e = np.expm1(x)
    lib = e.sum(axis=1, keepdims=True)
    e = e / np.where(lib == 0, 1, lib) * target_sum
    out.layers["counts"] = sp.csr_matrix(np.round(e).astype(np.float32))
    out.uns["scprior"] = {**dict(out.uns.get("scprior", {})),
                          "counts": f"pseudo-counts: round(expm1(log-normalised X) rescaled to {target_sum:g} per cell)"}
    return out


def load_datasets(processed_dir: str | os.PathLike = "data/processed", *, max_cells: int | None = None,
                  seed: int = 0) -> dict[str, ad.AnnData]:
    """Baron human, Baron mouse and PBMC (with pseudo-counts), optionally ``max_cells`` each
    (a seeded random subset: quick mode)."""
    rng = np.random.default_rng(seed)
    out = {}
    for key, name in DATASETS.items():
        a = read_processed(name, processed_dir)
        if max_cells is not None and a.n_obs > max_cells:
            a = a[np.sort(rng.choice(a.n_obs, size=max_cells, replace=False))].copy()
        if "counts" not in a.layers:
            a = pbmc_pseudo_counts(a)
        out[key] = a
    return out


@dataclass
class TaskSplit:
    """One task: the training and test AnnData (views of the datasets), their species and labels."""

    name: str
    train: ad.AnnData
    test: ad.AnnData
    train_species: str
    test_species: str

    @property
    def classes(self) -> list[str]:
        return sorted(self.train.obs["cell_type"].astype(str).unique())

    @property
    def cross_species(self) -> bool:
        return self.train_species != self.test_species


def make_tasks(datasets: Mapping[str, ad.AnnData], *, test_donors: Mapping[str, Sequence[str]],
               pbmc_test_fraction: float = 0.3, split_seed: int = 0,
               tasks: Sequence[str] = TASKS) -> dict[str, TaskSplit]:
    """The tasks in ``tasks`` (see the module docstring). ``test_donors``: species -> donors held out."""
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        raise ScpriorInputError(f"Unknown annotation task(s) {unknown}; known: {list(TASKS)}.")
    out: dict[str, TaskSplit] = {}
    for name in tasks:
        if name in ("human_donor_holdout", "mouse_donor_holdout"):
            sp_ = name.split("_")[0]
            a = datasets[sp_]
            donors = [str(d) for d in test_donors.get(sp_, [])]
            have = set(a.obs["batch"].astype(str))
            if not donors or not set(donors) <= have:
                raise ScpriorInputError(f"{name}: test_donors[{sp_!r}] = {donors} must name donors of the data "
                                        f"({sorted(have)}).")
            test = a.obs["batch"].astype(str).isin(donors).to_numpy()
            if test.all():
                raise ScpriorInputError(f"{name}: every donor is a test donor; leave one for training.")
            out[name] = TaskSplit(name, a[~test], a[test], sp_, sp_)
        elif name in CROSS_SPECIES:
            src, dst = name.split("_to_")
            out[name] = TaskSplit(name, datasets[src], datasets[dst], src, dst)
        else:
            a = datasets["pbmc"]
            test = stratified_holdout(a.obs["cell_type"].astype(str).to_numpy(), pbmc_test_fraction, seed=split_seed)
            out[name] = TaskSplit(name, a[~test], a[test], "human", "human")
    return out


def stratified_holdout(labels: np.ndarray, fraction: float, *, seed: int) -> np.ndarray:
    """Boolean mask of a seeded, per-class ``fraction`` of cells (each class keeps >= 1 unheld cell)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = min(int(round(fraction * len(idx))), len(idx) - 1)
        mask[idx[:k]] = True
    return mask


def validation_mask(labels: np.ndarray, fraction: float, *, seed: int) -> np.ndarray:
    """Validation cells carved from the *training* cells (stratified by label, seeded)."""
    return stratified_holdout(np.asarray(labels).astype(str), fraction, seed=seed + 1000)
