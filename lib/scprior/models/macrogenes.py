"""Macrogenes (SATURN): k-means over the pooled gene embeddings of every species, rank-based
gene-to-macrogene weights, and the torch layer that turns expression into macrogene activity.

The initial weight of gene ``g`` for macrogene ``m`` is ``W[g, m] = 2 * ln(1 + 1/r[g, m])**2``,
with ``r[g, m]`` the rank (1 = nearest) of centroid ``m`` by distance to gene ``g``. The layer
stores ``log W`` (learnable or fixed); genes are laid out on one axis over all species.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from scipy.stats import rankdata
from torch import nn

from scprior.data.species import get_species
from scprior.errors import ScpriorInputError
from scprior.knowledge.embeddings import GeneEmbeddings, MatchReport


def rank_weights(distances: np.ndarray) -> np.ndarray:
    """SATURN's initial weights from gene-to-centroid ``distances`` (genes x macrogenes).

    ``W[g, m] = 2 * ln(1 + 1 / r[g, m])**2`` with ``r`` the rank of centroid ``m`` among gene
    ``g``'s distances (1 = nearest; ties share their average rank). Returns float32, same shape.
    """
    d = np.asarray(distances, dtype=np.float64)
    if d.ndim != 2 or d.shape[1] == 0:
        raise ValueError(f"distances must be 2-D (genes x macrogenes), got shape {d.shape}")
    ranks = rankdata(d, axis=1, method="average")
    return (2.0 * np.log1p(1.0 / ranks) ** 2).astype(np.float32)


@dataclass(frozen=True, eq=False)
class Macrogenes:
    """Gene-to-macrogene weights built from one embedding source.

    ``genes``: DataFrame with ``species`` and ``gene`` (the dataset's symbol) per row, in the row
    order of ``weights`` (n_genes x n_macrogenes, float32, >= 0). ``centroids``: k-means centres
    (n_macrogenes x dim) in the (normalised) embedding space; ``embeddings``: the pooled rows used
    (n_genes x dim), kept for the embedding-similarity regulariser. ``reports``: per species, which
    requested genes had an embedding.
    """

    source: str
    genes: pd.DataFrame
    weights: np.ndarray
    centroids: np.ndarray
    embeddings: np.ndarray
    reports: dict[str, MatchReport] = field(default_factory=dict)

    @property
    def n_macrogenes(self) -> int:
        return int(self.weights.shape[1])

    def to_frame(self) -> pd.DataFrame:
        """Weights as a DataFrame indexed by (species, gene), one column per macrogene."""
        index = pd.MultiIndex.from_frame(self.genes[["species", "gene"]])
        cols = [f"{self.source}_mg{i}" for i in range(self.n_macrogenes)]
        return pd.DataFrame(self.weights, index=index, columns=cols)


def build_macrogenes(
    embeddings: Mapping[str, GeneEmbeddings],
    genes: Mapping[str, Sequence[str]],
    *,
    n_macrogenes: int = 2000,
    seed: int = 0,
    normalize: bool = True,
    n_init: int = 1,
    min_genes: int = 1,
) -> Macrogenes:
    """k-means over the pooled embeddings of each species' ``genes``; SATURN rank weights.

    ``embeddings``: species -> :class:`GeneEmbeddings` of one source (same dimension for all).
    ``genes``: species -> the dataset's gene symbols (genes without an embedding are dropped and
    reported; a species left with fewer than ``min_genes`` raises a clear error). ``normalize``
    scales embedding rows to unit length first (k-means then clusters by cosine similarity).
    ``n_macrogenes`` is capped at the number of pooled genes.
    """
    from sklearn.cluster import KMeans

    if len(genes) < 1:
        raise ScpriorInputError("build_macrogenes needs the genes of at least one species.")
    sources = {e.source for e in embeddings.values()}
    if len(sources) > 1:
        raise ScpriorInputError(f"Macrogenes are built from one embedding source at a time, got {sorted(sources)}.")
    dims = {e.dim for e in embeddings.values()}
    if len(dims) > 1:
        raise ScpriorInputError(f"Embeddings of the species have different dimensions {sorted(dims)}; use one model.")
    rows, frames, reports = [], [], {}
    for species, symbols in genes.items():
        name = get_species(species).name
        if species not in embeddings:
            raise ScpriorInputError(
                f"No {next(iter(sources), '?')} gene embeddings given for species {name!r}; "
                "pass one GeneEmbeddings per species."
            )
        mat, report = embeddings[species].lookup(list(symbols), missing="drop")
        if len(report.matched) < min_genes:
            raise ScpriorInputError(
                f"{embeddings[species].source} ({name}): {report}. Only {len(report.matched)} of the "
                f"dataset's genes have an embedding (need >= {min_genes}); check that the gene symbols "
                "belong to this species and that the embeddings cover them."
            )
        reports[name] = report
        kept = [g for g in symbols if g in report.matched]
        rows.append(mat)
        frames.append(pd.DataFrame({"species": name, "gene": kept}))
    pooled = np.vstack(rows).astype(np.float32)
    if normalize:
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        pooled = pooled / np.where(norms == 0, 1.0, norms)
    k = int(min(n_macrogenes, len(pooled)))
    km = KMeans(n_clusters=k, random_state=int(seed), n_init=n_init).fit(pooled.astype(np.float64))
    distances = km.transform(pooled.astype(np.float64))
    return Macrogenes(
        source=next(iter(sources)),
        genes=pd.concat(frames, ignore_index=True),
        weights=rank_weights(distances),
        centroids=km.cluster_centers_.astype(np.float32),
        embeddings=pooled,
        reports=reports,
    )


class MacrogeneLayer(nn.Module):
    """``x (cells x genes) -> x @ W`` (cells x macrogenes) with ``W = exp(log_w) * mask``.

    Lives on a global gene axis (all species' genes side by side); axis genes the set does not
    cover have mask 0. ``learnable=False`` keeps ``log_w`` fixed (a buffer). Build it with
    :meth:`from_macrogenes`; the bare constructor makes an empty layer of the right shape (for
    loading a checkpoint).
    """

    def __init__(self, n_genes: int, n_macrogenes: int, embedding_dim: int, *, learnable: bool = True,
                 source: str = "") -> None:
        super().__init__()
        log_w = torch.zeros(n_genes, n_macrogenes)
        if learnable:
            self.log_w = nn.Parameter(log_w)
        else:
            self.register_buffer("log_w", log_w)
        self.register_buffer("mask", torch.zeros(n_genes, 1))
        self.register_buffer("gene_embeddings", torch.zeros(n_genes, embedding_dim))
        self.source = source

    @classmethod
    def from_macrogenes(cls, macrogenes: Macrogenes, rows: np.ndarray, n_genes: int, *,
                        learnable: bool = True) -> MacrogeneLayer:
        """Place ``macrogenes`` (row ``i`` -> axis position ``rows[i]``) on an axis of ``n_genes``."""
        rows_t = torch.as_tensor(np.asarray(rows, dtype=np.int64))
        if len(rows_t) != len(macrogenes.genes):
            raise ValueError("rows must give one axis position per macrogene gene")
        layer = cls(n_genes, macrogenes.n_macrogenes, macrogenes.embeddings.shape[1],
                    learnable=learnable, source=macrogenes.source)
        with torch.no_grad():
            layer.log_w[rows_t] = torch.log(torch.as_tensor(macrogenes.weights).clamp_min(1e-12))
            layer.mask[rows_t] = 1.0
            layer.gene_embeddings[rows_t] = nn.functional.normalize(torch.as_tensor(macrogenes.embeddings), dim=1)
        return layer

    @property
    def n_macrogenes(self) -> int:
        return int(self.log_w.shape[1])

    def weights(self) -> torch.Tensor:
        """Effective weights W (genes x macrogenes), zero for genes this set does not cover."""
        return torch.exp(self.log_w) * self.mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weights()

    def l1(self) -> torch.Tensor:
        """Sum of |W| (W >= 0, so the plain sum)."""
        return self.weights().sum()

    def similarity_penalty(self, n_pairs: int | None = None) -> torch.Tensor:
        """Sum over random gene pairs of (cos(W_g, W_g') - cos(e_g, e_g'))**2 (SATURN's regulariser).

        Every covered gene (or ``n_pairs`` random ones) gets one random partner; torch's RNG.
        """
        cov = torch.nonzero(self.mask.flatten()).flatten()
        if len(cov) < 2:
            return self.log_w.sum() * 0.0
        if n_pairs is not None and n_pairs < len(cov):
            a = cov[torch.randint(len(cov), (int(n_pairs),), device=cov.device)]
        else:
            a = cov
        b = cov[torch.randint(len(cov), (len(a),), device=cov.device)]
        w = self.weights()
        cos_w = nn.functional.cosine_similarity(w[a], w[b], dim=1)
        cos_e = (self.gene_embeddings[a] * self.gene_embeddings[b]).sum(1)
        return (cos_w - cos_e).pow(2).sum()
