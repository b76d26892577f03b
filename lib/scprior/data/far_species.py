"""The far-species pair: fly gut (Fly Cell Atlas) and mouse stomach + intestine (Mouse Cell Atlas),
their gene -> GO biological-process tables, and HCOP orthologs through human (babelgene).

All read from the pinned ``.rda`` files (``data/raw/far_species/``, see ``data.dvc``) with PyPI
``rdata``: a Seurat object is an S4 object ``rdata`` cannot convert, so :func:`read_seurat` walks
the parsed tree (slots ``assays`` -> ``RNA`` -> ``counts``/``data``, ``meta.data``); the tables are
plain data frames (``rdata.read_rda``). Nothing in the files is executed.

The fly file stores only the log-normalised matrix (``log1p(count / total * 1e4)``); per cell,
``expm1(x)`` is proportional to the counts, and its smallest non-zero value is one count, so
:func:`recover_counts` divides by it and checks that the result is integral.

``python -m scprior.data.far_species`` writes ``data/processed/far_species/`` (stage
``prepare_far_species``): ``fly_gut.h5ad``, ``mouse_gut.h5ad`` (processed layout: ``layers['counts']``,
log-normalised ``X``, ``obs['cell_type']``, ``obs['batch']``, ``obs['species']``), ``go_bp_fly.parquet``,
``go_bp_mouse.parquet`` and ``hcop_orthologs.parquet``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scprior.data.drug_rda import _deref, _require_rdata, read_single_object, slots, strings, vector
from scprior.errors import ScpriorInputError

RAW = Path("data/raw/far_species")
OUT = Path("data/processed/far_species")
FILES = {"fly": "dme_subset.rda", "mouse": "mmu_subset.rda"}
GO_FILES = {"fly": "dme_tbl.rda", "mouse": "mmu_tbl.rda"}
HCOP_FILE = "babelgene_sysdata.rda"
TAXA = {"fly": 7227, "mouse": 10090}
DATASETS = {"fly": "fly_gut", "mouse": "mouse_gut"}


# ------------------------------------------------------------------------------ Seurat objects
def _dense(obj: Any) -> tuple[np.ndarray, list[str], list[str]]:
    """A dense R matrix (REAL/INT with ``dim``, ``dimnames``) -> (array rows x cols, rows, cols)."""
    obj = _deref(obj)
    s = slots(obj)
    if "dim" not in s:
        raise ScpriorInputError("Expected a dense R matrix (with a dim attribute) in the Seurat object.")
    n_rows, n_cols = (int(v) for v in vector(s["dim"]))
    mat = np.asarray(obj.value, dtype=np.float64).reshape((n_cols, n_rows)).T  # R is column-major
    rows: list[str] = []
    cols: list[str] = []
    if "dimnames" in s:
        dn = _deref(s["dimnames"]).value
        rows = strings(dn[0]) if _deref(dn[0]).info.type.name == "STR" else []
        cols = strings(dn[1]) if _deref(dn[1]).info.type.name == "STR" else []
    return mat, rows, cols


def _matrix(obj: Any) -> tuple[sp.csr_matrix, list[str], list[str]]:
    """A dense matrix or a dgCMatrix -> (CSR genes x cells, genes, cells)."""
    from scprior.data.drug_rda import dgcmatrix

    s = slots(obj)
    if {"i", "p", "x"} <= set(s):
        mat, rows, cols = dgcmatrix(obj)
        return sp.csr_matrix(mat), rows, cols
    mat, rows, cols = _dense(obj)
    return sp.csr_matrix(mat), rows, cols


def _data_frame(obj: Any) -> pd.DataFrame:
    """An R data.frame (factors -> strings) as pandas; row names kept when stored as strings."""
    obj = _deref(obj)
    s = slots(obj)
    names = strings(s["names"])
    cols = {}
    for name, col in zip(names, obj.value):
        c = _deref(col)
        cs = slots(c) if c.attributes is not None else {}
        values = vector(c)
        if "levels" in cs:  # a factor: 1-based codes into levels, NA = INT_MIN
            levels = np.asarray(strings(cs["levels"]), dtype=object)
            codes = np.asarray(values, dtype=np.int64)
            values = np.where(codes > 0, levels[np.clip(codes - 1, 0, len(levels) - 1)], "")
        cols[name] = values
    frame = pd.DataFrame(cols)
    rn = _deref(s.get("row.names"))
    if rn is not None and rn.info.type.name == "STR":
        frame.index = strings(rn)
    return frame


def read_seurat(path: str | os.PathLike) -> dict[str, Any]:
    """A Seurat object in an ``.rda`` file: ``{"counts", "data"}`` (CSR cells x genes or None),
    ``genes``, ``cells`` and ``obs`` (``meta.data``). The file is only read."""
    path = Path(path)
    obj, cls = read_single_object(path, expected="Seurat object",
                                  fetch_hint="python -m scprior.data.fetch --only far_species")
    if cls != "Seurat" or "assays" not in obj or "meta.data" not in obj:
        raise ScpriorInputError(f"{path} holds an R object of class {cls!r}, not a Seurat object.")
    assays = _deref(obj["assays"])
    names = strings(slots(assays)["names"])
    if "RNA" not in names:
        raise ScpriorInputError(f"{path}: the Seurat object has assays {names}, not 'RNA'.")
    rna = slots(_deref(assays.value[names.index("RNA")]))
    out: dict[str, Any] = {"counts": None, "data": None, "genes": [], "cells": []}
    for key in ("counts", "data"):
        if key in rna and slots(rna[key]):
            mat, genes, cells = _matrix(rna[key])
            if mat.shape[0] and mat.nnz:
                out[key] = sp.csr_matrix(mat.T)
                out["genes"], out["cells"] = genes, cells
    if out["counts"] is None and out["data"] is None:
        raise ScpriorInputError(f"{path}: the Seurat RNA assay holds neither counts nor data.")
    obs = _data_frame(obj["meta.data"])
    if out["cells"] and len(obs) == len(out["cells"]):
        obs.index = pd.Index(out["cells"], dtype=str)
    out["obs"] = obs
    return out


# --------------------------------------------------------------------------- counts recovery
def recover_counts(lognorm: sp.spmatrix | np.ndarray, *, tol: float = 1e-3) -> sp.csr_matrix:
    """Integer counts from a log-normalised matrix (cells x genes) ``log1p(count / total * s)``.

    Per cell, ``expm1(x)`` is ``count * s / total``; its smallest non-zero value is one count (a
    cell of ~1,000 genes always has genes seen once), so dividing by it gives the counts. Raises
    unless every value lands within ``tol`` of an integer (the matrix was normalised otherwise).
    Returns CSR float32 cells x genes.
    """
    x = sp.csr_matrix(lognorm, dtype=np.float64)
    if x.nnz and (x.data < 0).any():
        raise ScpriorInputError("The log-normalised matrix has negative values; counts cannot be recovered.")
    out = x.copy()
    out.data = np.expm1(out.data)
    for i in range(out.shape[0]):
        lo, hi = out.indptr[i], out.indptr[i + 1]
        row = out.data[lo:hi]
        nz = row[row > 0]
        if not len(nz):
            continue
        scaled = row / nz.min()
        rounded = np.round(scaled)
        if np.abs(scaled - rounded).max() > tol:
            raise ScpriorInputError(
                f"Cell {i}: expm1(x) divided by its smallest value is not integral (off by "
                f"{np.abs(scaled - rounded).max():.3g}); this matrix is not log1p(count / total * scale).")
        out.data[lo:hi] = rounded
    out.eliminate_zeros()
    return out.astype(np.float32)


def lognormalise(counts: sp.spmatrix, *, target: float = 1e4) -> sp.csr_matrix:
    """``log1p(count / total * target)`` per cell (CSR float32), the processed ``X``."""
    c = sp.csr_matrix(counts, dtype=np.float64)
    totals = np.asarray(c.sum(axis=1)).ravel()
    scale = sp.diags(np.where(totals > 0, target / np.maximum(totals, 1e-12), 0.0))
    x = scale @ c
    x.data = np.log1p(x.data)
    return sp.csr_matrix(x, dtype=np.float32)


def _case_unique(genes: list[str], counts: sp.csr_matrix) -> tuple[list[str], np.ndarray]:
    """Columns to keep so that no two genes differ only in case (the most-detected one is kept)."""
    detected = np.asarray((counts > 0).sum(axis=0)).ravel()
    frame = pd.DataFrame({"gene": genes, "upper": [g.upper() for g in genes], "n": detected,
                          "i": np.arange(len(genes))})
    keep = frame.sort_values(["upper", "n", "i"], ascending=[True, False, True]).drop_duplicates("upper")
    idx = np.sort(keep["i"].to_numpy())
    return [genes[i] for i in idx], idx


def to_processed(obj: dict[str, Any], *, species: str, dataset: str, cell_type: str,
                 batch: pd.Series | str, provenance: dict) -> ad.AnnData:
    """The processed layout from :func:`read_seurat`'s output: counts (recovered when the file
    stores only log-normalised values), log-normalised ``X``, ``obs`` ``cell_type``/``batch``/``species``."""
    from scprior.data.validate import is_count_matrix

    counts = obj["counts"] if obj["counts"] is not None else obj["data"]
    recovered = not is_count_matrix(counts)  # the fly file's counts slot holds log-normalised values too
    if recovered:
        counts = recover_counts(counts)
    counts = sp.csr_matrix(counts, dtype=np.float32)
    genes, idx = _case_unique(list(obj["genes"]), counts)
    counts = counts[:, idx]
    obs = obj["obs"].copy()
    if cell_type not in obs:
        raise ScpriorInputError(f"{dataset}: meta.data has no {cell_type!r} (has {list(obs.columns)}).")
    obs["cell_type"] = obs[cell_type].astype(str)
    obs["batch"] = batch if isinstance(batch, str) else np.asarray(batch).astype(str)
    obs["species"] = species
    for col in ("cell_type", "batch", "species"):
        obs[col] = obs[col].astype("category")
    out = ad.AnnData(X=lognormalise(counts), obs=obs, var=pd.DataFrame(index=pd.Index(genes, dtype=str)))
    out.layers["counts"] = counts
    out.uns["scprior"] = {**provenance, "dataset_id": dataset, "species": species,
                          "counts_recovered_from_lognormalised": bool(recovered),
                          "genes_dropped_case_duplicates": int(len(obj["genes"]) - len(genes))}
    return out


def read_fly_gut(path: str | os.PathLike) -> ad.AnnData:
    """Fly gut (Fly Cell Atlas; 180 cells, 18 types x 10), counts recovered; one batch."""
    obj = read_seurat(path)
    return to_processed(obj, species="fly", dataset="fly_gut", cell_type="annotation", batch="fly_gut",
                        provenance={"source": str(Path(path).name), "cell_type_column": "annotation"})


def read_mouse_gut(path: str | os.PathLike) -> ad.AnnData:
    """Mouse stomach + intestine (Mouse Cell Atlas; 219 cells, 22 broad types); batch = tissue
    (the prefix of ``cell_type_annotation``: ``intestine`` / ``stomach``)."""
    obj = read_seurat(path)
    fine = obj["obs"]["cell_type_annotation"].astype(str)
    tissue = fine.str.split("_", n=1).str[0]
    return to_processed(obj, species="mouse", dataset="mouse_gut", cell_type="cell_type_annotation_broad",
                        batch=tissue, provenance={"source": str(Path(path).name),
                                                  "cell_type_column": "cell_type_annotation_broad"})


# --------------------------------------------------------------------------- GO and orthologs
def read_go_table(path: str | os.PathLike) -> pd.DataFrame:
    """scGOclust's gene -> GO table: columns ``symbol``, ``ensembl_id``, ``go_id``, ``term_name``,
    ``evidence`` (biological process only; rows without a symbol or term dropped, duplicates merged)."""
    rdata = _require_rdata()
    path = Path(path)
    if not path.is_file():
        raise ScpriorInputError(f"{path} does not exist: run `python -m scprior.data.fetch --only far_species` first.")
    top = rdata.read_rda(path)
    frame = next(iter(top.values()))
    need = {"external_gene_name", "go_id", "name_1006"}
    if not isinstance(frame, pd.DataFrame) or not need <= set(frame.columns):
        raise ScpriorInputError(f"{path} is not a gene -> GO table (needs columns {sorted(need)}).")
    if "namespace_1003" in frame:
        frame = frame[frame["namespace_1003"].astype(str) == "biological_process"]
    out = pd.DataFrame({"symbol": frame["external_gene_name"].astype(str).to_numpy(),
                        "ensembl_id": frame.get("ensembl_gene_id", pd.Series("", index=frame.index)).astype(str).to_numpy(),
                        "go_id": frame["go_id"].astype(str).to_numpy(),
                        "term_name": frame["name_1006"].astype(str).to_numpy(),
                        "evidence": frame.get("go_linkage_type", pd.Series("", index=frame.index)).astype(str).to_numpy()})
    out = out[(out["symbol"] != "") & (out["symbol"] != "<NA>") & (out["term_name"] != "") & (out["go_id"] != "")]
    out = (out.groupby(["symbol", "ensembl_id", "go_id", "term_name"], as_index=False)["evidence"]
           .agg(lambda s: "|".join(sorted(set(s)))))
    return out.reset_index(drop=True)


def read_hcop(path: str | os.PathLike, taxa: dict[str, int] | None = None, *, keep_all: bool = False) -> pd.DataFrame:
    """HCOP human <-> species ortholog pairs from babelgene's ``sysdata.rda``: ``human_symbol``,
    ``taxon_id``, ``species`` (name from ``taxa`` or the taxon id), ``symbol``, ``support_n``.
    ``taxa`` (name -> taxon id) names those species and keeps only them (``keep_all``: every taxon,
    the unnamed ones called by their taxon id)."""
    rdata = _require_rdata()
    path = Path(path)
    if not path.is_file():
        raise ScpriorInputError(f"{path} does not exist: run `python -m scprior.data.fetch --only far_species` first.")
    top = rdata.read_rda(path)
    if "orthologs_df" not in top:
        raise ScpriorInputError(f"{path} has no orthologs_df (has {sorted(top)}); is it babelgene's sysdata.rda?")
    df = top["orthologs_df"]
    out = pd.DataFrame({"human_symbol": df["human_symbol"].astype(str).to_numpy(),
                        "taxon_id": df["taxon_id"].astype("Int64").to_numpy(),
                        "symbol": df["symbol"].astype(str).to_numpy(),
                        "support_n": pd.to_numeric(df["support_n"], errors="coerce").fillna(0).to_numpy()})
    out = out[(out["symbol"] != "<NA>") & (out["human_symbol"] != "<NA>") & out["taxon_id"].notna()]
    names = {int(v): k for k, v in (taxa or {}).items()}
    if taxa is not None and not keep_all:
        out = out[out["taxon_id"].astype(int).isin(names)]
    out = out.assign(taxon_id=out["taxon_id"].astype(int))
    out["species"] = [names.get(t, str(t)) for t in out["taxon_id"]]
    return out.drop_duplicates(["human_symbol", "taxon_id", "symbol"]).reset_index(drop=True)


def one2one_through_human(hcop: pd.DataFrame, a: str, b: str, genes_a=None, genes_b=None) -> pd.DataFrame:
    """Gene pairs (``a``, ``b``, ``human``) where each gene is the other species' only HCOP
    ortholog of one human gene: ``a``-gene <-> human one-to-one and human <-> ``b``-gene one-to-one
    (SATURN's baseline gene set: one-to-one orthologs through human). ``genes_a``/``genes_b``
    restrict to measured genes first (case-insensitive)."""
    def one2one(name: str, genes) -> pd.DataFrame:
        t = hcop[hcop["species"] == name][["human_symbol", "symbol"]]
        if genes is not None:
            keep = {str(g).upper(): str(g) for g in genes}
            t = t[t["symbol"].str.upper().isin(keep)]
            t = t.assign(symbol=[keep[s.upper()] for s in t["symbol"]])
        return t.drop_duplicates("human_symbol", keep=False).drop_duplicates("symbol", keep=False)

    ta, tb = one2one(a, genes_a), one2one(b, genes_b)
    pairs = ta.merge(tb, on="human_symbol", suffixes=(f"_{a}", f"_{b}"))
    pairs = pairs.rename(columns={f"symbol_{a}": a, f"symbol_{b}": b, "human_symbol": "human"})
    return pairs[[a, b, "human"]].sort_values("human").reset_index(drop=True)


# --------------------------------------------------------------------------------------- stage
def prepare(raw_dir: str | os.PathLike = RAW, out_dir: str | os.PathLike = OUT) -> dict[str, Path]:
    """Write the processed far-species files (atomic); return their paths."""
    from scprior.safe_io import atomic_path, check_writable

    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    check_writable(out_dir)
    paths: dict[str, Path] = {}
    for species, reader in (("fly", read_fly_gut), ("mouse", read_mouse_gut)):
        adata = reader(raw_dir / FILES[species])
        paths[DATASETS[species]] = out_dir / f"{DATASETS[species]}.h5ad"
        with atomic_path(paths[DATASETS[species]]) as tmp:
            adata.write_h5ad(tmp)
        go = read_go_table(raw_dir / GO_FILES[species])
        paths[f"go_bp_{species}"] = out_dir / f"go_bp_{species}.parquet"
        with atomic_path(paths[f"go_bp_{species}"]) as tmp:
            go.to_parquet(tmp, index=False)
    hcop = read_hcop(raw_dir / HCOP_FILE, TAXA, keep_all=True)
    paths["hcop"] = out_dir / "hcop_orthologs.parquet"
    with atomic_path(paths["hcop"]) as tmp:
        hcop.to_parquet(tmp, index=False)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write data/processed/far_species from the pinned .rda files.")
    parser.add_argument("--raw", default=str(RAW))
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)
    for name, path in prepare(args.raw, args.out).items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
