"""Prior-knowledge tables for GeneCompass tokens, from our knowledge layer.

GeneCompass feeds four priors (promoter DNA, co-expression, gene family, GRN/PECA2vec), each a
768-d vector per gene looked up through the token's human homolog. We build, per token
(rows for special or unmapped tokens are zero):

=============  ===========================================================================
``text``       MiniLM text embedding of the gene (``text_minilm``)
``protein``    protein k-mer embedding (``protein_kmer``)
``go``         truncated SVD of the gene x GO-term annotation matrix (org.Hs.eg.db)
``grn``        the gene's place in the regulon graph: SVD of the TF -> target adjacency,
               [as-regulator, as-target] halves (Pathway Commons via priori)
``family``     truncated SVD of the gene x Pfam-domain matrix (gene family)
``coexp``      co-expression: gene loadings of an SVD of the z-scored log-normalised
               *training* cells (mouse genes through their human ortholog)
``promoter``   GeneCompass's promoter-sequence prior needs genome sequence, which cannot be had
               offline: read from a user-supplied embedding file (any format
               :func:`scprior.knowledge.formats.read_embeddings` reads), else unavailable
=============  ===========================================================================

Each table is float32 (n_tokens, dim), rows L2-normalised.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from scprior.errors import ScpriorInputError

PRIORS = ("text", "protein", "go", "grn", "family", "coexp", "promoter")
#: knowledge embedding source per embedding-based prior
EMBEDDING_PRIORS = {"text": "text_minilm", "protein": "protein_kmer"}


def _normalise(m: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(m, axis=1, keepdims=True)
    return (m / np.where(n == 0, 1.0, n)).astype(np.float32)


def _rows_for(keys: Sequence[str], symbols: Sequence[str], matrix: np.ndarray) -> np.ndarray:
    index = {str(s).upper(): i for i, s in enumerate(symbols)}
    out = np.zeros((len(keys), matrix.shape[1]), dtype=np.float32)
    for k, key in enumerate(keys):
        i = index.get(str(key).upper()) if key else None
        if i is not None:
            out[k] = matrix[i]
    return out


def _svd_embedding(incidence: sp.spmatrix, dim: int, seed: int) -> np.ndarray:
    """Rows of a (genes x features) incidence matrix -> TF-IDF weighted truncated SVD (genes, <=dim)."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfTransformer

    x = TfidfTransformer().fit_transform(sp.csr_matrix(incidence, dtype=np.float64))
    k = max(1, min(dim, min(x.shape) - 1))
    return TruncatedSVD(k, random_state=seed).fit_transform(x).astype(np.float32)


def _incidence(frame: pd.DataFrame, gene_col: str, feat_col: str) -> tuple[list[str], sp.csr_matrix]:
    genes = pd.Index(sorted(frame[gene_col].astype(str).unique()))
    feats = pd.Index(sorted(frame[feat_col].astype(str).unique()))
    pairs = frame[[gene_col, feat_col]].astype(str).drop_duplicates()
    m = sp.csr_matrix((np.ones(len(pairs)), (genes.get_indexer(pairs[gene_col]), feats.get_indexer(pairs[feat_col]))),
                      shape=(len(genes), len(feats)))
    return list(genes), m


def reduce_rows(rows: np.ndarray, dim: int, seed: int = 0) -> np.ndarray:
    """Truncated SVD of the non-zero rows to ``dim`` components (zero rows stay zero)."""
    from sklearn.decomposition import TruncatedSVD

    nz = np.abs(rows).sum(axis=1) > 0
    out = np.zeros((len(rows), dim), dtype=np.float32)
    if nz.sum() > dim:
        out[nz] = TruncatedSVD(dim, random_state=seed).fit_transform(rows[nz])
    return out


def annotation_prior(frame: pd.DataFrame, gene_col: str, feat_col: str, keys: Sequence[str], *, dim: int,
                     seed: int = 0) -> np.ndarray:
    """Prior from gene -> feature annotations (GO terms, Pfam domains): SVD of the incidence matrix."""
    genes, m = _incidence(frame, gene_col, feat_col)
    return _normalise(_rows_for(keys, genes, _svd_embedding(m, dim, seed)))


def grn_prior(regulon: pd.DataFrame, keys: Sequence[str], *, dim: int, seed: int = 0) -> np.ndarray:
    """Each gene's place in the TF -> target graph: truncated SVD of the directed adjacency
    A = U S V^T; the gene's row is [U S^1/2 (as regulator), V S^1/2 (as target)] (dim // 2 each)."""
    from sklearn.decomposition import TruncatedSVD

    genes = pd.Index(sorted(set(regulon["tf"].astype(str)) | set(regulon["target"].astype(str))))
    edges = regulon[["tf", "target"]].astype(str).drop_duplicates()
    a = sp.csr_matrix((np.ones(len(edges)), (genes.get_indexer(edges["tf"]), genes.get_indexer(edges["target"]))),
                      shape=(len(genes), len(genes)))
    k = max(1, min(dim // 2, len(genes) - 1))
    svd = TruncatedSVD(k, random_state=seed).fit(a)
    s = np.sqrt(svd.singular_values_)
    as_tf = (a @ svd.components_.T) / np.where(s == 0, 1, s)  # U S^1/2
    as_target = svd.components_.T * s  # V S^1/2
    emb = np.hstack([as_tf, as_target]).astype(np.float32)
    return _normalise(_rows_for(keys, list(genes), emb))


def coexp_prior(training: Sequence[tuple[object, Sequence[str]]], keys: Sequence[str], *, dim: int,
                seed: int = 0) -> np.ndarray:
    """Co-expression from *training* cells only: ``training`` = [(log-normalised cells x genes,
    human symbol per column), ...] (mouse columns already renamed to their human orthologs, others
    ``""``). Genes are z-scored within each block and the stacked matrix's truncated SVD gives
    gene loadings V S: genes whose expression moves together get similar rows."""
    from sklearn.decomposition import TruncatedSVD

    all_genes = pd.Index(sorted({str(g).upper() for _, gs in training for g in gs if g}))
    if not len(all_genes):
        raise ScpriorInputError("No training gene has a human symbol: cannot build the co-expression prior.")
    blocks = []
    for x, gs in training:
        x = sp.csr_matrix(x, dtype=np.float64)
        gs = [str(g).upper() for g in gs]
        keep = np.asarray([bool(g) for g in gs])
        x = x[:, np.flatnonzero(keep)].toarray()
        cols = all_genes.get_indexer([g for g, k in zip(gs, keep) if k])
        mu, sd = x.mean(axis=0), x.std(axis=0)
        z = (x - mu) / np.where(sd == 0, 1.0, sd)
        full = np.zeros((len(x), len(all_genes)), dtype=np.float32)
        np.add.at(full.T, cols, z.T.astype(np.float32))  # duplicate columns (paralogs -> one ortholog) add up
        blocks.append(full)
    z = np.vstack(blocks)
    k = max(1, min(dim, min(z.shape) - 1))
    svd = TruncatedSVD(k, random_state=seed).fit(z)
    loadings = (svd.components_.T * svd.singular_values_).astype(np.float32)
    return _normalise(_rows_for(keys, list(all_genes), loadings))


def promoter_prior(path: str | os.PathLike | None, keys: Sequence[str]) -> np.ndarray:
    """GeneCompass's promoter prior from a user-supplied embedding file (human symbols); it cannot be
    computed offline (it needs genome sequence and a DNA language model)."""
    if path is None:
        raise ScpriorInputError(
            "The promoter prior needs a promoter-sequence embedding per human gene, which cannot be "
            "computed offline (no genome sequence here). Supply one with promoter_file=... (csv/tsv/"
            "parquet/pickle/torch, first column the human symbol) or leave 'promoter' out of priors.")
    from scprior.knowledge.formats import read_embeddings

    emb = read_embeddings(path, species="human", source="promoter")
    return _normalise(_rows_for(keys, list(emb.symbols), emb.matrix))


def build_priors(names: Sequence[str], keys: Sequence[str], *, knowledge_dir: str | os.PathLike,
                 training: Sequence[tuple[object, Sequence[str]]] | None = None, dim: int = 64, seed: int = 0,
                 promoter_file: str | os.PathLike | None = None,
                 reduce_embeddings: bool = True) -> dict[str, np.ndarray]:
    """Prior tables {name: (len(keys), dim_name)} for the token lookup keys ``keys`` (human symbols).

    ``training``: see :func:`coexp_prior` (needed for ``coexp``). ``dim``: SVD size of the
    annotation/graph/co-expression priors; with ``reduce_embeddings`` the text/protein embeddings
    (384/256-d) are reduced to ``dim`` too (truncated SVD over the vocabulary's rows: a cheaper
    projection on CPU; GeneCompass feeds 768-d priors through Linear 768 -> 768).
    """
    from scprior.knowledge import store

    unknown = sorted(set(names) - set(PRIORS))
    if unknown:
        raise ScpriorInputError(f"Unknown prior(s) {unknown}; known: {list(PRIORS)}.")
    out: dict[str, np.ndarray] = {}
    for name in names:
        if name in EMBEDDING_PRIORS:
            emb = store.load_embeddings(EMBEDDING_PRIORS[name], "human", knowledge_dir)
            rows = _rows_for(keys, list(emb.symbols), emb.matrix)
            if reduce_embeddings and dim < rows.shape[1]:
                rows = reduce_rows(rows, dim, seed)
            out[name] = _normalise(rows)
        elif name == "go":
            out[name] = annotation_prior(store.load_go_annotations("human", knowledge_dir), "symbol", "go_id", keys,
                                         dim=dim, seed=seed)
        elif name == "family":
            out[name] = annotation_prior(store.load_protein_domains("human", knowledge_dir), "symbol", "pfam_id",
                                         keys, dim=dim, seed=seed)
        elif name == "grn":
            out[name] = grn_prior(store.load_regulon(knowledge_dir), keys, dim=dim, seed=seed)
        elif name == "coexp":
            if not training:
                raise ScpriorInputError("The co-expression prior needs the training cells (training=...).")
            out[name] = coexp_prior(training, keys, dim=dim, seed=seed)
        else:
            out[name] = promoter_prior(promoter_file, keys)
    return out


def coverage(priors: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Fraction of gene tokens (rows after the specials) with a non-zero prior row, per prior."""
    from scprior.models.genecompass.encoding import N_SPECIAL

    return {k: float((np.abs(v[N_SPECIAL:]).sum(axis=1) > 0).mean()) for k, v in priors.items()}
