"""TF -> target regulon: the Pathway Commons ``controls-expression-of`` table shipped in ``priori``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from scprior.errors import ScpriorInputError
from scprior.safe_io import load_pickle_restricted

_NUMPY_MODULES = ("numpy.core.multiarray", "numpy._core.multiarray")


def _import_module(name: str) -> Any:
    """dill's ``_import_module``, for numpy's array module only."""
    if name not in _NUMPY_MODULES:
        raise ValueError(f"module {name!r} is not allowed in a regulon pickle")
    import numpy._core.multiarray as multiarray

    return multiarray


def _get_attr(obj: Any, name: str) -> Any:
    """dill's ``_get_attr``, for numpy's array rebuilder only."""
    import numpy._core.multiarray as multiarray

    if obj is not multiarray or name != "_reconstruct":
        raise ValueError(f"attribute {name!r} is not allowed in a regulon pickle")
    return multiarray._reconstruct


def _load_type(name: str) -> type:
    """dill's ``_load_type``, for ``slice`` only (pandas stores block positions as slices)."""
    if name != "slice":
        raise ValueError(f"type {name!r} is not allowed in a regulon pickle")
    return slice


#: the globals a pickled DataFrame of strings needs (pandas 2 / numpy 2, with dill's shims)
DATAFRAME_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "dtype"): None, ("numpy", "ndarray"): None,
    ("numpy._core.multiarray", "_reconstruct"): None, ("numpy.core.multiarray", "_reconstruct"): None,
    ("builtins", "slice"): None,
    ("pandas.core.frame", "DataFrame"): None,
    ("pandas.core.indexes.base", "Index"): None, ("pandas.core.indexes.base", "_new_Index"): None,
    ("pandas.core.indexes.range", "RangeIndex"): None,
    ("pandas.core.internals", "BlockManager"): None, ("pandas.core.internals.managers", "BlockManager"): None,
    ("pandas._libs.internals", "_unpickle_block"): None,
    ("dill._dill", "_import_module"): _import_module, ("dill._dill", "_get_attr"): _get_attr,
    ("dill._dill", "_load_type"): _load_type,
}


def read_priori_regulon(path: str | os.PathLike) -> pd.DataFrame:
    """Read priori's ``primary_intx_regulon.pkl`` into ``tf``, ``target``, ``interaction``, ``source``.

    The file is a pickled DataFrame (``UpGene``, ``Type``, ``DownGene``), written by priori with
    dill. It is read with a restricted unpickler that rebuilds only a DataFrame's own classes
    (:data:`DATAFRAME_GLOBALS`; dill's module/attribute/type shims limited to what such a file
    needs), so a tampered file cannot run code. Self-loops and duplicate edges are dropped.
    """
    path = Path(path)
    if not path.is_file():
        raise ScpriorInputError(f"{path} not found; run `python -m scprior.data.fetch` first.")
    raw = load_pickle_restricted(path, allowed=DATAFRAME_GLOBALS, what="regulon table")
    if not isinstance(raw, pd.DataFrame) or not {"UpGene", "DownGene"} <= set(raw.columns):
        raise ScpriorInputError(f"{path} is not priori's regulon table (a DataFrame with UpGene/DownGene).")
    out = pd.DataFrame({
        "tf": raw["UpGene"].astype(str),
        "target": raw["DownGene"].astype(str),
        "interaction": raw["Type"].astype(str) if "Type" in raw else "controls-expression-of",
        "source": "Pathway Commons (priori-regulon-enrichment 1.0.8)",
    })
    out = out[out["tf"] != out["target"]].drop_duplicates(["tf", "target"])
    return out.sort_values(["tf", "target"]).reset_index(drop=True)
