"""Drug-perturbation AnnData in the layouts CPA and chemCPA distribute: validated at the door.

Per cell (``obs``), as read from the public code of CPA (facebookresearch/CPA ``cpa/data.py``,
theislab/cpa) and chemCPA (theislab/chemCPA, sci-Plex3 config):

=========================  ==================================================================
``condition``              drug name (CPA's ``perturbation_key``; ``+`` joins combinations)
``dose_val``               dose per drug, ``+``-joined like ``condition`` (CPA's ``dose_key``)
``cell_type``              covariate(s) (CPA's ``covariate_keys``; e.g. cell line, patient)
``control``                1 for vehicle cells, 0 otherwise
``cov_drug_dose_name``     ``"{covariates}_{condition}_{dose_val}"`` (CPA's pert category)
``SMILES``                 chemCPA's ``smiles_key`` (optional; needed for fingerprints)
``split*``                 ``train`` / ``test`` / ``ood`` per cell (CPA's ``split_key``)
=========================  ==================================================================

``uns['rank_genes_groups_cov']``: pert category -> its DE genes (CPA's ``de_genes``). ``X`` or
``layers['counts']`` holds raw counts. Key names can be remapped with :class:`DrugLayout` (e.g.
chemCPA's sci-Plex3 uses ``dose`` in nM and ``product_name``). Doses here are one float per cell:
combinations are not supported yet and are rejected with a clear message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scprior.errors import ScpriorInputError

DE_KEY = "rank_genes_groups_cov"
SPLIT_VALUES = ("train", "test", "ood")


@dataclass(frozen=True)
class DrugLayout:
    """Which ``obs`` columns hold what (CPA's defaults); rename to read chemCPA-style files."""

    perturbation_key: str = "condition"
    dose_key: str = "dose_val"
    covariate_keys: tuple[str, ...] = ("cell_type",)
    control_key: str = "control"
    pert_category_key: str = "cov_drug_dose_name"
    smiles_key: str = "SMILES"
    de_key: str = DE_KEY
    split_keys: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def from_dict(cls, spec: dict | None) -> DrugLayout:
        """Build from a ``params.yaml`` mapping (lists become tuples); unknown keys are an error."""
        spec = dict(spec or {})
        unknown = set(spec) - set(cls.__dataclass_fields__)
        if unknown:
            raise ScpriorInputError(f"Unknown drug layout keys {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}.")
        for key in ("covariate_keys", "split_keys"):
            if key in spec:
                value = spec[key]
                spec[key] = (value,) if isinstance(value, str) else tuple(value)
        return cls(**spec)


def pert_category(covariates: Sequence[str], drug: str, dose: float | str) -> str:
    """CPA's pert category name, ``"{cov1}_{cov2}_{drug}_{dose}"``."""
    return "_".join([*map(str, covariates), str(drug), format_dose(dose)])


def format_dose(dose: float | str) -> str:
    """A dose as CPA writes it in category names (``0.1``, ``1.0``): shortest float repr."""
    try:
        return repr(float(dose))
    except (TypeError, ValueError):
        return str(dose)


def counts_matrix(adata: ad.AnnData) -> sp.csr_matrix:
    """Raw counts (``layers['counts']``, else ``X``) as CSR float32; checked non-negative integers."""
    mat = adata.layers["counts"] if "counts" in adata.layers else adata.X
    mat = sp.csr_matrix(mat, dtype=np.float32)
    data = mat.data
    if data.size and (data.min() < 0 or not np.allclose(data, np.round(data))):
        raise ScpriorInputError(
            "The drug AnnData must hold raw integer counts in layers['counts'] (or X); found negative or "
            "non-integer values. Put the unnormalised counts there (CPA's count decoder needs them)."
        )
    return mat


def validate_drug_anndata(adata: ad.AnnData, layout: DrugLayout | None = None, *, what: str = "drug AnnData") -> ad.AnnData:
    """Check ``adata`` against ``layout``; return it (unchanged) or raise :class:`ScpriorInputError`.

    Checks: required obs columns; one numeric, non-negative dose per cell (vehicle cells 0 or any
    dose with ``control == 1``); control cells exist for every covariate combination that has
    treated cells; unique gene names; raw counts; split columns hold only train/test/ood.
    """
    lay = layout or DrugLayout()
    obs = adata.obs
    need = [lay.perturbation_key, lay.dose_key, lay.control_key, *lay.covariate_keys, *lay.split_keys]
    missing = [c for c in need if c not in obs.columns]
    if missing:
        raise ScpriorInputError(
            f"{what} lacks obs columns {missing} (has {list(obs.columns)[:20]}). CPA's layout needs "
            f"the drug ({lay.perturbation_key!r}), dose ({lay.dose_key!r}), vehicle flag ({lay.control_key!r}) "
            f"and covariates {list(lay.covariate_keys)}; rename columns or set the layout keys in params.yaml."
        )
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise ScpriorInputError(f"{what} is empty ({adata.n_obs} cells x {adata.n_vars} genes).")
    drugs = obs[lay.perturbation_key].astype(str)
    if drugs.str.contains(r"\+", regex=True).any():
        raise ScpriorInputError(
            f"{what}: some cells have drug combinations ('+' in {lay.perturbation_key!r}); scprior's CPA handles "
            "one drug per cell. Keep single-drug cells (and vehicle) for this task."
        )
    dose = pd.to_numeric(obs[lay.dose_key], errors="coerce")
    if dose.isna().any() or (dose < 0).any():
        bad = obs.loc[dose.isna() | (dose < 0), lay.dose_key].astype(str).unique()[:5].tolist()
        raise ScpriorInputError(f"{what}: {lay.dose_key!r} must be one non-negative number per cell; found {bad}.")
    control = pd.to_numeric(obs[lay.control_key], errors="coerce")
    if control.isna().any() or not control.isin([0, 1]).all():
        raise ScpriorInputError(f"{what}: {lay.control_key!r} must be 0 (treated) or 1 (vehicle) for every cell.")
    if not (control == 1).any():
        raise ScpriorInputError(f"{what} has no vehicle cells ({lay.control_key!r} == 1): CPA needs controls.")
    treated_zero = (control == 0) & (dose == 0)
    if treated_zero.any():
        raise ScpriorInputError(f"{what}: {int(treated_zero.sum())} treated cells have dose 0; give their dose or mark them control.")
    if lay.covariate_keys:
        cov = obs[list(lay.covariate_keys)].astype(str).agg("_".join, axis=1)
        lacking = sorted(set(cov[control == 0]) - set(cov[control == 1]))
        if lacking:
            raise ScpriorInputError(f"{what}: covariate groups {lacking[:5]} have treated cells but no vehicle cells.")
    if adata.var_names.duplicated().any():
        dups = adata.var_names[adata.var_names.duplicated()].unique()[:5].tolist()
        raise ScpriorInputError(f"{what} has duplicated gene names {dups}; make them unique first.")
    for key in lay.split_keys:
        values = set(obs[key].astype(str))
        if not values <= set(SPLIT_VALUES):
            raise ScpriorInputError(f"{what}: split column {key!r} holds {sorted(values - set(SPLIT_VALUES))}; use {SPLIT_VALUES}.")
    counts_matrix(adata)
    return adata


def read_drug_anndata(path: str | Path, layout: DrugLayout | None = None) -> ad.AnnData:
    """Read a CPA/chemCPA-layout ``.h5ad`` and validate it (see :func:`validate_drug_anndata`)."""
    path = Path(path)
    if not path.is_file():
        raise ScpriorInputError(f"Drug AnnData {path} does not exist. Put the file under data/external/ and name it in params.yaml.")
    try:
        adata = ad.read_h5ad(path)
    except Exception as exc:  # noqa: BLE001 - h5py/anndata raise many types for bad files
        raise ScpriorInputError(f"{path} is not a readable .h5ad file ({type(exc).__name__}: {exc}).") from None
    return validate_drug_anndata(adata, layout, what=str(path))


def add_pert_categories(adata: ad.AnnData, layout: DrugLayout | None = None) -> None:
    """Write CPA's ``cov_drug_dose_name`` column (vehicle cells get dose ``0.0``) into ``adata.obs``."""
    lay = layout or DrugLayout()
    obs = adata.obs
    names = [pert_category([obs[k].iloc[i] for k in lay.covariate_keys], obs[lay.perturbation_key].iloc[i],
                           obs[lay.dose_key].iloc[i]) for i in range(adata.n_obs)]
    obs[lay.pert_category_key] = pd.Categorical(names)


def rank_genes_groups_cov(adata: ad.AnnData, layout: DrugLayout | None = None, *, n_genes: int = 50,
                          target_sum: float = 1e4) -> dict[str, list[str]]:
    """CPA's DE genes: per pert category, the ``n_genes`` genes ranked highest by a Welch t-test
    (absolute score) against the vehicle cells of the same covariates, on log1p-normalised counts.

    Returns the dict stored in ``uns['rank_genes_groups_cov']``; ``adata`` is not modified.
    """
    lay = layout or DrugLayout()
    counts = counts_matrix(adata)
    lib = np.asarray(counts.sum(1)).ravel()
    logx = np.log1p(sp.diags(target_sum / np.maximum(lib, 1.0)) @ counts).toarray()
    obs = adata.obs
    cats = obs[lay.pert_category_key].astype(str).to_numpy() if lay.pert_category_key in obs else None
    if cats is None:
        raise ScpriorInputError(f"Call add_pert_categories first: obs lacks {lay.pert_category_key!r}.")
    cov = obs[list(lay.covariate_keys)].astype(str).agg("_".join, axis=1).to_numpy() if lay.covariate_keys else np.zeros(adata.n_obs, str)
    control = obs[lay.control_key].astype(int).to_numpy() == 1
    genes = np.asarray(adata.var_names.astype(str))
    out: dict[str, list[str]] = {}
    for cat in pd.unique(cats):
        idx = cats == cat
        if control[idx].all():
            continue
        ref = control & (cov == cov[np.flatnonzero(idx)[0]])
        a, b = logx[idx], logx[ref]
        se = np.sqrt(a.var(0, ddof=1) / max(len(a), 1) + b.var(0, ddof=1) / max(len(b), 1)) + 1e-9
        t = (a.mean(0) - b.mean(0)) / se
        order = np.argsort(-np.abs(np.nan_to_num(t)), kind="stable")[: min(n_genes, len(genes))]
        out[str(cat)] = genes[order].tolist()
    return out
