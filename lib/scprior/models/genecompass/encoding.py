"""GeneCompass's cell encoding: counts / gene non-zero median -> log2(1+x) -> rank -> top-k.

GeneCompass (``preprocess/preprocess.py``: ``Normalized``, ``log1p(base=2)``, ``rank_value``)
divides each gene's counts by that gene's non-zero median over the pretraining corpus, takes
log2(1 + x), orders the cell's non-zero genes by that value (descending) and keeps the first
2048 token ids *and* their values. The medians belong to the model (computed on the pretraining
corpus only) and are stored with it; genes without a median use 1 (as GeneCompass does).

A cell's encoding is ``input_ids`` (top_k,) int64 padded with :data:`PAD` and ``values`` (top_k,)
float32 padded with 0; the species id (human 0, mouse 1) travels beside it. Ties are broken by
token id so the encoding is deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from scprior.errors import ScpriorInputError

PAD, MASK = 0, 1
N_SPECIAL = 2
SPECIES_IDS = {"human": 0, "mouse": 1}


@dataclass
class RankEncoding:
    """Rank-encoded cells: ``input_ids`` (n, k) int64 (PAD=0 after the last gene), ``values`` (n, k)
    float32 (log2(1 + count / median), 0 at padding), ``species`` (n,) int64 (0 human, 1 mouse)."""

    input_ids: np.ndarray
    values: np.ndarray
    species: np.ndarray

    def __post_init__(self) -> None:
        self.input_ids = np.asarray(self.input_ids, dtype=np.int64)
        self.values = np.asarray(self.values, dtype=np.float32)
        self.species = np.asarray(self.species, dtype=np.int64).reshape(-1)
        if self.input_ids.shape != self.values.shape or self.input_ids.ndim != 2:
            raise ScpriorInputError(f"input_ids {self.input_ids.shape} and values {self.values.shape} must be "
                                    "2-D arrays of the same shape (cells x top_k).")
        if len(self.species) != len(self.input_ids):
            raise ScpriorInputError(f"{len(self.species)} species ids for {len(self.input_ids)} cells.")

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> np.ndarray:
        """Genes kept per cell (n,)."""
        return (self.input_ids != PAD).sum(axis=1)

    def subset(self, idx: Sequence[int] | np.ndarray) -> RankEncoding:
        idx = np.asarray(idx)
        return RankEncoding(self.input_ids[idx], self.values[idx], self.species[idx])

    @staticmethod
    def concat(parts: Sequence[RankEncoding]) -> RankEncoding:
        width = max(p.input_ids.shape[1] for p in parts)

        def pad(a: np.ndarray) -> np.ndarray:
            return np.pad(a, ((0, 0), (0, width - a.shape[1])))

        return RankEncoding(np.concatenate([pad(p.input_ids) for p in parts]),
                            np.concatenate([pad(p.values) for p in parts]),
                            np.concatenate([p.species for p in parts]))


def _csr(counts) -> sp.csr_matrix:
    x = counts.tocsr() if sp.issparse(counts) else sp.csr_matrix(np.asarray(counts))
    x = x.astype(np.float64)
    x.eliminate_zeros()
    if x.nnz and x.data.min() < 0:
        raise ScpriorInputError("Counts must be non-negative; pass raw counts (layers['counts']), not scaled data.")
    return x


def nonzero_medians(counts) -> np.ndarray:
    """Per-gene median of the non-zero values (genes,); genes never detected get NaN.

    ``counts``: cells x genes (sparse or dense) of the *pretraining corpus only*.
    """
    x = _csr(counts).tocsc()
    out = np.full(x.shape[1], np.nan)
    for j in range(x.shape[1]):
        col = x.data[x.indptr[j]:x.indptr[j + 1]]
        if len(col):
            out[j] = float(np.median(col))
    return out


def rank_encode(counts, gene_tokens: np.ndarray, medians: np.ndarray, species: str | int, *,
                top_k: int) -> RankEncoding:
    """Encode cells x genes ``counts`` the GeneCompass way.

    ``gene_tokens`` (genes,): token id of each column (``-1``: not in the vocabulary, dropped);
    ``medians`` (genes,): the model's non-zero median per column (NaN or <= 0 -> 1).
    Returns the top ``top_k`` genes of each cell by log2(1 + count / median), descending (ties by
    token id), with those values.
    """
    x = _csr(counts)
    gene_tokens = np.asarray(gene_tokens, dtype=np.int64)
    med = np.asarray(medians, dtype=np.float64)
    if len(gene_tokens) != x.shape[1] or len(med) != x.shape[1]:
        raise ScpriorInputError(f"{x.shape[1]} genes but {len(gene_tokens)} token ids and {len(med)} medians.")
    if top_k < 1:
        raise ScpriorInputError(f"top_k must be >= 1, got {top_k}.")
    med = np.where(np.isfinite(med) & (med > 0), med, 1.0)
    sid = SPECIES_IDS[species] if isinstance(species, str) else int(species)
    ids = np.zeros((x.shape[0], top_k), dtype=np.int64)
    vals = np.zeros((x.shape[0], top_k), dtype=np.float32)
    for i in range(x.shape[0]):
        cols = x.indices[x.indptr[i]:x.indptr[i + 1]]
        v = x.data[x.indptr[i]:x.indptr[i + 1]]
        keep = gene_tokens[cols] >= 0
        cols, v = cols[keep], v[keep]
        if not len(cols):
            continue
        val = np.log2(1.0 + v / med[cols])
        tok = gene_tokens[cols]
        order = np.lexsort((tok, -val))[:top_k]
        ids[i, :len(order)] = tok[order]
        vals[i, :len(order)] = val[order]
    return RankEncoding(ids, vals, np.full(x.shape[0], sid))


def remove_tokens(encoding: RankEncoding, tokens: Sequence[int]) -> RankEncoding:
    """Delete the given token ids from every cell's encoding (in-silico deletion, as GeneCompass's
    ``perturb_delete``): later genes move up one rank, the freed slot at the end becomes PAD.
    Cells without the token are returned unchanged."""
    drop = np.isin(encoding.input_ids, np.asarray(list(tokens), dtype=np.int64)) & (encoding.input_ids != PAD)
    ids = np.zeros_like(encoding.input_ids)
    vals = np.zeros_like(encoding.values)
    for i in range(len(ids)):
        keep = ~drop[i] & (encoding.input_ids[i] != PAD)
        n = int(keep.sum())
        ids[i, :n] = encoding.input_ids[i, keep]
        vals[i, :n] = encoding.values[i, keep]
    return RankEncoding(ids, vals, encoding.species.copy())


def random_mask_np(input_ids: np.ndarray, fraction: float, *, seed: int) -> np.ndarray:
    """A fixed, seeded Bernoulli(``fraction``) mask over real tokens (n, k) bool (for validation
    cells, so their loss is comparable across epochs); every cell with a gene masks at least one."""
    rng = np.random.default_rng(seed)
    u = rng.random(input_ids.shape)
    real = input_ids != PAD
    mask = (u < fraction) & real
    empty = ~mask.any(1) & real.any(1)
    best = np.where(real, u, -1.0).argmax(1)
    mask[np.flatnonzero(empty), best[empty]] = True
    return mask
