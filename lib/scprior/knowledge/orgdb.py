"""Readers of Bioconductor's annotation SQLite files: ``org.Hs.eg.sqlite`` and ``GO.sqlite``.

Both are opened read-only (``mode=ro`` URI); tables are joined on their internal ``_id``.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from pathlib import Path

import numpy as np
import pandas as pd

from scprior.errors import ScpriorInputError

ONTOLOGIES = ("BP", "MF", "CC")


def connect(path: str | os.PathLike) -> sqlite3.Connection:
    """Open an annotation SQLite file read-only; clear error if it is missing."""
    path = Path(path)
    if not path.is_file():
        raise ScpriorInputError(f"{path} not found; run `python -m scprior.data.fetch` first.")
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def _query(path: str | os.PathLike, sql: str) -> pd.DataFrame:
    with closing(connect(path)) as con:
        return pd.read_sql_query(sql, con)


def metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ``metadata`` table (source dates and URLs) as a dict."""
    frame = _query(path, "SELECT name, value FROM metadata")
    return dict(zip(frame["name"], frame["value"]))


def human_genes(orgdb: str | os.PathLike) -> pd.DataFrame:
    """Every Entrez gene of org.Hs.eg.db with symbol, name, type, aliases and hg38 position.

    Columns: ``entrez_id`` (int), ``symbol``, ``full_name``, ``gene_type``, ``aliases``
    (``", "``-joined), ``chromosome``, ``start`` (1-based), ``end``, ``strand``. Positions come from
    ``chromosome_locations`` (UCSC, 0-based starts, negative on the minus strand); among a gene's
    rows on primary chromosomes the widest span on the first-listed chromosome is kept. Genes
    without a primary-chromosome position get chromosome ``""``, start/end -1, strand ``""``.
    """
    genes = _query(orgdb, """
        SELECT g._id, g.gene_id, i.symbol, i.gene_name, t.gene_type
        FROM genes g JOIN gene_info i ON i._id = g._id LEFT JOIN genetype t ON t._id = g._id""")
    aliases = _query(orgdb, "SELECT _id, alias_symbol FROM alias")
    aliases = aliases[aliases["alias_symbol"].notna()]
    official = genes.set_index("_id")["symbol"]
    aliases = aliases[aliases["alias_symbol"].to_numpy() != official.reindex(aliases["_id"]).to_numpy()]
    alias_map = aliases.groupby("_id")["alias_symbol"].agg(lambda s: ", ".join(sorted(set(s))))
    loc = _query(orgdb, "SELECT _id, seqname, start_location, end_location FROM chromosome_locations")
    loc = loc[~loc["seqname"].str.contains("_")]
    loc = loc.assign(strand=np.where(loc["start_location"] < 0, "-", "+"),
                     start=loc["start_location"].abs() + 1, end=loc["end_location"].abs())
    first_chrom = loc.groupby("_id")["seqname"].first()
    loc = loc[loc["seqname"].to_numpy() == first_chrom.reindex(loc["_id"]).to_numpy()]
    span = loc.groupby("_id").agg(chromosome=("seqname", "first"), start=("start", "min"),
                                  end=("end", "max"), strand=("strand", "first"))
    out = genes.set_index("_id").join(span).join(alias_map.rename("aliases"))
    out = out.rename(columns={"gene_id": "entrez_id", "gene_name": "full_name"}).reset_index(drop=True)
    out["entrez_id"] = out["entrez_id"].astype("int64")
    out["start"] = out["start"].fillna(-1).astype("int64")
    out["end"] = out["end"].fillna(-1).astype("int64")
    for col in ("chromosome", "strand", "aliases", "gene_type"):
        out[col] = out[col].fillna("").astype(str)
    return out[["entrez_id", "symbol", "full_name", "gene_type", "aliases", "chromosome", "start", "end", "strand"]]


def go_annotations(orgdb: str | os.PathLike) -> pd.DataFrame:
    """Direct (not propagated) GO annotations: ``symbol``, ``go_id``, ``ontology``, ``evidence``."""
    parts = []
    for ont in ONTOLOGIES:
        frame = _query(orgdb, f"""
            SELECT i.symbol, a.go_id, a.evidence FROM go_{ont.lower()} a
            JOIN gene_info i ON i._id = a._id""")
        frame.insert(2, "ontology", ont)
        parts.append(frame)
    out = pd.concat(parts, ignore_index=True).drop_duplicates()
    return out.sort_values(["symbol", "ontology", "go_id", "evidence"], kind="stable").reset_index(drop=True)


def uniprot_map(orgdb: str | os.PathLike) -> pd.DataFrame:
    """Gene -> UniProt accession pairs: ``symbol``, ``entrez_id``, ``uniprot``."""
    frame = _query(orgdb, """
        SELECT i.symbol, g.gene_id AS entrez_id, u.uniprot_id AS uniprot FROM uniprot u
        JOIN genes g ON g._id = u._id JOIN gene_info i ON i._id = u._id""")
    frame["entrez_id"] = frame["entrez_id"].astype("int64")
    return frame


def pfam_map(orgdb: str | os.PathLike) -> pd.DataFrame:
    """Gene -> Pfam domain pairs: ``symbol``, ``pfam_id`` (unique pairs)."""
    frame = _query(orgdb, """
        SELECT DISTINCT i.symbol, p.pfam_id FROM pfam p JOIN gene_info i ON i._id = p._id
        WHERE p.pfam_id IS NOT NULL""")
    return frame.sort_values(["symbol", "pfam_id"]).reset_index(drop=True)


def go_terms(godb: str | os.PathLike) -> pd.DataFrame:
    """GO terms of GO.db: ``go_id``, ``name``, ``definition``, ``ontology`` (BP/MF/CC only)."""
    frame = _query(godb, "SELECT go_id, term AS name, definition, ontology FROM go_term")
    frame = frame[frame["ontology"].isin(ONTOLOGIES)].copy()
    frame["definition"] = frame["definition"].fillna("")
    return frame.sort_values("go_id").reset_index(drop=True)
