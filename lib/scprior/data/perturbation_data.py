"""One GEARS-format perturbation dataset as the arrays every method needs, with ONE gene identity.

GEARS distributes its files with Ensembl ids as ``var_names`` and symbols in ``var['gene_name']``;
perturbations are named by symbol (``KLF1+ctrl``). Every lookup of a gene in the perturbation path
therefore goes through :class:`GeneIndex` built from ``var['gene_name']``, case-insensitively
(``symbol_key``). :class:`PerturbationData` keeps its pseudobulk tables with those symbols as
columns, so no method ever sees ``var_names``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scprior.data.gears import condition_means
from scprior.data.perturbations import CONTROL, canonical_condition, parse_condition
from scprior.errors import ScpriorInputError


def symbol_key(symbol: str) -> str:
    """The case-insensitive key of a gene symbol (``'klf1 '`` -> ``'KLF1'``)."""
    return str(symbol).strip().upper()


class GeneIndex:
    """Symbol -> position in the measured genes, matched case-insensitively (``var['gene_name']``)."""

    def __init__(self, symbols: Sequence[str]):
        self.symbols = [str(s) for s in symbols]
        self._pos: dict[str, int] = {}
        for i, s in enumerate(self.symbols):
            key = symbol_key(s)
            if key in self._pos:
                raise ScpriorInputError(f"Gene symbol {s!r} occurs twice (case-insensitively) in var['gene_name'].")
            self._pos[key] = i

    @classmethod
    def from_adata(cls, adata: ad.AnnData) -> GeneIndex:
        """From ``var['gene_name']`` (never ``var_names``, which may be Ensembl ids)."""
        if "gene_name" not in adata.var:
            raise ScpriorInputError("var has no 'gene_name' column; GEARS keeps gene symbols there.")
        return cls(adata.var["gene_name"].astype(str).tolist())

    def __contains__(self, symbol: object) -> bool:
        return symbol_key(str(symbol)) in self._pos

    def __len__(self) -> int:
        return len(self.symbols)

    def position(self, symbol: str) -> int | None:
        """Position of ``symbol`` (any case) or ``None`` when it is not measured."""
        return self._pos.get(symbol_key(symbol))

    def positions(self, symbols: Iterable[str]) -> list[int]:
        """Positions of the measured ones among ``symbols`` (unmeasured ones are left out)."""
        return [p for p in (self.position(s) for s in symbols) if p is not None]


def perturbation_coverage(conditions: Iterable[str], known: Iterable[str] | GeneIndex) -> float:
    """Fraction of the perturbed genes of ``conditions`` (with repeats) found in ``known`` (any case)."""
    index = known if isinstance(known, GeneIndex) else GeneIndex(sorted({symbol_key(k) for k in known}))
    genes = [g for c in conditions for g in parse_condition(c)]
    return float(np.mean([g in index for g in genes])) if genes else 0.0


def canonical_pseudobulk(means_by_label: pd.DataFrame, labels: Sequence[str], cells_per_label: pd.Series) -> pd.DataFrame:
    """Pool raw-label means into canonical target sets (weighted by cells): canonical -> mean profile."""
    rows, index = [], []
    groups: dict[str, list[str]] = {}
    for label in labels:
        groups.setdefault(canonical_condition(label), []).append(label)
    for canon, members in groups.items():
        w = cells_per_label.loc[members].to_numpy(dtype=np.float64)
        rows.append((means_by_label.loc[members].to_numpy() * w[:, None]).sum(0) / w.sum())
        index.append(canon)
    return pd.DataFrame(rows, index=index, columns=means_by_label.columns)


@dataclass
class PerturbationData:
    """Arrays of one GEARS-format dataset: expression, labels, observed means, control mean.

    ``genes``: ``var['gene_name']`` (the one gene identity); ``truth``: raw label -> mean ``X``
    (columns ``genes``); ``ctrl``: mean of the control cells (genes,).
    """

    adata: ad.AnnData
    name: str
    simulated: bool
    genes: list[str]
    gene_index: GeneIndex
    X: np.ndarray
    labels: np.ndarray
    canonical: np.ndarray
    ctrl_cells: np.ndarray
    truth: pd.DataFrame
    ctrl: np.ndarray
    cells_per_label: pd.Series
    key: str = "gears"

    @classmethod
    def from_adata(cls, adata: ad.AnnData, *, name: str | None = None, key: str | None = None) -> PerturbationData:
        """Build from a validated GEARS AnnData (see :func:`scprior.data.gears.read_gears`).

        ``name`` is shown in tables and titles; ``key`` (default: the dataset id) names checkpoints.
        """
        prov = adata.uns.get("scprior", {})
        key = key or str(prov.get("dataset_id", name or "gears"))
        key = re.sub(r"[^A-Za-z0-9_.-]+", "_", key).strip("_") or "gears"
        labels = adata.obs["condition"].astype(str).to_numpy()
        if not (labels == CONTROL).any():
            raise ScpriorInputError("The dataset has no control cells (condition 'ctrl').")
        index = GeneIndex.from_adata(adata)
        X = adata.X.toarray() if sp.issparse(adata.X) else np.asarray(adata.X)
        truth = condition_means(adata, column="condition")
        truth.columns = pd.Index(index.symbols)
        ctrl_mask = labels == CONTROL
        return cls(
            adata=adata, name=name or str(prov.get("dataset_id", "gears")), simulated=not bool(prov.get("real", True)),
            genes=list(index.symbols), gene_index=index, X=X.astype(np.float32), labels=labels,
            canonical=np.asarray([canonical_condition(c) for c in labels], dtype=object),
            ctrl_cells=np.flatnonzero(ctrl_mask), truth=truth,
            ctrl=X[ctrl_mask].mean(axis=0).astype(np.float64), cells_per_label=pd.Series(labels).value_counts(), key=key,
        )

    @property
    def conditions(self) -> list[str]:
        """Raw condition labels in order of first appearance."""
        return list(pd.unique(self.labels))

    def pseudobulk(self, labels: Sequence[str]) -> pd.DataFrame:
        """Canonical target set -> mean profile over the cells of ``labels`` (columns: symbols)."""
        return canonical_pseudobulk(self.truth, list(labels), self.cells_per_label)

    def observed_profiles(self) -> dict[str, np.ndarray]:
        """Canonical target set -> observed mean profile, over all cells of the dataset."""
        table = self.pseudobulk(self.conditions)
        return {c: table.loc[c].to_numpy() for c in table.index}
