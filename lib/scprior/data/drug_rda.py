"""Reading the drug task's R data files (``.rda``) with PyPI ``rdata``: no R needed, no code run.

``rdata.read_rda`` converts plain lists (the sci-Plex3 signature files); a SingleCellExperiment (the
glioblastoma file) is an S4 object it cannot convert, so :func:`read_sce` walks the parsed object
tree: an S4 object's slots are its attributes (a pairlist of tag -> value), a ``dgCMatrix`` holds
``i``, ``p``, ``x``, ``Dim`` and ``Dimnames``, and a ``DFrame`` holds ``listData`` (named columns)
and ``rownames``. Repeated symbols are stored once and referenced (``REF``), so tags are resolved.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scprior.errors import ScpriorInputError


def _require_rdata():
    try:
        import rdata
    except ImportError as exc:  # pragma: no cover - pinned in requirements.txt
        raise ScpriorInputError("Reading .rda files needs the PyPI package rdata==1.1.0 (requirements.txt).") from exc
    return rdata


def _deref(obj: Any) -> Any:
    while obj is not None and getattr(obj, "info", None) is not None and obj.info.type.name == "REF":
        obj = obj.referenced_object
    return obj


def _tag_name(tag: Any) -> str | None:
    tag = _deref(tag)
    if tag is None:
        return None
    value = tag.value
    value = _deref(value) if hasattr(value, "info") else value
    raw = value.value if hasattr(value, "value") else value
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def pairlist(obj: Any) -> dict[str, Any]:
    """A parsed R pairlist (``LIST`` chain) as ``{tag: value object}``."""
    out: dict[str, Any] = {}
    obj = _deref(obj)
    while obj is not None and obj.info.type.name == "LIST":
        out[_tag_name(obj.tag) or f"_{len(out)}"] = obj.value[0]
        obj = _deref(obj.value[1])
    return out


def slots(obj: Any) -> dict[str, Any]:
    """Attributes (S4 slots) of a parsed R object, by name."""
    obj = _deref(obj)
    return pairlist(obj.attributes) if obj is not None and obj.attributes is not None else {}


def strings(obj: Any) -> list[str]:
    """An R character vector as Python strings (``NA`` -> ``""``)."""
    obj = _deref(obj)
    if obj is None or obj.info.type.name != "STR":
        kind = None if obj is None else obj.info.type.name
        raise ScpriorInputError(f"Expected an R character vector in the .rda file, found {kind}.")
    return [(_deref(x).value or b"").decode() for x in obj.value]


def vector(obj: Any) -> np.ndarray | list[str]:
    """An R atomic vector (numbers or strings) as NumPy / a list of strings."""
    obj = _deref(obj)
    if obj.info.type.name == "STR":
        return strings(obj)
    return np.asarray(obj.value)


def dgcmatrix(obj: Any) -> tuple[sp.csc_matrix, list[str], list[str]]:
    """A ``dgCMatrix`` (genes x cells, column-compressed) with its row and column names."""
    s = slots(obj)
    missing = {"i", "p", "x", "Dim"} - set(s)
    if missing:
        raise ScpriorInputError(f"The matrix in the .rda file is not a dgCMatrix (lacks slots {sorted(missing)}).")
    n_rows, n_cols = (int(v) for v in vector(s["Dim"]))
    mat = sp.csc_matrix((np.asarray(vector(s["x"]), dtype=np.float64), np.asarray(vector(s["i"])),
                         np.asarray(vector(s["p"]))), shape=(n_rows, n_cols))
    rows: list[str] = []
    cols: list[str] = []
    if "Dimnames" in s:
        dn = _deref(s["Dimnames"]).value
        if len(dn) == 2:
            rows = strings(dn[0]) if _deref(dn[0]).info.type.name == "STR" else []
            cols = strings(dn[1]) if _deref(dn[1]).info.type.name == "STR" else []
    return mat, rows, cols


def dframe(obj: Any) -> pd.DataFrame:
    """A Bioconductor ``DFrame`` (colData / rowData) as a pandas DataFrame."""
    s = slots(obj)
    data = _deref(s.get("listData"))
    cols: dict[str, Any] = {}
    if data is not None and data.attributes is not None:
        names = strings(slots(data)["names"])
        for name, col in zip(names, data.value):
            cols[name] = vector(col)
    index = None
    if "rownames" in s and _deref(s["rownames"]).info.type.name == "STR":
        index = strings(s["rownames"])
    return pd.DataFrame(cols, index=index)


def read_single_object(path: str | Path, *, expected: str, fetch_hint: str = "python -m scprior.data.fetch"
                       ) -> tuple[dict, str]:
    """The one R object of an ``.rda`` file as its slots and its class name; a missing file, an
    unreadable file or more than one object raise :class:`ScpriorInputError` (``expected`` names
    the object in the message). The file is only read."""
    rdata = _require_rdata()
    path = Path(path)
    if not path.is_file():
        raise ScpriorInputError(f"{path} does not exist: run `{fetch_hint}` first.")
    try:
        parsed = rdata.parser.parse_file(path)
    except Exception as exc:  # noqa: BLE001 - rdata raises many types for bad files
        raise ScpriorInputError(f"{path} is not a readable R data file ({type(exc).__name__}: {exc}).") from None
    objects = pairlist(parsed.object)
    if len(objects) != 1:
        raise ScpriorInputError(f"{path} holds {len(objects)} R objects ({sorted(objects)}); expected one {expected}.")
    obj = slots(next(iter(objects.values())))
    return obj, (strings(obj["class"])[0] if "class" in obj else "?")


def read_sce(path: str | Path, *, assay: str = "counts") -> ad.AnnData:
    """A SingleCellExperiment saved in an ``.rda`` file, as AnnData (cells x genes).

    ``X`` is the ``assay`` (a dgCMatrix, transposed to cells x genes, CSR float32); ``obs`` is its
    ``colData``; ``var_names`` are its row names. The file is only read.
    """
    path = Path(path)
    sce, cls = read_single_object(path, expected="SingleCellExperiment")
    if cls != "SingleCellExperiment" or "assays" not in sce or "colData" not in sce:
        raise ScpriorInputError(f"{path} holds an R object of class {cls!r}, not a SingleCellExperiment.")
    assays_list = slots(slots(sce["assays"])["data"])["listData"]
    names = strings(slots(assays_list)["names"])
    if assay not in names:
        raise ScpriorInputError(f"{path}: the SingleCellExperiment has assays {names}, not {assay!r}.")
    mat, genes, cells = dgcmatrix(_deref(assays_list).value[names.index(assay)])
    obs = dframe(sce["colData"])
    if cells and len(obs) == len(cells):
        obs.index = cells
    index = pd.Index(obs.index.astype(str))
    if index.duplicated().any():  # barcodes repeat across samples: suffix the repeats
        seen: dict[str, int] = {}
        unique = []
        for name in index:
            k = seen.get(name, 0)
            seen[name] = k + 1
            unique.append(name if k == 0 else f"{name}-{k}")
        index = pd.Index(unique)
    obs.index = index
    var = pd.DataFrame(index=pd.Index(genes or [f"gene{i}" for i in range(mat.shape[0])], dtype=str))
    return ad.AnnData(X=sp.csr_matrix(mat.T, dtype=np.float32), obs=obs, var=var)


def read_signatures(path: str | Path, *, which: str = "up") -> dict[str, list[str]]:
    """sigrecon's sci-Plex3 signature file: drug name -> its ``which`` genes (Ensembl ids)."""
    rdata = _require_rdata()
    path = Path(path)
    if not path.is_file():
        raise ScpriorInputError(f"{path} does not exist: run `python -m scprior.data.fetch` first.")
    top = rdata.read_rda(path)
    if len(top) != 1:
        raise ScpriorInputError(f"{path} holds {len(top)} objects; expected one list of drug signatures.")
    table = next(iter(top.values()))
    out: dict[str, list[str]] = {}
    for drug, entry in table.items():
        if not isinstance(entry, dict) or which not in entry:
            raise ScpriorInputError(f"{path}: drug {drug!r} has no {which!r} signature.")
        out[str(drug)] = [str(g) for g in np.atleast_1d(entry[which])]
    return out


def ensembl_to_symbol(org_sqlite: str | Path) -> dict[str, str]:
    """Human Ensembl gene id -> NCBI symbol from Bioconductor's ``org.Hs.eg.sqlite`` (first symbol
    for an id mapped to several genes, in id order; the file is opened read-only)."""
    org_sqlite = Path(org_sqlite)
    if not org_sqlite.is_file():
        raise ScpriorInputError(f"{org_sqlite} does not exist: run `python -m scprior.data.fetch` first.")
    con = sqlite3.connect(f"file:{org_sqlite}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT e.ensembl_id, g.symbol FROM ensembl e JOIN gene_info g ON e._id = g._id "
                           "ORDER BY e.ensembl_id, e._id").fetchall()
    finally:
        con.close()
    out: dict[str, str] = {}
    for ens, sym in rows:
        out.setdefault(str(ens), str(sym))
    return out
