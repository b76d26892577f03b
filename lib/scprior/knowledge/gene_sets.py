"""Gene sets in GMT format (MSigDB hallmark as shipped in ``pegasuspy``): read, write, map to mouse."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from scprior.errors import ScpriorInputError
from scprior.safe_io import write_text_atomic


def read_gmt(path: str | os.PathLike) -> dict[str, list[str]]:
    """``{set_name: [genes]}`` from a GMT file (name, description, genes..., tab-separated)."""
    path = Path(path)
    if not path.is_file():
        raise ScpriorInputError(f"{path} not found; run `python -m scprior.data.fetch` first.")
    sets: dict[str, list[str]] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.rstrip("\n").split("\t")
        if len(fields) < 3:
            raise ScpriorInputError(f"{path}:{n} is not a GMT line (name, description, genes...).")
        sets[fields[0]] = list(dict.fromkeys(g for g in fields[2:] if g))
    return sets


def write_gmt(sets: dict[str, list[str]], path: str | os.PathLike, *, description: str = "") -> Path:
    """Write ``{set_name: [genes]}`` as GMT."""
    return write_text_atomic(path, "".join(f"{k}\t{description}\t" + "\t".join(v) + "\n" for k, v in sets.items()))


def gene_set_table(human_sets: dict[str, list[str]], one2one: dict[str, str], *,
                   collection: str) -> pd.DataFrame:
    """Long table ``species``, ``collection``, ``set_name``, ``symbol``, ``borrowed`` for human and
    mouse; mouse members are the one-to-one orthologs of the human members (``borrowed`` True)."""
    rows = []
    for name, genes in human_sets.items():
        rows += [("human", collection, name, g, False) for g in genes]
        rows += [("mouse", collection, name, one2one[g], True) for g in genes if g in one2one]
    return pd.DataFrame(rows, columns=["species", "collection", "set_name", "symbol", "borrowed"])
