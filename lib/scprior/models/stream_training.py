"""Training batches streamed from cell sources one chunk at a time, for :func:`~scprior.models.training.fit`.

>>> batches = StreamBatches({"human": CellSource("atlas.h5ad")}, build, batch_size=32, part="train")
>>> fit(model, loss_fn, batches, StreamBatches(..., part="val", shuffle=False), config)

A *builder* ``build(species, chunk, cells) -> (dataset, collate)`` turns one chunk (a
:class:`~scprior.data.stream.Chunk`, counts in ``X``) and the rows ``cells`` of it that the part
uses into a map-style dataset of those cells and its collate function (``None``: torch's default),
e.g. the UCE-style encoder's :class:`~scprior.models.uce.SentenceData` (sentences + queries) or
GeneCompass's rank encoding. Gene alignment happens in the builder, per chunk.

Memory is one chunk's counts and its dataset (plus the model): a chunk's dataset is released before
the next chunk is read. Held-out cells are chosen by a seeded hash of (species, cell position in its
source), so the split needs neither the whole matrix nor a fixed chunk size (:func:`held_out`).

Batches follow the in-memory path: every chunk gets a :class:`torch.utils.data.DataLoader` over its
cells that draws its shuffle from one seeded :class:`torch.Generator` kept across chunks and epochs,
so with one chunk holding every training cell the batches are the in-memory recipe's batches. Under
``torch.distributed`` every rank walks the same chunk order and collates its contiguous share of
each global batch (:func:`~scprior.models.training.shard_loader`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch

from scprior.data.stream import CellSource, Chunk
from scprior.errors import ScpriorInputError

#: ``build(species, chunk, cells) -> (dataset of len(cells) cells, collate or None)``
ChunkBuilder = Callable[[str, Chunk, np.ndarray], tuple[torch.utils.data.Dataset, Callable | None]]
PARTS = ("train", "val", "all")

_M1, _M2, _GOLD = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15)


def _splitmix(x: np.ndarray) -> np.ndarray:
    x = (x + _GOLD).astype(np.uint64)
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def held_out(positions: np.ndarray, fraction: float, *, seed: int, stream: int = 0) -> np.ndarray:
    """Boolean (n,): which cells (``positions`` = indices in their source) are held out.

    A cell is held out when a hash of (``seed``, ``stream`` = the source's number, its position)
    falls below ``fraction``: the same cells whatever the chunk size, in expectation ``fraction``
    of them, decided one chunk at a time.
    """
    if not 0 <= fraction < 1:
        raise ScpriorInputError(f"val_fraction must be in [0, 1), got {fraction}.")
    key = _splitmix(np.asarray([int(seed) & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64)
                    ^ np.uint64((int(stream) * 0x632BE59BD9B4E019) & 0xFFFFFFFFFFFFFFFF))
    with np.errstate(over="ignore"):
        u = _splitmix(np.asarray(positions, dtype=np.uint64) ^ key[0])
    return (u >> np.uint64(11)).astype(np.float64) / float(1 << 53) < fraction


def as_sources(sources: Mapping[str, CellSource | str | os.PathLike], *, layer: str | None = "counts"
               ) -> dict[str, CellSource]:
    """species -> :class:`CellSource` (paths are opened with ``layer``); refuses an empty mapping."""
    if not sources:
        raise ScpriorInputError("No cell source given: pass {species: CellSource or .h5ad path or shard folder}.")
    return {str(k): (v if hasattr(v, "chunks") else CellSource(v, layer=layer)) for k, v in sources.items()}


class StreamBatches:
    """An iterable of batches for :func:`~scprior.models.training.fit`, read chunk by chunk.

    ``sources``: species -> cell source (one species per source); ``build``: see the module
    docstring. ``part``: ``"train"`` (cells not held out), ``"val"`` (held-out cells, see
    :func:`held_out` with ``val_fraction`` and ``seed``) or ``"all"``. Each iteration (epoch) visits
    the chunks of all sources in a seeded order (``shuffle``; else source by source, in order)
    and the cells of a chunk in an order drawn from the loader's generator (``shuffle``).
    """

    def __init__(self, sources: Mapping[str, CellSource], build: ChunkBuilder, *, batch_size: int,
                 chunk_size: int = 20_000, part: str = "train", val_fraction: float = 0.1, shuffle: bool = True,
                 seed: int = 0) -> None:
        if part not in PARTS:
            raise ScpriorInputError(f"part must be one of {PARTS}, got {part!r}.")
        if batch_size < 1 or chunk_size < 1:
            raise ScpriorInputError(f"batch_size and chunk_size must be >= 1, got {batch_size}, {chunk_size}.")
        held_out(np.zeros(0), val_fraction, seed=seed)  # validates the fraction
        self.sources = dict(sources)
        self.build = build
        self.batch_size, self.chunk_size, self.part = int(batch_size), int(chunk_size), part
        self.val_fraction, self.shuffle, self.seed = float(val_fraction), bool(shuffle), int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.epoch = 0

    def cells(self, stream: int, chunk: Chunk) -> np.ndarray:
        """Rows of ``chunk`` (from source number ``stream``) that this part uses."""
        if self.part == "all" or self.val_fraction == 0:
            return np.arange(chunk.n_obs) if self.part != "val" else np.empty(0, dtype=np.int64)
        out = held_out(chunk.start + np.arange(chunk.n_obs), self.val_fraction, seed=self.seed, stream=stream)
        return np.flatnonzero(out if self.part == "val" else ~out)

    def n_cells(self) -> int:
        """Cells this part uses per epoch, from the sources' sizes (nothing is read)."""
        total = 0
        for s, src in enumerate(self.sources.values()):
            n = int(src.n_obs)
            if self.part == "all" or (self.val_fraction == 0 and self.part == "train"):
                total += n
            elif self.val_fraction > 0:
                k = int(held_out(np.arange(n), self.val_fraction, seed=self.seed, stream=s).sum())
                total += k if self.part == "val" else n - k
        return total

    def _order(self) -> list[tuple[int, int]]:
        units = [(s, i) for s, src in enumerate(self.sources.values()) for i in range(src.n_chunks(self.chunk_size))]
        if self.shuffle:
            rng = np.random.default_rng([self.seed, self.epoch])
            units = [units[j] for j in rng.permutation(len(units))]
        return units

    def __iter__(self) -> Iterator[Any]:
        from scprior.models.training import shard_loader
        from scprior.runtime import dist_info

        rank, world = dist_info()
        units = self._order()
        self.epoch += 1
        names = list(self.sources)
        readers = {s: src.chunks(self.chunk_size, order=[i for t, i in units if t == s])
                   for s, src in enumerate(self.sources.values())}
        try:
            for s, _ in units:
                chunk = next(readers[s])
                cells = self.cells(s, chunk)
                if not len(cells):
                    continue
                dataset, collate = self.build(names[s], chunk, cells)
                del chunk  # the builder kept what it needs
                loader = torch.utils.data.DataLoader(dataset, batch_size=self.batch_size, shuffle=self.shuffle,
                                                     generator=self.generator if self.shuffle else None,
                                                     collate_fn=collate)
                yield from shard_loader(loader, rank, world)
                del loader, dataset, collate  # released before the next chunk is read
        finally:
            for r in readers.values():
                r.close()


__all__ = ["PARTS", "ChunkBuilder", "StreamBatches", "as_sources", "held_out"]
