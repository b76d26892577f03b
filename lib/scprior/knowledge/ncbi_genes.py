"""NCBI gene info as shipped in goatools' ``test_data/genes_NCBI_<taxid>_*.py`` modules.

Those files are Python source holding one ``NtData(...)`` record per gene (NCBI Gene, 2016:
symbol, aliases, description, other designations, chromosome, start/end, orientation). They are
read here as data, never imported or executed: each record line is parsed with :mod:`ast` and only
literal values are accepted.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pandas as pd

from scprior.errors import ScpriorInputError

#: the NtData fields kept, renamed to scprior's gene-table names
FIELDS = {
    "GeneID": "entrez_id",
    "Symbol": "symbol",
    "Aliases": "aliases",
    "description": "full_name",
    "other_designations": "other_designations",
    "chromosome": "chromosome",
    "start_position_on_the_genomic_accession": "start",
    "end_position_on_the_genomic_accession": "end",
    "orientation": "orientation",
    "genomic_nucleotide_accession_version": "accession",
    "tax_id": "tax_id",
}


def _record(line: str) -> dict | None:
    """The literal keyword arguments of one ``  ID : NtData(k=v, ...),`` line, or None."""
    text = line.strip().rstrip(",")
    if "NtData(" not in text:
        return None
    call_text = text[text.index("NtData("):]
    try:
        call = ast.parse(call_text, mode="eval").body
    except SyntaxError as exc:
        raise ScpriorInputError(f"Unreadable NCBI gene record: {line[:120]!r}") from exc
    if not isinstance(call, ast.Call):
        return None
    return {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords if kw.arg in FIELDS}


def read_ncbi_gene_module(path: str | os.PathLike) -> pd.DataFrame:
    """Parse a goatools ``genes_NCBI_*.py`` file into a DataFrame (one row per NCBI gene).

    Columns: ``entrez_id`` (int), ``symbol``, ``aliases``, ``full_name``, ``other_designations``,
    ``chromosome`` (str), ``start``/``end`` (int, -1 if unknown), ``strand`` (``'+'``/``'-'``/``''``),
    ``accession``, ``tax_id``. Coordinates are NCBI's (1-based) on the genomic accession.
    """
    path = Path(path)
    if not path.is_file():
        raise ScpriorInputError(f"{path} not found; run `python -m scprior.data.fetch` first.")
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            rec = _record(line)
            if rec:
                rows.append(rec)
    if not rows:
        raise ScpriorInputError(f"{path} holds no NtData gene records: not a goatools genes_NCBI module.")
    frame = pd.DataFrame(rows).rename(columns=FIELDS)
    for col in ("start", "end"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").fillna(-1).astype("int64")
    frame["entrez_id"] = frame["entrez_id"].astype("int64")
    frame["strand"] = frame.pop("orientation").map({"plus": "+", "minus": "-"}).fillna("")
    for col in ("symbol", "aliases", "full_name", "other_designations", "chromosome", "accession"):
        frame[col] = frame[col].fillna("").astype(str)
    return frame
