"""The token vocabulary: one token per (species, gene), special tokens, gene medians, homologs.

As in GeneCompass (``human_mouse_tokens.pickle``: Ensembl id -> token, ``<pad>`` 0, ``<mask>`` 1),
human and mouse genes get their own tokens; each token also records the human symbol its priors
are looked up under (the gene itself for human, its one-to-one human ortholog for mouse, ``""``
if none: GeneCompass's ``homologous_index``) and the gene's non-zero median in the pretraining
corpus (the encoding's normaliser).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from scprior.data.species import get_species
from scprior.errors import ScpriorInputError
from scprior.models.genecompass.encoding import (
    N_SPECIAL,
    RankEncoding,
    nonzero_medians,
    rank_encode,
)

SPECIAL_TOKENS = ("<pad>", "<mask>")


@dataclass
class GeneVocab:
    """Tokens ``N_SPECIAL..``: ``species`` and ``symbols`` (tokens - 2,), ``human_symbols`` (prior
    lookup key, ``""`` if none), ``medians`` (non-zero median of the gene's counts in the corpus)."""

    species: list[str]
    symbols: list[str]
    human_symbols: list[str]
    medians: np.ndarray

    def __post_init__(self) -> None:
        self.species = [get_species(s).name for s in self.species]
        self.symbols = [str(s) for s in self.symbols]
        self.human_symbols = [str(s) for s in self.human_symbols]
        self.medians = np.asarray(self.medians, dtype=np.float64)
        n = len(self.symbols)
        if not (len(self.species) == len(self.human_symbols) == len(self.medians) == n):
            raise ScpriorInputError("GeneVocab: species, symbols, human_symbols and medians must have equal lengths.")
        self._index = {(sp_, s.upper()): i + N_SPECIAL for i, (sp_, s) in enumerate(zip(self.species, self.symbols))}
        if len(self._index) != n:
            raise ScpriorInputError("GeneVocab: a (species, symbol) pair occurs twice.")

    def __len__(self) -> int:
        """Number of tokens including the special ones."""
        return len(self.symbols) + N_SPECIAL

    def token(self, species: str, symbol: str) -> int:
        """Token id of a gene, or -1 if it is not in the vocabulary."""
        return self._index.get((get_species(species).name, str(symbol).upper()), -1)

    def column_tokens(self, genes: Sequence[str], species: str) -> np.ndarray:
        """Token id per gene (``-1``: not in the vocabulary)."""
        sp_ = get_species(species).name
        return np.asarray([self._index.get((sp_, str(g).upper()), -1) for g in genes], dtype=np.int64)

    def token_medians(self) -> np.ndarray:
        """Median per token (tokens,); 1 for the special tokens."""
        return np.concatenate([np.ones(N_SPECIAL), self.medians])

    def prior_keys(self) -> list[str]:
        """Human symbol used for the prior lookup of every token (``""`` for specials/unmapped)."""
        return [""] * N_SPECIAL + self.human_symbols

    def encode(self, counts, genes: Sequence[str], species: str, *, top_k: int) -> RankEncoding:
        """Rank-encode cells x genes ``counts`` (columns named ``genes``) with this vocabulary's medians."""
        tokens = self.column_tokens(genes, species)
        med = np.where(tokens >= 0, self.token_medians()[np.maximum(tokens, 0)], 1.0)
        return rank_encode(counts, tokens, med, species, top_k=top_k)

    def to_dict(self) -> dict:
        """Plain data (lists of str/float) for a weights_only checkpoint."""
        return {"species": list(self.species), "symbols": list(self.symbols),
                "human_symbols": list(self.human_symbols), "medians": [float(m) for m in self.medians]}

    @classmethod
    def from_dict(cls, d: Mapping) -> GeneVocab:
        try:
            return cls(list(d["species"]), list(d["symbols"]), list(d["human_symbols"]), np.asarray(d["medians"]))
        except KeyError as exc:
            raise ScpriorInputError(f"The checkpoint's vocabulary lacks {exc}; was it written by scprior?") from None


def selected_genes(detected: np.ndarray, *, min_cells: int, max_genes: int | None) -> np.ndarray:
    """Columns kept in a species' vocabulary: detected in >= ``min_cells`` cells, the ``max_genes``
    most detected (ties in column order), returned in column order. ``detected``: (n_genes,) counts."""
    order = np.lexsort((np.arange(len(detected)), -detected))
    order = order[detected[order] >= min_cells]
    if max_genes is not None:
        order = order[:max_genes]
    return np.sort(order)


def build_vocab(corpus: Sequence[tuple[str, object]], *, orthologs: Mapping[str, str] | None = None,
                max_genes_per_species: int | None = None, min_cells: int = 3, layer: str = "counts") -> GeneVocab:
    """Vocabulary and medians from the pretraining ``corpus`` [(species, AnnData of counts), ...].

    Per species, genes detected in at least ``min_cells`` corpus cells, the most frequently
    detected ``max_genes_per_species`` of them (None: all). ``orthologs``: mouse symbol -> human
    symbol (one-to-one) for the prior lookup. Medians: non-zero median of the gene's counts over
    all corpus cells of that species (GeneCompass's gene median dictionary).
    """
    orthologs = {str(k).upper(): str(v) for k, v in (orthologs or {}).items()}
    per: dict[str, list[tuple[object, list[str]]]] = {}
    for species, adata in corpus:
        name = get_species(species).name
        if layer not in adata.layers:
            raise ScpriorInputError(f"A {name} corpus AnnData lacks layers[{layer!r}] (counts).")
        per.setdefault(name, []).append((adata.layers[layer], list(adata.var_names.astype(str))))
    species_l, symbols, human, medians = [], [], [], []
    for name in sorted(per):
        genes = sorted({g for _, gs in per[name] for g in gs}, key=str.upper)
        col = {g.upper(): j for j, g in enumerate(genes)}
        blocks = []
        for x, gs in per[name]:
            x = sp.csr_matrix(x)
            m = sp.csr_matrix((np.ones(len(gs)), ([j for j in range(len(gs))], [col[g.upper()] for g in gs])),
                              shape=(len(gs), len(genes)))
            blocks.append(x @ m)
        x = sp.vstack(blocks).tocsr()
        detected = np.asarray((x > 0).sum(axis=0)).ravel()
        order = selected_genes(detected, min_cells=min_cells, max_genes=max_genes_per_species)
        med = nonzero_medians(x[:, order])
        for j, m in zip(order, med):
            g = genes[j]
            species_l.append(name)
            symbols.append(g)
            human.append(g.upper() if name == "human" else orthologs.get(g.upper(), ""))
            medians.append(m)
    if not symbols:
        raise ScpriorInputError("The pretraining corpus has no gene detected in enough cells; check the counts.")
    return GeneVocab(species_l, symbols, human, np.asarray(medians))


def frame(vocab: GeneVocab) -> pd.DataFrame:
    """The vocabulary as a table (token, species, symbol, human_symbol, median)."""
    return pd.DataFrame({"token": np.arange(N_SPECIAL, len(vocab)), "species": vocab.species,
                         "symbol": vocab.symbols, "human_symbol": vocab.human_symbols, "median": vocab.medians})
