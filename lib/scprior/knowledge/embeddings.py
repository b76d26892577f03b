"""One type for every gene embedding (text, protein, ESM, GenePT...): :class:`GeneEmbeddings`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from scprior.data.species import get_species
from scprior.errors import ScpriorInputError


@dataclass(frozen=True)
class MatchReport:
    """What a symbol lookup found: ``matched`` (requested symbol -> stored symbol) and ``missing``."""

    requested: int
    matched: dict[str, str]
    missing: list[str]

    @property
    def coverage(self) -> float:
        """Fraction of requested symbols that were found."""
        return len(self.matched) / self.requested if self.requested else 0.0

    def __str__(self) -> str:
        head = ", ".join(self.missing[:10]) + (" ..." if len(self.missing) > 10 else "")
        return (
            f"{len(self.matched)}/{self.requested} genes matched ({self.coverage:.1%}); "
            f"{len(self.missing)} without an embedding{': ' + head if self.missing else ''}"
        )


@dataclass(frozen=True, eq=False)
class GeneEmbeddings:
    """A gene x dimension matrix with its symbols, species, source name and provenance.

    ``symbols`` (n_genes,) are unique case-insensitively; ``matrix`` is float32 (n_genes, dim) with
    no NaN. ``source`` names the method honestly (``"text_minilm"``, ``"protein_kmer"``, ``"esm2"``).
    Lookups match symbols case-insensitively and report what they could not match.
    """

    symbols: np.ndarray
    matrix: np.ndarray
    species: str
    source: str
    provenance: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        symbols = np.asarray([str(s) for s in self.symbols], dtype=object)
        matrix = np.asarray(self.matrix, dtype=np.float32)
        if matrix.ndim != 2:
            raise ScpriorInputError(f"Embedding matrix must be 2-D (genes x dim), got shape {matrix.shape}.")
        if matrix.shape[0] != len(symbols):
            raise ScpriorInputError(
                f"{len(symbols)} symbols but {matrix.shape[0]} embedding rows; they must match one to one."
            )
        if len(symbols) == 0:
            raise ScpriorInputError(f"GeneEmbeddings {self.source!r} is empty: no genes.")
        if not np.isfinite(matrix).all():
            bad = symbols[~np.isfinite(matrix).all(axis=1)][:5].tolist()
            raise ScpriorInputError(
                f"GeneEmbeddings {self.source!r} has NaN/inf rows (e.g. {bad}); drop or recompute those genes."
            )
        upper = pd.Index([s.upper() for s in symbols])
        if upper.duplicated().any():
            dups = upper[upper.duplicated()].unique()[:5].tolist()
            raise ScpriorInputError(
                f"GeneEmbeddings {self.source!r} has symbols duplicated (case-insensitively): {dups}. "
                "Average or drop duplicates before building the embedding."
            )
        species = get_species(self.species).name
        object.__setattr__(self, "symbols", symbols)
        object.__setattr__(self, "matrix", matrix)
        object.__setattr__(self, "species", species)
        object.__setattr__(self, "provenance", dict(self.provenance))
        object.__setattr__(self, "_index", {s: i for i, s in enumerate(upper)})

    # -------------------------------------------------------------------------------- basics
    def __len__(self) -> int:
        return len(self.symbols)

    def __repr__(self) -> str:
        return f"GeneEmbeddings(source={self.source!r}, species={self.species!r}, genes={len(self)}, dim={self.dim})"

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return int(self.matrix.shape[1])

    def __contains__(self, symbol: str) -> bool:
        return str(symbol).upper() in self._index

    # ------------------------------------------------------------------------------- lookups
    def match(self, genes: Iterable[str]) -> MatchReport:
        """Match ``genes`` case-insensitively; return which matched (to which stored symbol) and which not."""
        genes = [str(g) for g in genes]
        matched, missing = {}, []
        for g in genes:
            i = self._index.get(g.upper())
            if i is None:
                missing.append(g)
            else:
                matched[g] = str(self.symbols[i])
        return MatchReport(requested=len(genes), matched=matched, missing=missing)

    def lookup(self, genes: Sequence[str], *, missing: str = "raise") -> tuple[np.ndarray, MatchReport]:
        """Rows for ``genes`` (len(genes), dim) and the :class:`MatchReport`.

        ``missing="raise"`` fails if any gene lacks an embedding; ``"zero"`` fills zeros;
        ``"drop"`` returns only the matched genes' rows, in the order of ``genes``.
        """
        report = self.match(genes)
        if missing == "raise" and report.missing:
            raise ScpriorInputError(
                f"{self.source} ({self.species}): {report}. Pass missing='drop' to keep only "
                "matched genes, or check the gene ids (symbols of the right species?)."
            )
        if missing not in {"raise", "zero", "drop"}:
            raise ValueError(f"missing must be 'raise', 'zero' or 'drop', got {missing!r}")
        if missing == "drop":
            rows = [self._index[g.upper()] for g in genes if g in report.matched]
            return self.matrix[rows], report
        out = np.zeros((len(genes), self.dim), dtype=np.float32)
        for k, g in enumerate(genes):
            i = self._index.get(str(g).upper())
            if i is not None:
                out[k] = self.matrix[i]
        return out, report

    def subset(self, genes: Sequence[str]) -> GeneEmbeddings:
        """A new GeneEmbeddings with only the matched ``genes`` (in that order, stored symbols kept)."""
        rows, report = self.lookup(genes, missing="drop")
        if not report.matched:
            raise ScpriorInputError(f"None of the {len(report.missing)} requested genes is in {self!r}.")
        symbols = [report.matched[g] for g in genes if g in report.matched]
        prov = {**self.provenance, "subset_of": len(self)}
        return GeneEmbeddings(np.asarray(symbols, dtype=object), rows, self.species, self.source, prov)

    def normalized(self) -> GeneEmbeddings:
        """Rows scaled to unit L2 norm (zero rows stay zero)."""
        norms = np.linalg.norm(self.matrix, axis=1, keepdims=True)
        mat = self.matrix / np.where(norms == 0, 1.0, norms)
        return GeneEmbeddings(self.symbols, mat, self.species, self.source, self.provenance)

    # ---------------------------------------------------------------------------- conversion
    def to_frame(self) -> pd.DataFrame:
        """DataFrame indexed by symbol, one column per dimension."""
        return pd.DataFrame(self.matrix, index=pd.Index(self.symbols, name="symbol"))

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, *, species: str, source: str, provenance: dict | None = None) -> GeneEmbeddings:
        """Build from a DataFrame indexed by symbol with numeric columns."""
        return cls(frame.index.to_numpy(dtype=object), frame.to_numpy(dtype=np.float32), species, source, provenance or {})
