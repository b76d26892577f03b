"""One protein sequence per gene: Swiss-Prot (BLAST db) joined to genes through a UniProt map;
mouse genes borrow their human one-to-one ortholog's sequence (flagged ``borrowed``)."""

from __future__ import annotations

import pandas as pd

from scprior.knowledge.blastdb import BlastProteinDb

#: the 20 standard amino acids (other letters, e.g. X, U, B, Z, are not counted by k-mer features)
AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"


def human_sequences(db: BlastProteinDb, uniprot: pd.DataFrame, *, progress: bool = False) -> pd.DataFrame:
    """Pick one Swiss-Prot sequence per gene of ``uniprot`` (``symbol``, ``uniprot`` columns).

    A gene mapped to several accessions present in ``db`` gets the longest sequence (then the
    smallest accession): the canonical-length choice, as isoforms are separate entries elsewhere.
    Returns ``symbol``, ``uniprot``, ``sequence``, ``borrowed`` (False), ``length``.
    """
    wanted = set(uniprot["uniprot"])
    accessions = db.accessions()
    hits = {acc: i for i, acc in enumerate(accessions) if acc in wanted}
    rows = []
    items = sorted(hits.items())
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(items, desc="Swiss-Prot sequences", unit="seq")
    seqs = {acc: db.sequence(i) for acc, i in items}
    pairs = uniprot[uniprot["uniprot"].isin(seqs)].drop_duplicates(["symbol", "uniprot"])
    for sym, acc in zip(pairs["symbol"], pairs["uniprot"]):
        rows.append((sym, acc, seqs[acc], False, len(seqs[acc])))
    out = pd.DataFrame(rows, columns=["symbol", "uniprot", "sequence", "borrowed", "length"])
    out = out.sort_values(["symbol", "length", "uniprot"], ascending=[True, False, True], kind="stable")
    return out.drop_duplicates("symbol", keep="first").reset_index(drop=True)


def borrow_sequences(human: pd.DataFrame, one2one: dict[str, str]) -> pd.DataFrame:
    """Mouse protein table: each mouse one-to-one ortholog gets its human gene's sequence,
    ``borrowed`` True (no mouse sequence is mapped to genes in the offline sources)."""
    out = human[human["symbol"].isin(one2one)].copy()
    out["human_symbol"] = out["symbol"]
    out["symbol"] = out["symbol"].map(one2one)
    out["borrowed"] = True
    return out.sort_values("symbol").reset_index(drop=True)
