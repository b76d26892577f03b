"""Gene embeddings for any species in one space, from that species' own records.

* **GO-term text** (Unify's LLM macrogenes, with MiniLM in place of LLaMA-2): every GO term name is
  embedded once by the sentence model (:func:`scprior.knowledge.text.embed_texts`), and a gene is
  the mean of its terms' vectors. Two species annotated with the same terms land in the same space
  whatever their gene names; source ``go_text_minilm``.
* **Orthology-borrowed protein vectors**: a gene linked by HCOP to one or more human genes takes
  the mean of those human genes' protein vectors (``data/processed/knowledge/embeddings``); its own
  protein was never embedded, so these are flagged ``borrowed`` (provenance + a table of links).
  Source ``protein_borrowed``. They carry orthology, not sequence: a gene without a human ortholog
  has none.

``python -m scprior.knowledge.species_embeddings`` (stage ``knowledge_far_species``) writes both for
the fly/mouse demo as sciLaMA-format parquet files (readable with
:func:`scprior.knowledge.formats.read_embeddings`), the format a user supplies for their own species.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from scprior.data.species import get_species
from scprior.errors import ScpriorInputError
from scprior.knowledge.embeddings import GeneEmbeddings

GO_TEXT_SOURCE = "go_text_minilm"
BORROWED_SOURCE = "protein_borrowed"


def go_term_vectors(term_names: Iterable[str], *, embed: Callable[[list[str]], np.ndarray] | None = None,
                    progress: bool = False) -> dict[str, np.ndarray]:
    """Each distinct GO term name -> its text vector (MiniLM, L2-normalised, 384-d by default)."""
    names = sorted({str(t) for t in term_names if str(t).strip()})
    if not names:
        raise ScpriorInputError("No GO term names to embed.")
    if embed is None:
        from scprior.knowledge.text import embed_texts

        def embed(texts):  # noqa: E306 - the default model, loaded only when used
            return embed_texts(texts, batch_size=256, max_seq_length=32, progress=progress)
    mat = np.asarray(embed(names), dtype=np.float32)
    if mat.shape[0] != len(names):
        raise ScpriorInputError(f"The text model returned {mat.shape[0]} vectors for {len(names)} terms.")
    return dict(zip(names, mat))


def go_text_embeddings(go: pd.DataFrame, species: str, term_vectors: Mapping[str, np.ndarray], *,
                       genes: Iterable[str] | None = None) -> GeneEmbeddings:
    """Gene = mean of its GO terms' text vectors. ``go``: ``symbol``, ``term_name`` (one species).

    ``genes`` (optional) keeps only those symbols (case-insensitive). Genes whose symbols differ
    only in case keep the first (GeneEmbeddings matches case-insensitively).
    """
    need = {"symbol", "term_name"}
    if not need <= set(go.columns):
        raise ScpriorInputError(f"The GO table needs columns {sorted(need)}, has {list(go.columns)}.")
    t = go[["symbol", "term_name"]].astype(str).drop_duplicates()
    if genes is not None:
        keep = {str(g).upper() for g in genes}
        t = t[t["symbol"].str.upper().isin(keep)]
    t = t[t["term_name"].isin(term_vectors)]
    if t.empty:
        raise ScpriorInputError(f"No {get_species(species).name} gene has a GO term with a text vector.")
    dim = len(next(iter(term_vectors.values())))
    t = t.assign(upper=t["symbol"].str.upper())
    first = t.drop_duplicates("upper")[["upper", "symbol"]]
    t = t.drop(columns="symbol").merge(first, on="upper")
    codes, symbols = pd.factorize(t["symbol"], sort=True)
    vecs = np.stack([term_vectors[n] for n in t["term_name"]]).astype(np.float64)
    sums = np.zeros((len(symbols), dim))
    np.add.at(sums, codes, vecs)
    n_terms = np.bincount(codes, minlength=len(symbols))
    mat = (sums / n_terms[:, None]).astype(np.float32)
    prov = {"method": "mean of MiniLM vectors of the gene's GO biological-process term names (Unify's text "
                      "macrogenes, MiniLM for LLaMA-2)", "n_terms_median": float(np.median(n_terms))}
    return GeneEmbeddings(np.asarray(symbols, dtype=object), mat, species, GO_TEXT_SOURCE, prov)


def borrowed_protein_embeddings(hcop: pd.DataFrame, species: str, human: GeneEmbeddings, *,
                                genes: Iterable[str] | None = None) -> tuple[GeneEmbeddings, pd.DataFrame]:
    """Protein vectors borrowed through HCOP: gene -> mean of its human orthologs' vectors.

    ``hcop``: ``human_symbol``, ``species``, ``symbol`` (:func:`scprior.data.far_species.read_hcop`);
    ``human``: human protein embeddings. Returns the embeddings (source ``protein_borrowed``,
    provenance ``borrowed: True``) and the link table (``symbol``, ``human_symbols``, ``n_human``).
    """
    name = get_species(species).name
    if name == "human":
        raise ScpriorInputError("Human protein vectors are the human genes' own; nothing to borrow.")
    t = hcop[hcop["species"] == name][["human_symbol", "symbol"]].astype(str)
    if genes is not None:
        keep = {str(g).upper(): str(g) for g in genes}
        t = t[t["symbol"].str.upper().isin(keep)]
        t = t.assign(symbol=[keep[s.upper()] for s in t["symbol"]])
    t = t[[h in human for h in t["human_symbol"]]]
    if t.empty:
        raise ScpriorInputError(f"No {name} gene has an HCOP human ortholog with a protein vector "
                                f"(species names in the ortholog table: {sorted(hcop['species'].unique())[:10]}).")
    t = t.assign(upper=t["symbol"].str.upper())
    first = t.drop_duplicates("upper")[["upper", "symbol"]]
    t = t.drop(columns="symbol").merge(first, on="upper").drop_duplicates(["symbol", "human_symbol"])
    codes, symbols = pd.factorize(t["symbol"], sort=True)
    vecs, _ = human.lookup(t["human_symbol"].tolist(), missing="zero")
    sums = np.zeros((len(symbols), human.dim))
    np.add.at(sums, codes, vecs.astype(np.float64))
    n = np.bincount(codes, minlength=len(symbols))
    emb = GeneEmbeddings(np.asarray(symbols, dtype=object), (sums / n[:, None]).astype(np.float32), name,
                         BORROWED_SOURCE, {"borrowed": True, "from": f"human {human.source}",
                                           "via": "HCOP orthologs (babelgene); mean over the human orthologs"})
    links = (t.groupby("symbol")["human_symbol"].agg(lambda s: ";".join(sorted(s))).rename("human_symbols")
             .reset_index())
    links["n_human"] = links["human_symbols"].str.count(";") + 1
    links["borrowed"] = True
    return emb, links


def build(processed_dir: str | os.PathLike = "data/processed/far_species",
          knowledge_dir: str | os.PathLike = "data/processed/knowledge",
          species: Sequence[str] = ("fly", "mouse"), *, genes: Mapping[str, Sequence[str]] | None = None,
          progress: bool = False) -> dict[str, Path]:
    """The demo's embedding files: ``<processed_dir>/embeddings/{source}_{species}.parquet`` for
    ``go_text_minilm`` and ``protein_borrowed``, and ``protein_borrowed_{species}_links.csv``.
    ``genes`` (species -> symbols) embeds only those genes (the tests' quick build); default: every
    measured gene."""
    import anndata as ad

    from scprior.knowledge import store
    from scprior.knowledge.formats import write_embeddings
    from scprior.safe_io import atomic_path

    processed_dir = Path(processed_dir)
    out_dir = processed_dir / "embeddings"
    out_dir.mkdir(parents=True, exist_ok=True)
    go = {s: pd.read_parquet(processed_dir / f"go_bp_{s}.parquet") for s in species}
    measured = {s: list(ad.read_h5ad(processed_dir / f"{s}_gut.h5ad", backed="r").var_names) for s in species}
    if genes is not None:
        measured = {s: [g for g in measured[s] if g in set(genes.get(s, ()))] for s in species}
    keep = {s: {g.upper() for g in measured[s]} for s in species}
    terms = pd.concat([go[s].loc[go[s]["symbol"].str.upper().isin(keep[s]), "term_name"] for s in species])
    vectors = go_term_vectors(terms, progress=progress)
    hcop = pd.read_parquet(processed_dir / "hcop_orthologs.parquet")
    human = store.load_embeddings("protein_kmer", "human", knowledge_dir)
    paths = {}
    for s in species:
        text = go_text_embeddings(go[s], s, vectors, genes=measured[s])
        prot, links = borrowed_protein_embeddings(hcop, s, human, genes=measured[s])
        for emb in (text, prot):
            paths[f"{emb.source}_{s}"] = write_embeddings(emb, out_dir / f"{emb.source}_{s}.parquet")
        paths[f"links_{s}"] = out_dir / f"{BORROWED_SOURCE}_{s}_links.csv"
        with atomic_path(paths[f"links_{s}"]) as tmp:
            links.to_csv(tmp, index=False)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="GO-text and borrowed protein embeddings for the far-species demo.")
    parser.add_argument("--processed", default="data/processed/far_species")
    parser.add_argument("--knowledge", default="data/processed/knowledge")
    args = parser.parse_args(argv)
    from scprior.runtime import set_threads

    set_threads(1)
    for k, p in build(args.processed, args.knowledge).items():
        print(f"{k}: {p}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
