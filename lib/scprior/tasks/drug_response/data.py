"""One drug dataset as the arrays the drug-response methods need (:class:`DrugTask`), and its splits."""

from __future__ import annotations

from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scprior.data.drug_format import DrugLayout, counts_matrix, validate_drug_anndata
from scprior.errors import ScpriorInputError

VEHICLE_INDEX = 0  # drug index carried by vehicle cells (their dose is 0, so it is never used)


@dataclass
class DrugTask:
    """Arrays of one CPA-layout dataset.

    ``counts`` (n, G) float32 raw counts; ``logx`` (n, G) log1p of counts scaled to ``target_sum``;
    ``drug`` (n,) index into ``drugs`` (vehicle cells: 0, with ``dose`` 0); ``dose`` (n,) float;
    ``control`` (n,) bool; ``covariates`` (n, K) codes into ``covariate_levels``; ``category`` (n,)
    CPA's ``cov_drug_dose_name``; ``de_genes``: category -> gene positions (``uns['rank_genes_groups_cov']``);
    ``smiles``: drug -> SMILES (chemCPA's ``SMILES`` column, empty if absent).
    """

    name: str
    simulated: bool
    layout: DrugLayout
    genes: list[str]
    counts: np.ndarray
    logx: np.ndarray
    drugs: list[str]
    drug: np.ndarray
    dose: np.ndarray
    control: np.ndarray
    covariates: np.ndarray
    covariate_levels: list[list[str]]
    category: np.ndarray
    de_genes: dict[str, np.ndarray]
    smiles: dict[str, str]
    obs: pd.DataFrame
    target_sum: float = 1e4

    @classmethod
    def from_adata(cls, adata: ad.AnnData, layout: DrugLayout | None = None, *, name: str | None = None,
                   target_sum: float = 1e4) -> DrugTask:
        """Build from a CPA-layout AnnData (validated here; not modified). ``layout`` defaults to
        ``uns['drug_layout']``, else CPA's keys."""
        lay = layout or DrugLayout.from_dict(dict(adata.uns.get("drug_layout", {})))
        validate_drug_anndata(adata, lay)
        obs = adata.obs
        counts = counts_matrix(adata)
        lib = np.asarray(counts.sum(1)).ravel()
        logx = np.log1p((sp.diags(target_sum / np.maximum(lib, 1.0)) @ counts).toarray()).astype(np.float32)
        control = obs[lay.control_key].astype(int).to_numpy() == 1
        names = obs[lay.perturbation_key].astype(str).to_numpy()
        drugs = sorted(set(names[~control]))
        index = {d: i for i, d in enumerate(drugs)}
        drug = np.array([index.get(n, VEHICLE_INDEX) if not c else VEHICLE_INDEX for n, c in zip(names, control)])
        dose = np.where(control, 0.0, pd.to_numeric(obs[lay.dose_key]).to_numpy(dtype=float))
        levels, codes = [], []
        for key in lay.covariate_keys:
            values = obs[key].astype(str).to_numpy()
            lv = sorted(set(values))
            levels.append(lv)
            codes.append(np.searchsorted(lv, values))
        covariates = np.stack(codes, 1) if codes else np.zeros((adata.n_obs, 0), dtype=int)
        if lay.pert_category_key in obs:
            category = obs[lay.pert_category_key].astype(str).to_numpy()
        else:
            from scprior.data.drug_format import pert_category

            category = np.array([pert_category([obs[k].iloc[i] for k in lay.covariate_keys], names[i], dose[i])
                                 for i in range(adata.n_obs)])
        genes = adata.var["gene_name"].astype(str).tolist() if "gene_name" in adata.var else adata.var_names.astype(str).tolist()
        pos = {g: i for i, g in enumerate(adata.var_names.astype(str))}
        de = {str(k): np.array([pos[g] for g in v if g in pos], dtype=int) for k, v in dict(adata.uns.get(lay.de_key, {})).items()}
        smiles = {}
        if lay.smiles_key in obs:
            for d, s in zip(names[~control], obs[lay.smiles_key].astype(str).to_numpy()[~control]):
                smiles.setdefault(d, s)
        prov = dict(adata.uns.get("scprior", {}))
        return cls(name=name or str(prov.get("title", prov.get("dataset_id", "drug data"))),
                   simulated=not bool(prov.get("real", True)), layout=lay, genes=genes,
                   counts=counts.toarray(), logx=logx, drugs=drugs, drug=drug, dose=dose, control=control,
                   covariates=covariates.astype(np.int64), covariate_levels=levels, category=category,
                   de_genes=de, smiles=smiles, obs=obs.copy(), target_sum=target_sum)

    @property
    def n_genes(self) -> int:
        return self.counts.shape[1]

    def split(self, key: str) -> np.ndarray:
        """The split column ``key`` (``train``/``test``/``ood`` per cell)."""
        if key not in self.obs:
            raise ScpriorInputError(f"{self.name}: no split column {key!r}; available: {list(self.layout.split_keys)}.")
        return self.obs[key].astype(str).to_numpy()

    def conditions(self, idx: np.ndarray, *, min_cells: int = 1) -> pd.DataFrame:
        """Treated conditions among cells ``idx``: ``category``, ``covariates`` (tuple), ``drug``
        (index), ``dose``, ``n_cells``, ``cells`` (positions); vehicle cells are excluded."""
        idx = np.asarray(idx)
        idx = idx[~self.control[idx]]
        rows = []
        for cat in pd.unique(self.category[idx]):
            cells = idx[self.category[idx] == cat]
            if len(cells) < min_cells:
                continue
            first = cells[0]
            rows.append({"category": cat, "covariates": tuple(int(c) for c in self.covariates[first]),
                         "drug": int(self.drug[first]), "drug_name": self.drugs[self.drug[first]],
                         "dose": float(self.dose[first]), "n_cells": len(cells), "cells": cells})
        return pd.DataFrame(rows)

    def cov_mask(self, covariates: tuple[int, ...]) -> np.ndarray:
        """Cells whose covariates equal ``covariates``."""
        if not covariates:
            return np.ones(len(self.dose), dtype=bool)
        return (self.covariates == np.asarray(covariates)[None, :]).all(1)

    def cov_label(self, covariates: tuple[int, ...]) -> str:
        """Covariate codes as their names joined by ``_``."""
        return "_".join(self.covariate_levels[j][c] for j, c in enumerate(covariates))


def subsample(adata: ad.AnnData, layout: DrugLayout, *, max_cells: int, seed: int = 0,
              keep_categories: int | None = None) -> ad.AnnData:
    """At most ``max_cells`` cells per pert category (vehicle groups keep ``4 * max_cells``), and
    optionally only the first ``keep_categories`` treated drugs (sorted): for quick runs. A copy."""
    rng = np.random.default_rng(seed)
    obs = adata.obs
    cats = obs[layout.pert_category_key].astype(str).to_numpy()
    control = obs[layout.control_key].astype(int).to_numpy() == 1
    keep_drugs = None
    if keep_categories:
        keep_drugs = set(sorted(set(obs[layout.perturbation_key].astype(str)[~control]))[:keep_categories])
    chosen = []
    for cat in pd.unique(cats):
        idx = np.flatnonzero(cats == cat)
        if keep_drugs is not None and not control[idx[0]] and str(obs[layout.perturbation_key].iloc[idx[0]]) not in keep_drugs:
            continue
        cap = max_cells * (4 if control[idx[0]] else 1)
        chosen.append(np.sort(rng.choice(idx, size=min(cap, len(idx)), replace=False)))
    return adata[np.sort(np.concatenate(chosen))].copy()
