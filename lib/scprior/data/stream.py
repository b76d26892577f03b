"""Cells of atlases bigger than memory, chunk by chunk: an h5ad read in backed mode (only the
rows of one chunk are read from disk), a folder of h5ad shards, or an in-memory AnnData.

>>> cells = CellSource("atlas.h5ad", layer="counts")          # or a folder of *.h5ad shards
>>> for chunk in cells.chunks(50_000):                        # Chunk(index, start, adata)
...     x = GeneAligner(chunk.adata.var_names, model_genes).align(chunk.counts)  # (cells, model genes) CSR

Memory is bounded by one chunk (its sparse counts and obs), never the dataset: the counts matrix
(``layers[layer]`` or ``X``) is opened with :func:`anndata.io.sparse_dataset` and sliced by rows.
Genes are aligned to a model's vocabulary per chunk with :class:`GeneAligner` (the column map is
computed once per distinct ``var_names``, so shards may order or subset their genes differently).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scprior.errors import ScpriorInputError


@dataclass
class Chunk:
    """One chunk of cells: its position in the stream (``index``, first cell ``start``) and an
    in-memory AnnData of those cells only (counts in ``X`` as float32 CSR, obs, var)."""

    index: int
    start: int
    adata: ad.AnnData

    @property
    def counts(self) -> sp.csr_matrix:
        return self.adata.X

    @property
    def n_obs(self) -> int:
        return int(self.adata.n_obs)


def _csr32(x) -> sp.csr_matrix:
    m = x.tocsr() if sp.issparse(x) else sp.csr_matrix(np.asarray(x))
    return m.astype(np.float32, copy=False)


class _File:
    """One h5ad: obs and var in memory, the counts matrix on disk (rows read on demand)."""

    def __init__(self, path: Path, layer: str | None) -> None:
        import h5py

        self.path = path
        try:
            self.h5 = h5py.File(path, "r")
        except OSError as exc:
            raise ScpriorInputError(f"{path} is not a readable h5ad file ({exc}).") from None
        key = f"layers/{layer}" if layer else "X"
        if key not in self.h5:
            have = list(self.h5["layers"]) if "layers" in self.h5 else []
            raise ScpriorInputError(f"{path} has no {key!r} (layers: {have}); pass layer=None to read X.")
        elem = self.h5[key]
        if isinstance(elem, h5py.Dataset):  # dense matrix: rows still read by slicing
            self.matrix = elem
        else:
            self.matrix = ad.io.sparse_dataset(elem)
            if self.matrix.format != "csr":
                raise ScpriorInputError(f"{path}:{key} is stored as {self.matrix.format.upper()}; streaming by "
                                        "cells needs CSR (rewrite it with adata.X = adata.X.tocsr()).")
        self.obs = ad.io.read_elem(self.h5["obs"])
        self.var = ad.io.read_elem(self.h5["var"])
        self.n_obs = int(self.matrix.shape[0])

    def rows(self, lo: int, hi: int) -> ad.AnnData:
        x = _csr32(self.matrix[lo:hi])
        return ad.AnnData(X=x, obs=self.obs.iloc[lo:hi].copy(), var=self.var.copy())

    def close(self) -> None:
        self.h5.close()


class CellSource:
    """A stream of cells from ``source``: an ``.h5ad`` path (read backed), a folder of ``.h5ad``
    shards (sorted by name, concatenated in that order) or an in-memory :class:`anndata.AnnData`.

    ``layer``: the counts matrix (``layers[layer]``; ``None`` = ``X``). Nothing is read until
    :meth:`chunks` is iterated (except obs/var of every file, to know the number of cells).
    """

    def __init__(self, source: str | os.PathLike | ad.AnnData, *, layer: str | None = "counts") -> None:
        self.layer = layer
        self._adata: ad.AnnData | None = None
        self.paths: list[Path] = []
        if isinstance(source, ad.AnnData):
            if layer and layer not in source.layers:
                raise ScpriorInputError(f"AnnData has no layers[{layer!r}] (has {list(source.layers)}).")
            self._adata = source
            self.sizes = [int(source.n_obs)]
        else:
            path = Path(source)
            if path.is_dir():
                self.paths = sorted(path.glob("*.h5ad"))
                if not self.paths:
                    raise ScpriorInputError(f"{path} holds no .h5ad shards.")
            elif path.is_file():
                self.paths = [path]
            else:
                raise ScpriorInputError(f"{path} does not exist: pass an .h5ad file, a folder of shards or an AnnData.")
            self.sizes = []
            for p in self.paths:
                f = _File(p, layer)
                self.sizes.append(f.n_obs)
                f.close()
        self.n_obs = int(sum(self.sizes))

    def fingerprint(self) -> str:
        """A short id of the source (paths, sizes, modification times, cells): resuming a run checks it."""
        h = hashlib.sha256(str(self.layer).encode())
        if self._adata is not None:
            h.update(f"adata:{self._adata.shape}".encode())
            h.update("\x00".join(map(str, self._adata.obs_names[:1000])).encode())
        for p, n in zip(self.paths, self.sizes):
            st = p.stat()
            h.update(f"{p.resolve()}:{n}:{st.st_size}:{st.st_mtime_ns}".encode())
        return h.hexdigest()[:16]

    def n_chunks(self, chunk_size: int) -> int:
        return len(self.boundaries(chunk_size))

    def boundaries(self, chunk_size: int) -> list[tuple[int, int, int]]:
        """(file index, lo, hi) of every chunk; a chunk never spans two shards."""
        if chunk_size < 1:
            raise ScpriorInputError(f"chunk_size must be >= 1, got {chunk_size}.")
        out = []
        for f, n in enumerate(self.sizes):
            out += [(f, lo, min(lo + chunk_size, n)) for lo in range(0, n, chunk_size)]
        return out

    def chunks(self, chunk_size: int, *, skip: Sequence[int] | set[int] = (), rank: int = 0,
               world: int = 1, order: Sequence[int] | None = None) -> Iterator[Chunk]:
        """Chunks of at most ``chunk_size`` cells, in order (or in ``order``, chunk indices).
        ``skip``: chunk indices not to read (finished ones when resuming); ``rank``/``world``: read
        only chunks ``i % world == rank``."""
        skip = set(int(s) for s in skip)
        bounds = self.boundaries(chunk_size)
        starts = np.concatenate([[0], np.cumsum(self.sizes)])
        order = range(len(bounds)) if order is None else [int(i) for i in order]
        todo = [i for i in order if i not in skip and i % world == rank]
        if self._adata is not None:
            a = self._adata
            for i in todo:
                _, lo, hi = bounds[i]
                sub = a[lo:hi]
                x = _csr32(sub.layers[self.layer] if self.layer else sub.X)
                yield Chunk(i, lo, ad.AnnData(X=x, obs=sub.obs.copy(), var=a.var.copy()))
            return
        open_file: _File | None = None
        try:
            for i in todo:
                f, lo, hi = bounds[i]
                if open_file is None or open_file.path != self.paths[f]:
                    if open_file is not None:
                        open_file.close()
                    open_file = _File(self.paths[f], self.layer)
                yield Chunk(i, int(starts[f]) + lo, open_file.rows(lo, hi))
        finally:
            if open_file is not None:
                open_file.close()


class GeneAligner:
    """Maps a chunk's columns (genes ``var_names``) onto a model's gene list ``target``.

    Matching is by symbol, case-insensitive; target genes the data lacks are zero columns, data
    genes the model lacks are dropped. The column map is cached per distinct ``var_names``.
    """

    def __init__(self, target: Sequence[str]) -> None:
        self.target = [str(g) for g in target]
        self._pos = {g.upper(): i for i, g in enumerate(self.target)}
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def columns(self, var_names: Sequence[str] | pd.Index) -> tuple[np.ndarray, np.ndarray]:
        """(source columns kept, their target columns)."""
        names = [str(v) for v in var_names]
        key = hash(tuple(names))
        if key not in self._cache:
            src = np.asarray([i for i, n in enumerate(names) if n.upper() in self._pos], dtype=np.int64)
            dst = np.asarray([self._pos[names[i].upper()] for i in src], dtype=np.int64)
            self._cache[key] = (src, dst)
        return self._cache[key]

    def align(self, counts, var_names: Sequence[str] | pd.Index) -> sp.csr_matrix:
        """``counts`` (cells x len(var_names)) -> CSR (cells x len(target)), float32."""
        src, dst = self.columns(var_names)
        if not len(src):
            raise ScpriorInputError("No gene of the chunk is in the model's vocabulary; check the gene symbols.")
        x = _csr32(counts)
        remap = np.full(x.shape[1], -1, dtype=np.int64)
        remap[src] = dst
        cols = remap[x.indices]
        keep = cols >= 0
        if keep.all():
            data, indptr = x.data, x.indptr
        else:
            data, cols = x.data[keep], cols[keep]
            indptr = np.concatenate([[0], np.cumsum(keep)])[x.indptr]  # kept entries before each row
        out = sp.csr_matrix((data, cols.astype(np.int32), indptr), shape=(x.shape[0], len(self.target)))
        if np.any(np.diff(dst) < 0):
            out.sort_indices()
        return out


def write_shards(adata: ad.AnnData, folder: str | os.PathLike, *, cells_per_shard: int,
                 prefix: str = "shard") -> list[Path]:
    """Split ``adata`` into ``<prefix>-00000.h5ad``... of ``cells_per_shard`` cells (atomic writes)."""
    from scprior.safe_io import atomic_path, check_writable

    folder = check_writable(folder)
    out = []
    for k, lo in enumerate(range(0, adata.n_obs, cells_per_shard)):
        path = folder / f"{prefix}-{k:05d}.h5ad"
        with atomic_path(path) as tmp:
            adata[lo:lo + cells_per_shard].copy().write_h5ad(tmp)
        out.append(path)
    return out
