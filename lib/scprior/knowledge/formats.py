"""Readers and writers of the gene-embedding files the anchor systems use.

| format | used by | layout |
|---|---|---|
| ``torch`` (``.pt``/``.pth``) | SATURN, UCE, Unify | ``torch.save({symbol: 1-D tensor})`` |
| ``pickle`` (``.pickle``/``.pkl``) | GenePT, scGenePT | ``pickle.dump({symbol: list[float]})`` |
| ``parquet`` | sciLaMA | columns ``gene_id`` (str), ``embedding`` (list of floats) |
| ``csv`` / ``tsv`` | anything | first column the symbol, one column per dimension, header row |

``read_embeddings(path, species=...)`` picks the format from the extension; ``write_embeddings``
writes any :class:`GeneEmbeddings` in any of them. Symbols are kept as stored; duplicates
(case-insensitive), NaN rows and ragged vectors are refused with a message saying what to fix.
Pickles are read with a restricted unpickler (builtins and numpy arrays only) and torch files with
``weights_only=True``, so neither can run code on load. A CSV/TSV whose header row is a gene's
vector (no header) is read with that first gene kept. Writes are atomic (the old file survives a
failed write).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd

from scprior.errors import ScpriorInputError
from scprior.knowledge.embeddings import GeneEmbeddings
from scprior.safe_io import atomic_path, load_pickle_restricted, load_torch_tensors

FORMATS = ("torch", "pickle", "parquet", "csv", "tsv")
_EXTENSIONS = {".pt": "torch", ".pth": "torch", ".pickle": "pickle", ".pkl": "pickle",
               ".parquet": "parquet", ".csv": "csv", ".tsv": "tsv", ".txt": "tsv"}


def guess_format(path: str | os.PathLike) -> str:
    """The format of ``path`` from its extension (``.csv.gz`` counts as ``.csv``)."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] in {".gz", ".bz2", ".xz", ".zip"}:
        suffixes = suffixes[:-1]
    fmt = _EXTENSIONS.get(suffixes[-1] if suffixes else "")
    if fmt is None:
        raise ScpriorInputError(
            f"Cannot tell the embedding format of {path}; pass format= one of {FORMATS} "
            f"(extensions: {sorted(_EXTENSIONS)})."
        )
    return fmt


def _from_mapping(mapping: dict, *, species: str, source: str, path: Path) -> GeneEmbeddings:
    if not isinstance(mapping, dict) or not mapping:
        raise ScpriorInputError(f"{path} does not hold a non-empty {{gene symbol: vector}} dict.")
    symbols, rows = [], []
    for key, vec in mapping.items():
        try:
            arr = vec.detach().cpu().numpy() if hasattr(vec, "detach") else np.asarray(vec, dtype=np.float32)
            arr = np.asarray(arr, dtype=np.float32).ravel()
        except (TypeError, ValueError):
            raise ScpriorInputError(
                f"{path}: the vector of {key!r} is not numeric ({str(vec)[:40]!r}); every gene needs a "
                "vector of numbers (check the file holds embeddings, not text)."
            ) from None
        symbols.append(str(key))
        rows.append(arr)
    dims = {r.shape[0] for r in rows}
    if len(dims) != 1:
        raise ScpriorInputError(f"{path}: vectors have different lengths {sorted(dims)[:5]}; one dimension expected.")
    return GeneEmbeddings(np.asarray(symbols, dtype=object), np.vstack(rows), species, source,
                          {"file": str(path)})


#: the only globals an embedding pickle may rebuild: builtin containers and numpy arrays/scalars
PICKLE_GLOBALS: dict[tuple[str, str], None] = {key: None for key in (
    ("builtins", "dict"), ("builtins", "list"), ("builtins", "float"), ("builtins", "int"),
    ("builtins", "str"), ("builtins", "tuple"), ("collections", "OrderedDict"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
)}


def _looks_headerless(columns: pd.Index) -> bool:
    """True if a CSV's header row is data: every column name after the first is a number, and
    they are not just the dimension indices (``0, 1, 2...`` as ``DataFrame.to_csv`` writes them)."""
    try:
        values = np.asarray([float(c) for c in columns], dtype=np.float64)
    except (TypeError, ValueError):
        return False
    n = len(values)
    return not (np.array_equal(values, np.arange(n)) or np.array_equal(values, np.arange(1, n + 1)))


def read_embeddings(path: str | os.PathLike, *, species: str, source: str | None = None,
                    format: str | None = None) -> GeneEmbeddings:  # noqa: A002 - the natural name
    """Read a gene-embedding file in any anchor format (see module docstring) as GeneEmbeddings.

    ``source`` names the embedding (default: the file stem, e.g. ``"human_esm2"``); name it for
    what it is (``"esm2"``, ``"genept_ada"``).
    """
    from scprior.data.species import get_species
    from scprior.data.validate import check_symbol_case

    species = get_species(species).name
    path = Path(path)
    if not path.is_file():
        raise ScpriorInputError(f"Embedding file {path} not found.")
    fmt = format or guess_format(path)
    source = source or path.name.split(".")[0]
    if fmt == "torch":
        obj = load_torch_tensors(path, what="embedding file (a torch file of {symbol: tensor})")
        emb = _from_mapping(obj, species=species, source=source, path=path)
    elif fmt == "pickle":
        obj = load_pickle_restricted(path, allowed=PICKLE_GLOBALS,
                                     what="embedding pickle (GenePT-style {symbol: list[float]})")
        emb = _from_mapping(obj, species=species, source=source, path=path)
    elif fmt == "parquet":
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for bad files
            raise ScpriorInputError(f"{path} is not a readable Parquet file ({type(exc).__name__}: "
                                    f"{str(exc)[:200]}); obtain an intact copy.") from None
        if not {"gene_id", "embedding"} <= set(frame.columns):
            raise ScpriorInputError(
                f"{path}: a sciLaMA embedding Parquet needs columns 'gene_id' and 'embedding'; "
                f"found {list(frame.columns)}."
            )
        emb = _from_mapping(dict(zip(frame["gene_id"].astype(str), frame["embedding"])),
                            species=species, source=source, path=path)
    elif fmt in {"csv", "tsv"}:
        sep = "," if fmt == "csv" else "\t"
        frame = pd.read_csv(path, sep=sep, index_col=0)
        if _looks_headerless(frame.columns):  # the first gene was read as the header: read it as data
            frame = pd.read_csv(path, sep=sep, index_col=0, header=None)
        if frame.shape[1] == 0:
            raise ScpriorInputError(f"{path}: expected a symbol column then one column per dimension.")
        try:
            values = frame.to_numpy(dtype=np.float32)
        except ValueError as exc:
            raise ScpriorInputError(f"{path}: non-numeric embedding values ({exc}).") from exc
        emb = GeneEmbeddings(frame.index.astype(str).to_numpy(dtype=object), values, species, source,
                             {"file": str(path)})
    else:
        raise ScpriorInputError(f"Unknown embedding format {fmt!r}; use one of {FORMATS}.")
    check_symbol_case(emb.symbols, species=species, name=f"Embedding file {path}")
    return emb


def write_embeddings(emb: GeneEmbeddings, path: str | os.PathLike, *, format: str | None = None) -> Path:  # noqa: A002
    """Write ``emb`` in an anchor format (picked from the extension unless ``format`` is given)."""
    path = Path(path)
    fmt = format or guess_format(path)
    if fmt not in FORMATS:
        raise ScpriorInputError(f"Unknown embedding format {fmt!r}; use one of {FORMATS}.")
    symbols = [str(s) for s in emb.symbols]
    with atomic_path(path) as tmp:  # the old file stays intact until the new one is complete
        if fmt == "torch":
            import torch

            torch.save({s: torch.from_numpy(emb.matrix[i].copy()) for i, s in enumerate(symbols)}, tmp)
        elif fmt == "pickle":
            with open(tmp, "wb") as fh:
                pickle.dump({s: emb.matrix[i].astype(float).tolist() for i, s in enumerate(symbols)}, fh)
        elif fmt == "parquet":
            pd.DataFrame({"gene_id": symbols, "embedding": list(emb.matrix.astype(np.float32))}).to_parquet(
                tmp, index=False)
        else:
            frame = emb.to_frame()
            frame.columns = [f"dim_{j}" for j in range(emb.dim)]
            # the temporary file keeps the target's last suffix, so ``.csv.gz`` is still compressed
            frame.to_csv(tmp, sep="," if fmt == "csv" else "\t", float_format="%.8g")
    return path
