"""Checks at the door: every loader and model entry point calls these on user AnnData.

Each check raises :class:`~scprior.errors.ScpriorInputError` naming the problem and the fix.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from scprior.data.species import get_species
from scprior.errors import ScpriorInputError

#: text a missing value becomes when a column holding NaN is cast to str (``astype(str)``)
MISSING_TEXT = frozenset({"nan", "none", "<na>", "null", ""})
_ENSEMBL_RE = re.compile(r"^ENS[A-Z]*[GTP]\d{6,}(\.\d+)?$")


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def read_h5ad(path: str | os.PathLike, *, what: str = ".h5ad file"):
    """``anndata.read_h5ad`` behind one guard: a missing, empty, truncated or corrupt file, or one
    that is not HDF5 at all (a CSV renamed ``.h5ad``), raises :class:`ScpriorInputError` naming the
    file and the fix instead of an h5py traceback. The file is only read."""
    import anndata as ad

    path = Path(path)
    if not path.is_file():
        raise ScpriorInputError(f"{what} {path} does not exist; check the path.")
    size = path.stat().st_size
    if size == 0:
        raise ScpriorInputError(f"{what} {path} is empty (0 bytes): the download or copy did not finish. "
                                "Fetch or copy it again.")
    with open(path, "rb") as fh:
        head = fh.read(len(_HDF5_SIGNATURE))
    if head != _HDF5_SIGNATURE:
        text = head.decode("ascii", errors="replace")
        raise ScpriorInputError(
            f"{what} {path} is not an .h5ad (HDF5) file: it starts with {text!r}. If it is a CSV/TSV table, "
            "read it with pandas and build an AnnData (anndata.AnnData(X=..., obs=..., var=...)); otherwise "
            "obtain the real .h5ad."
        )
    try:
        return ad.read_h5ad(path)
    except Exception as exc:  # noqa: BLE001 - h5py/anndata raise many types for damaged files
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise ScpriorInputError(
            f"{what} {path} cannot be read as .h5ad ({type(exc).__name__}{': ' + detail if detail else ''}); "
            f"it is truncated or corrupt ({size} bytes). Obtain an intact copy (re-download, or check its sha256)."
        ) from None


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


#: var columns that may hold gene symbols (10x: ``gene_symbols``; ``gene_ids`` is 10x's Ensembl column)
SYMBOL_COLUMNS = ("gene_name", "gene_symbol", "gene_symbols", "symbol", "feature_name")


def symbol_columns(var: pd.DataFrame) -> list[str]:
    """Columns of ``var`` that hold gene symbols (named like one and not themselves Ensembl ids)."""
    out = []
    for c in var.columns:
        if str(c).lower() in SYMBOL_COLUMNS and not looks_like_ensembl(var[c].astype(str).head(200)):
            out.append(c)
    return out


def upper_case_share(names: Iterable[str]) -> float:
    """Share of names with letters whose letters are all upper case (human ``KLF1``; mouse ``Klf1`` is not)."""
    with_letters = [n for n in (str(x) for x in names) if sum(ch.isalpha() for ch in n) >= 2]
    if not with_letters:
        return float("nan")
    return sum(n == n.upper() for n in with_letters) / len(with_letters)


def check_symbol_case(names: Iterable[str], *, species: str, name: str = "adata") -> None:
    """Fail if the symbols' case says they belong to the other species.

    Human symbols are upper case (``CD3E``), mouse symbols title case (``Cd3e``). Data passed under
    the wrong species name would otherwise be matched to the wrong knowledge silently.
    """
    sp_ = get_species(species)
    if sp_.symbol_case is None:  # a species without a known symbol convention: nothing to judge
        return
    share = upper_case_share(names)
    if share != share:  # no symbol with letters: nothing to judge
        return
    if sp_.symbol_case == "upper" and share < 0.5:
        raise ScpriorInputError(
            f"{name} was passed as {sp_.name} but only {share:.0%} of its gene symbols are upper case "
            "(human symbols look like CD3E; these look like mouse symbols, Cd3e). Pass species='mouse' "
            "if it is mouse data, or map the genes to human symbols first."
        )
    if sp_.symbol_case == "title" and share > 0.5:
        raise ScpriorInputError(
            f"{name} was passed as {sp_.name} but {share:.0%} of its gene symbols are upper case "
            "(mouse symbols look like Cd3e; these look like human symbols, CD3E). Pass species='human' "
            "if it is human data, or map the genes to mouse symbols first."
        )


def _example_symbol(case: str | None) -> str:
    return {"upper": "KLF1", "title": "Klf1"}.get(case or "", "the gene names of its own records")


def check_gene_symbols(adata, *, species: str, name: str = "adata") -> None:
    """Fail if ``adata.var_names`` are not unique gene symbols of ``species``.

    Catches Ensembl ids (with a hint to the var column that holds symbols), empty names,
    duplicates, names that differ only in case (``CD3E`` and ``cd3e`` would match one embedding:
    symbols are matched case-insensitively downstream) and symbols whose case belongs to the
    other species (:func:`check_symbol_case`).
    """
    sp_ = get_species(species)
    names = pd.Index(adata.var_names.astype(str))
    if looks_like_ensembl(names):
        cols = symbol_columns(adata.var)
        hint = (
            f" adata.var[{cols[0]!r}] holds symbols: set adata.var_names = adata.var[{cols[0]!r}] "
            "(then adata.var_names_make_unique())."
            if cols
            else " Map them to symbols first (e.g. with the knowledge gene table)."
        )
        raise ScpriorInputError(
            f"{name}.var_names look like Ensembl ids ({names[0]!r}, ...; expected {sp_.name} gene "
            f"symbols such as {_example_symbol(sp_.symbol_case)}).{hint}"
        )
    if (names.str.len() == 0).any() or names.isna().any():
        raise ScpriorInputError(f"{name}.var_names has empty gene names; drop or name those genes.")
    if not names.is_unique:
        dups = names[names.duplicated()].unique()[:5].tolist()
        raise ScpriorInputError(
            f"{name}.var_names has {int(names.duplicated().sum())} duplicated gene names (e.g. {dups}). "
            "Make them unique (adata.var_names_make_unique()) or sum duplicates before use."
        )
    upper = names.str.upper()
    if upper.duplicated().any():
        clash = sorted(names[upper.isin(upper[upper.duplicated()])].tolist(), key=str.upper)[:6]
        raise ScpriorInputError(
            f"{name}.var_names has genes that differ only in case ({clash}); scprior matches symbols "
            "case-insensitively, so they would share one embedding. Sum them into one gene or drop the "
            "wrongly cased one."
        )
    check_symbol_case(names, species=sp_.name, name=name)


def check_obs_column(adata, column: str, *, name: str = "adata") -> None:
    """Fail if ``adata.obs`` lacks ``column`` or it has missing values."""
    if column not in adata.obs:
        raise ScpriorInputError(
            f"{name}.obs has no column {column!r} (columns: {list(adata.obs.columns)}). "
            f"Add it, or pass the name of the column that holds this information."
        )
    values = adata.obs[column]
    if values.isna().any():
        n = int(values.isna().sum())
        raise ScpriorInputError(f"{name}.obs[{column!r}] has {n} missing values; fill or drop those cells.")
    as_text = values.astype(str).str.strip().str.lower()
    cast = as_text.isin(MISSING_TEXT)
    if cast.any():
        seen = sorted(values[cast].astype(str).unique().tolist())[:3]
        raise ScpriorInputError(
            f"{name}.obs[{column!r}] has {int(cast.sum())} values {seen} that stand for a missing value "
            "(NaN already cast to text), which would become a category of their own. Fill or drop those cells."
        )
