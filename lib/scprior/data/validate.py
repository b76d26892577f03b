"""Checks at the door: every loader and model entry point calls these on user AnnData.

Each check raises :class:`~scprior.errors.ScpriorInputError` naming the problem and the fix.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np
import pandas as pd
import scipy.sparse as sp

from scprior.data.species import get_species
from scprior.errors import ScpriorInputError

_ENSEMBL_RE = re.compile(r"^ENS[A-Z]*[GTP]\d{6,}(\.\d+)?$")


def _values(matrix) -> np.ndarray:
    """The stored values of a dense or sparse matrix, as a 1-D array."""
    if sp.issparse(matrix):
        return np.asarray(matrix.data)
    return np.asarray(matrix).ravel()


def check_nonempty(adata, *, name: str = "adata") -> None:
    """Fail if ``adata`` has no cells or no genes."""
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise ScpriorInputError(
            f"{name} is empty ({adata.n_obs} cells x {adata.n_vars} genes). "
            "Check the file and any filtering applied before this step."
        )


def check_finite(matrix, *, name: str = "X") -> None:
    """Fail if ``matrix`` holds NaN or infinite values."""
    vals = _values(matrix)
    if vals.dtype.kind in "fc" and not np.isfinite(vals).all():
        n_bad = int((~np.isfinite(vals)).sum())
        raise ScpriorInputError(
            f"{name} contains {n_bad} NaN/inf values. Remove or impute them "
            "(e.g. replace with 0 for missing counts) before passing the data to scprior."
        )


def is_count_matrix(matrix) -> bool:
    """True if every stored value is a non-negative integer (a raw count matrix)."""
    vals = _values(matrix)
    if vals.size == 0:
        return True
    if vals.dtype.kind in "iu":
        return bool((vals >= 0).all())
    sample = vals if vals.size <= 2_000_000 else vals[:: vals.size // 2_000_000 + 1]
    return bool(np.all(sample >= 0) and np.all(np.equal(np.mod(sample, 1), 0)))


def check_counts(adata, *, layer: str | None = None, name: str = "adata") -> None:
    """Fail unless ``adata.layers[layer]`` (or ``adata.X``) holds raw non-negative integer counts."""
    matrix = adata.X if layer is None else _layer(adata, layer, name)
    where = "X" if layer is None else f"layers[{layer!r}]"
    check_finite(matrix, name=f"{name}.{where}")
    if not is_count_matrix(matrix):
        raise ScpriorInputError(
            f"{name}.{where} does not hold raw counts (found negative or non-integer values, "
            "as after normalisation, log1p or scaling). Pass the un-normalised UMI/read counts, "
            "e.g. adata.layers['counts'] or adata.raw.X from before sc.pp.normalize_total."
        )


def _layer(adata, layer: str, name: str):
    if layer not in adata.layers:
        raise ScpriorInputError(
            f"{name}.layers has no {layer!r} (has {list(adata.layers)}). "
            f"Store the raw counts there: adata.layers[{layer!r}] = adata.X.copy() before normalising."
        )
    return adata.layers[layer]


def looks_like_ensembl(names: Iterable[str], *, frac: float = 0.5) -> bool:
    """True if at least ``frac`` of ``names`` are Ensembl gene/transcript/protein ids."""
    names = [str(n) for n in names]
    if not names:
        return False
    hits = sum(bool(_ENSEMBL_RE.match(n)) for n in names)
    return hits / len(names) >= frac


def check_gene_symbols(adata, *, species: str, name: str = "adata") -> None:
    """Fail if ``adata.var_names`` are not unique gene symbols of ``species``.

    Catches Ensembl ids (with a hint to the column that may hold symbols), duplicates and empty
    names. Case is not enforced (symbols are matched case-insensitively downstream).
    """
    sp_ = get_species(species)
    names = pd.Index(adata.var_names.astype(str))
    if looks_like_ensembl(names):
        symbol_cols = [c for c in adata.var.columns if c.lower() in {"gene_name", "gene_symbol", "symbol", "gene_symbols", "feature_name", "gene_ids"}]
        hint = (
            f" adata.var has {symbol_cols}: set adata.var_names = adata.var[{symbol_cols[0]!r}]."
            if symbol_cols
            else " Map them to symbols first (e.g. with the knowledge gene table)."
        )
        raise ScpriorInputError(
            f"{name}.var_names look like Ensembl ids ({names[0]!r}, ...; expected {sp_.name} gene "
            f"symbols such as {'KLF1' if sp_.symbol_case == 'upper' else 'Klf1'}).{hint}"
        )
    if (names.str.len() == 0).any() or names.isna().any():
        raise ScpriorInputError(f"{name}.var_names has empty gene names; drop or name those genes.")
    if not names.is_unique:
        dups = names[names.duplicated()].unique()[:5].tolist()
        raise ScpriorInputError(
            f"{name}.var_names has {int(names.duplicated().sum())} duplicated gene names (e.g. {dups}). "
            "Make them unique (adata.var_names_make_unique()) or sum duplicates before use."
        )


def check_obs_column(adata, column: str, *, name: str = "adata") -> None:
    """Fail if ``adata.obs`` lacks ``column`` or it has missing values."""
    if column not in adata.obs:
        raise ScpriorInputError(
            f"{name}.obs has no column {column!r} (columns: {list(adata.obs.columns)}). "
            f"Add it, or pass the name of the column that holds this information."
        )
    if adata.obs[column].isna().any():
        n = int(adata.obs[column].isna().sum())
        raise ScpriorInputError(f"{name}.obs[{column!r}] has {n} missing values; fill or drop those cells.")
