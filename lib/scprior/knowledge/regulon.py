"""TF -> target regulon: the Pathway Commons ``controls-expression-of`` table shipped in ``priori``."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pandas as pd

from scprior.errors import ScpriorInputError


def read_priori_regulon(path: str | os.PathLike) -> pd.DataFrame:
    """Read priori's ``primary_intx_regulon.pkl`` into ``tf``, ``target``, ``interaction``, ``source``.

    The file is a pickled DataFrame (``UpGene``, ``Type``, ``DownGene``) and is only ever read from
    the sha256-pinned copy in ``data/raw`` (unpickling runs code: never point this at untrusted
    files). Self-loops and duplicate edges are dropped.
    """
    path = Path(path)
    if not path.is_file():
        raise ScpriorInputError(f"{path} not found; run `python -m scprior.data.fetch` first.")
    try:
        import dill  # noqa: F401  (priori wrote the file with dill; registers its types)
    except ImportError:  # pragma: no cover - dill is pinned
        pass
    with open(path, "rb") as fh:
        raw = pickle.load(fh)  # noqa: S301 - pinned by sha256 in data.dvc
    if not isinstance(raw, pd.DataFrame) or not {"UpGene", "DownGene"} <= set(raw.columns):
        raise ScpriorInputError(f"{path} is not priori's regulon table (a DataFrame with UpGene/DownGene).")
    out = pd.DataFrame({
        "tf": raw["UpGene"].astype(str),
        "target": raw["DownGene"].astype(str),
        "interaction": raw["Type"].astype(str) if "Type" in raw else "controls-expression-of",
        "source": "Pathway Commons (priori-regulon-enrichment 1.0.8)",
    })
    out = out[out["tf"] != out["target"]].drop_duplicates(["tf", "target"])
    return out.sort_values(["tf", "target"]).reset_index(drop=True)
