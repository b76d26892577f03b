"""Reader for BEELINE's input layout (Pratapa et al. 2020, ``inputs/<group>/<dataset>/``).

A BEELINE dataset folder holds

- ``ExpressionData.csv``: genes x cells; first column the gene names, header the cell ids;
  values as BEELINE ships them (log-transformed for the real sets, BoolODE output for synthetic ones);
- ``refNetwork.csv``: the reference network, header ``Gene1,Gene2`` and optionally ``Type``
  (``+`` / ``-``), one regulator -> target edge per row;
- ``PseudoTime.csv`` (optional): cells x ``PseudoTime`` (or ``PseudoTime1``, ``PseudoTime2``...), NaN
  where a cell is not on that lineage.

:func:`read_beeline` returns the cells as AnnData (``X`` = the given values, ``obs`` pseudotime
columns, ``uns['scprior']`` provenance) and the reference network as a tidy edge table
(:func:`scprior.data.grn_truth.tidy_edges`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from scprior.data.grn_truth import tidy_edges
from scprior.errors import ScpriorInputError

EXPRESSION, NETWORK, PSEUDOTIME = "ExpressionData.csv", "refNetwork.csv", "PseudoTime.csv"


@dataclass
class BeelineDataset:
    """One BEELINE dataset: ``adata`` (cells x genes) and ``truth`` (``tf``, ``target``, ``source``)."""

    name: str
    adata: ad.AnnData
    truth: pd.DataFrame
    simulated: bool


def read_beeline(folder: str | os.PathLike, *, simulated: bool = False, name: str | None = None) -> BeelineDataset:
    """Read a BEELINE dataset folder; ``simulated``: True for BEELINE's synthetic/curated BoolODE sets."""
    folder = Path(folder)
    if not (folder / EXPRESSION).is_file() or not (folder / NETWORK).is_file():
        raise ScpriorInputError(f"{folder} is not a BEELINE dataset folder: it needs {EXPRESSION} (genes x cells) "
                                f"and {NETWORK} (Gene1,Gene2[,Type]); found {sorted(p.name for p in folder.glob('*'))}.")
    expr = pd.read_csv(folder / EXPRESSION, index_col=0)
    if expr.empty:
        raise ScpriorInputError(f"{folder / EXPRESSION} has no genes or no cells.")
    expr.index = expr.index.astype(str).str.strip().str.upper()
    if expr.index.duplicated().any():
        dup = expr.index[expr.index.duplicated()][:5].tolist()
        raise ScpriorInputError(f"{folder / EXPRESSION} repeats gene names (e.g. {dup}); make them unique.")
    values = expr.to_numpy(dtype=np.float32)
    if not np.isfinite(values).all():
        raise ScpriorInputError(f"{folder / EXPRESSION} holds NaN or infinite values.")
    obs = pd.DataFrame(index=expr.columns.astype(str))
    if (folder / PSEUDOTIME).is_file():
        pt = pd.read_csv(folder / PSEUDOTIME, index_col=0)
        pt.index = pt.index.astype(str)
        unknown = set(pt.index) - set(obs.index)
        if unknown:
            raise ScpriorInputError(f"{folder / PSEUDOTIME} names {len(unknown)} cells absent from {EXPRESSION} "
                                    f"(e.g. {sorted(unknown)[:3]}).")
        obs = obs.join(pt.astype(float))
    net = pd.read_csv(folder / NETWORK)
    if not {"Gene1", "Gene2"} <= set(net.columns):
        raise ScpriorInputError(f"{folder / NETWORK} needs the header Gene1,Gene2[,Type]; has {list(net.columns)}.")
    truth = tidy_edges(net, "beeline", tf_col="Gene1", target_col="Gene2")
    name = name or folder.name
    adata = ad.AnnData(X=values.T.copy(), obs=obs, var=pd.DataFrame(index=expr.index))
    adata.uns["scprior"] = {"dataset_id": f"beeline_{name}", "real": not simulated,
                            "source": {"file": str(folder), "layout": "BEELINE"}}
    return BeelineDataset(name=name, adata=adata, truth=truth, simulated=simulated)


def write_beeline(folder: str | os.PathLike, expression: pd.DataFrame, network: pd.DataFrame,
                  pseudotime: pd.DataFrame | None = None) -> Path:
    """Write a dataset in BEELINE's layout (``expression`` genes x cells; ``network`` Gene1,Gene2[,Type])."""
    from scprior.safe_io import atomic_path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for fname, frame, index in ((EXPRESSION, expression, True), (NETWORK, network, False),
                                (PSEUDOTIME, pseudotime, True)):
        if frame is not None:
            with atomic_path(folder / fname) as tmp:
                frame.to_csv(tmp, index=index)
    return folder
