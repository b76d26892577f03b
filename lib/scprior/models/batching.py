"""Mini-batches over cell x gene matrices that may be sparse (densified one batch at a time),
with aligned per-cell arrays, a held-out validation split, and batched inference."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch


class RowsDataset(torch.utils.data.Dataset):
    """Cells of a (sparse or dense) matrix plus aligned arrays; yields indices, collated in batches."""

    def __init__(self, matrix: Any, *arrays: Any) -> None:
        self.matrix = matrix.tocsr() if sp.issparse(matrix) else np.asarray(matrix, dtype=np.float32)
        self.arrays = [a if isinstance(a, torch.Tensor) else torch.as_tensor(np.asarray(a)) for a in arrays]
        n = self.matrix.shape[0]
        bad = [len(a) for a in self.arrays if len(a) != n]
        if bad:
            raise ValueError(f"Arrays must have one row per cell ({n}), got lengths {bad}")

    def __len__(self) -> int:
        return self.matrix.shape[0]

    def __getitem__(self, i: int) -> int:
        return i

    def collate(self, idx: Sequence[int]) -> tuple[torch.Tensor, ...]:
        idx = np.asarray(idx, dtype=np.int64)
        rows = self.matrix[idx]
        dense = rows.toarray() if sp.issparse(rows) else rows
        x = torch.as_tensor(np.asarray(dense, dtype=np.float32))
        return (x, *[a[torch.as_tensor(idx)] for a in self.arrays])


def rows_loader(matrix: Any, *arrays: Any, batch_size: int = 256, shuffle: bool = False, seed: int = 0,
                drop_last: bool = False) -> torch.utils.data.DataLoader:
    """A DataLoader over cells of ``matrix`` (cells x genes) and aligned ``arrays``.

    Batches are ``(x, *arrays)`` with ``x`` a dense float32 tensor; shuffling has its own seed.
    """
    ds = RowsDataset(matrix, *arrays)
    gen = torch.Generator().manual_seed(int(seed))
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=shuffle,
                                       generator=gen if shuffle else None, drop_last=drop_last,
                                       collate_fn=ds.collate)


def validation_split(n: int, *, fraction: float = 0.1, seed: int = 0, strata: Sequence[Any] | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Random (train, val) cell indices; with ``strata`` (e.g. species) each stratum is split alike.

    Every stratum keeps at least one training cell; ``fraction=0`` gives an empty validation set.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    groups = np.zeros(n, dtype=int) if strata is None else np.unique(np.asarray(strata), return_inverse=True)[1]
    train, val = [], []
    for g in np.unique(groups):
        idx = rng.permutation(np.flatnonzero(groups == g))
        k = min(int(round(fraction * len(idx))), len(idx) - 1)
        val.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


@torch.no_grad()
def predict_batches(fn: Callable[..., torch.Tensor], matrix: Any, *arrays: Any, batch_size: int = 1024,
                    device: str | torch.device = "cpu", progress: bool = False, desc: str = "embed") -> np.ndarray:
    """Apply ``fn(x, *arrays)`` to batches of cells (in order) and stack the outputs as NumPy."""
    loader = rows_loader(matrix, *arrays, batch_size=batch_size)
    it = loader
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(loader, desc=desc, leave=False)
    outs = []
    for batch in it:
        batch = [b.to(device) for b in batch]
        outs.append(fn(*batch).detach().cpu().numpy())
    return np.concatenate(outs, axis=0)


class ChunkBatches:
    """Mini-batches streamed from a :class:`scprior.data.stream.CellSource`, for :func:`~scprior.models.training.fit`.

    ``transform(chunk) -> (counts CSR aligned to the model's genes, *per-cell arrays)`` (gene
    alignment per chunk, e.g. with :class:`~scprior.data.stream.GeneAligner`). Each iteration
    (epoch) visits the chunks in a fresh seeded order (``shuffle``) and the cells of a chunk in a
    seeded random order; batches never span chunks. Only one chunk is in memory at a time.
    Under ``torch.distributed`` every rank walks the same order and keeps its contiguous part of
    each global batch (a :class:`~scprior.models.training.ShardedBatch`), as ``fit`` expects.
    """

    def __init__(self, source, transform: Callable, *, batch_size: int = 256, chunk_size: int = 20_000,
                 shuffle: bool = True, seed: int = 0) -> None:
        self.source, self.transform = source, transform
        self.batch_size, self.chunk_size, self.shuffle, self.seed = int(batch_size), int(chunk_size), shuffle, int(seed)
        self.epoch = 0

    def __len__(self) -> int:
        return sum(-(-(hi - lo) // self.batch_size) for _, lo, hi in self.source.boundaries(self.chunk_size))

    def __iter__(self):
        from scprior.models.training import ShardedBatch, shard_slice
        from scprior.runtime import dist_info

        rank, world = dist_info()
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        n_chunks = self.source.n_chunks(self.chunk_size)
        order = rng.permutation(n_chunks) if self.shuffle else np.arange(n_chunks)
        for chunk in self.source.chunks(self.chunk_size, order=order):
            matrix, *arrays = self.transform(chunk)
            matrix = matrix.tocsr()
            arrays = [a if isinstance(a, torch.Tensor) else torch.as_tensor(np.asarray(a)) for a in arrays]
            cells = rng.permutation(matrix.shape[0]) if self.shuffle else np.arange(matrix.shape[0])
            for lo in range(0, len(cells), self.batch_size):
                idx = cells[lo:lo + self.batch_size]
                weight = 1.0
                if world > 1:
                    mine, weight = shard_slice(len(idx), rank, world)
                    idx = idx[mine]
                x = torch.as_tensor(matrix[idx].toarray().astype(np.float32, copy=False))
                batch = (x, *[a[torch.as_tensor(idx)] for a in arrays])
                yield ShardedBatch(batch, weight) if world > 1 else batch
