"""Inputs of the cross-species integration task: Baron human + mouse, orthologs, gene knowledge.

Everything reads the processed data (:func:`scprior.data.processed.read_processed`) and the
knowledge folder (:mod:`scprior.knowledge.store`); nothing is written.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scprior.data.processed import read_processed
from scprior.errors import ScpriorInputError
from scprior.knowledge.embeddings import GeneEmbeddings
from scprior.models.species_data import stacked_obs

SPECIES = ("human", "mouse")
DATASETS = {"human": "baron_human", "mouse": "baron_mouse"}
#: embedding set name used by the models -> knowledge source name
EMBEDDING_SOURCES = {"protein": "protein_kmer", "text": "text_minilm"}


def load_baron(processed_dir: str | os.PathLike = "data/processed", *, max_cells: int | None = None,
               seed: int = 0) -> dict[str, ad.AnnData]:
    """Baron pancreas per species (processed layout), optionally ``max_cells`` random cells each."""
    out = {}
    rng = np.random.default_rng(seed)
    for species, name in DATASETS.items():
        adata = read_processed(name, processed_dir)
        if max_cells is not None and adata.n_obs > max_cells:
            keep = np.sort(rng.choice(adata.n_obs, size=max_cells, replace=False))
            adata = adata[keep].copy()
        out[species] = adata
    return out


@dataclass
class Knowledge:
    """What the task reads from the knowledge layer."""

    embeddings: dict[str, dict[str, GeneEmbeddings]]  # set name -> species -> embeddings
    gene_tables: dict[str, pd.DataFrame]
    orthologs: pd.DataFrame


def load_knowledge(knowledge_dir: str | os.PathLike = "data/processed/knowledge",
                   species: Iterable[str] = SPECIES, *, sources: Mapping[str, str] | None = None) -> Knowledge:
    """Protein and text embeddings, gene tables and orthologs from the knowledge folder.

    ``sources`` maps the models' embedding sets (``protein``, ``text``) to knowledge sources; sets
    it leaves out keep :data:`EMBEDDING_SOURCES`. E.g. ``{"protein": "esm2_650m"}`` after storing
    ESM embeddings with :func:`scprior.knowledge.store.save_embeddings`.
    """
    from scprior.knowledge import store

    species = list(species)
    unknown = set(sources or {}) - set(EMBEDDING_SOURCES)
    sources = {**EMBEDDING_SOURCES, **dict(sources or {})}
    if unknown:
        raise ScpriorInputError(f"Unknown embedding set(s) {sorted(unknown)}: the models take "
                                f"{sorted(EMBEDDING_SOURCES)}, each mapped to a knowledge source name.")
    emb = {k: {s: store.load_embeddings(src, s, knowledge_dir) for s in species}
           for k, src in sources.items()}
    tables = {s: store.load_gene_table(s, knowledge_dir) for s in species}
    return Knowledge(embeddings=emb, gene_tables=tables, orthologs=store.load_orthologs(knowledge_dir))


def one2one_pairs(orthologs: pd.DataFrame, human_genes: Iterable[str], mouse_genes: Iterable[str]) -> pd.DataFrame:
    """One-to-one ortholog pairs (``human``, ``mouse``) whose genes are both measured, unique on both sides."""
    o = orthologs[orthologs["homology_type"] == "one2one"][["human", "mouse"]]
    o = o[o["human"].isin(set(human_genes)) & o["mouse"].isin(set(mouse_genes))]
    o = o.drop_duplicates("human", keep=False).drop_duplicates("mouse", keep=False)
    if o.empty:
        raise ScpriorInputError("No one-to-one ortholog pair is measured in both species; check the gene symbols.")
    return o.sort_values("human").reset_index(drop=True)


def ortholog_adata(adatas: Mapping[str, ad.AnnData], orthologs: pd.DataFrame) -> ad.AnnData:
    """Cells of both species on their one-to-one orthologs (var_names: human symbols, ``var['mouse']``).

    ``layers['counts']`` raw counts, ``X`` the processed log-normalised values (library size of
    all genes), obs from :func:`scprior.models.species_data.stacked_obs` (same cell order as the
    models' outputs).
    """
    pairs = one2one_pairs(orthologs, adatas["human"].var_names, adatas["mouse"].var_names)
    parts = {"human": adatas["human"][:, pairs["human"].to_numpy()],
             "mouse": adatas["mouse"][:, pairs["mouse"].to_numpy()]}
    counts = sp.vstack([sp.csr_matrix(p.layers["counts"]) for p in parts.values()]).tocsr()
    x = sp.vstack([sp.csr_matrix(p.X) for p in parts.values()]).tocsr()
    out = ad.AnnData(X=x.astype(np.float32), obs=stacked_obs(adatas),
                     var=pd.DataFrame({"mouse": pairs["mouse"].to_numpy()}, index=pd.Index(pairs["human"].to_numpy())))
    out.layers["counts"] = counts.astype(np.float32)
    for col in ("cell_type", "batch"):
        out.obs[col] = out.obs[col].astype(str).astype("category")
    return out


def select_hvgs(adata: ad.AnnData, n_top: int, *, batch_key: str | None = None, layer: str = "counts",
                min_cells: int = 3) -> list[str]:
    """``n_top`` highly variable genes (scanpy ``seurat_v3`` on counts), among genes seen in >= ``min_cells`` cells."""
    import scanpy as sc

    counts = adata.layers[layer]
    seen = np.asarray((counts > 0).sum(axis=0)).ravel() >= min_cells
    sub = ad.AnnData(X=sp.csr_matrix(counts)[:, seen], obs=adata.obs[[batch_key]] if batch_key else None,
                     var=pd.DataFrame(index=adata.var_names[seen]))
    n = int(min(n_top, sub.n_vars))
    if n == sub.n_vars:
        return list(sub.var_names)
    sc.pp.highly_variable_genes(sub, flavor="seurat_v3", n_top_genes=n, batch_key=batch_key)
    order = sub.var.sort_values("highly_variable_rank").index if "highly_variable_rank" in sub.var else sub.var_names
    hv = set(sub.var_names[sub.var["highly_variable"].to_numpy()])
    return [g for g in order if g in hv][:n]


def species_hvgs(adatas: Mapping[str, ad.AnnData], n_top: int,
                 covered: Mapping[str, Iterable[str]] | None = None) -> dict[str, ad.AnnData]:
    """Each species restricted to its ``n_top`` HVGs among the genes in ``covered[species]`` (if given)."""
    out = {}
    for species, adata in adatas.items():
        if covered is not None:
            keep = set(g.upper() for g in covered[species])
            adata = adata[:, [g for g in adata.var_names if g.upper() in keep]]
        genes = select_hvgs(adata, n_top)
        out[species] = adata[:, genes].copy()
    return out


def with_ortholog_partners(hvg: Mapping[str, ad.AnnData], adatas: Mapping[str, ad.AnnData], orthologs: pd.DataFrame,
                           covered: Mapping[str, Iterable[str]] | None = None) -> dict[str, ad.AnnData]:
    """Human and mouse HVG sets completed across species: each species' HVGs (``hvg``, in order) plus
    the measured one-to-one orthologs of the other species' HVGs (among ``covered[species]`` if
    given), appended in the other species' HVG order. Returns new AnnData (``adatas`` untouched).

    Why: HVGs chosen per species share only ~40% of their ortholog pairs on Baron, so a beta cell
    of each species is read through mostly different genes and the macrogene input itself differs
    by species; with the partners added, the shared genes feed the same macrogenes in both.
    """
    if set(hvg) != {"human", "mouse"} or set(adatas) != {"human", "mouse"}:
        raise ScpriorInputError(f"Ortholog partners need exactly human and mouse, got {sorted(hvg)}.")
    pairs = one2one_pairs(orthologs, adatas["human"].var_names, adatas["mouse"].var_names)
    link = {"human": dict(zip(pairs["mouse"], pairs["human"])), "mouse": dict(zip(pairs["human"], pairs["mouse"]))}
    out = {}
    for species, other in (("human", "mouse"), ("mouse", "human")):
        keep = None if covered is None else {g.upper() for g in covered[species]}
        extra = [link[species][g] for g in hvg[other].var_names if g in link[species]
                 and (keep is None or link[species][g].upper() in keep)]
        genes = list(dict.fromkeys([*hvg[species].var_names, *extra]))
        out[species] = adatas[species][:, genes].copy()
    return out


def embedded_genes(knowledge: Knowledge, species: str) -> set[str]:
    """Symbols with an embedding of at least one set for ``species``."""
    return set().union(*[set(e[species].symbols) for e in knowledge.embeddings.values()])


def human_embeddings_for(genes: Iterable[str], knowledge: Knowledge) -> dict[str, GeneEmbeddings]:
    """Per set, the human embeddings of ``genes`` (human symbols of ortholog pairs) that exist."""
    genes = list(genes)
    return {k: v["human"].subset(genes) for k, v in knowledge.embeddings.items()}
