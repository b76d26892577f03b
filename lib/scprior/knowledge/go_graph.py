"""GO gene-gene similarity graph, the GEARS way: Jaccard index of GO term sets, top-k per gene."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from scprior.errors import ScpriorInputError


def gene_term_matrix(annotations: pd.DataFrame) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """Binary genes x terms CSR matrix from a ``symbol``/``go_id`` table, with its sorted genes and terms."""
    if not {"symbol", "go_id"} <= set(annotations.columns):
        raise ScpriorInputError("GO annotations need columns 'symbol' and 'go_id'.")
    pairs = annotations[["symbol", "go_id"]].drop_duplicates()
    genes, gi = np.unique(pairs["symbol"].to_numpy(dtype=str), return_inverse=True)
    terms, ti = np.unique(pairs["go_id"].to_numpy(dtype=str), return_inverse=True)
    mat = sp.csr_matrix((np.ones(len(pairs), dtype=np.float32), (gi, ti)), shape=(len(genes), len(terms)))
    return mat, genes, terms


def jaccard_topk(annotations: pd.DataFrame, *, k: int = 20, min_weight: float = 0.1,
                 block: int = 1024, progress: bool = False) -> pd.DataFrame:
    """Directed top-``k`` Jaccard neighbours of every annotated gene.

    For each gene a (rows of ``annotations``) the ``k`` other genes b with the largest
    ``|T_a & T_b| / |T_a | T_b|`` (T = set of GO ids) and weight >= ``min_weight`` become edges
    ``gene_a -> gene_b``; ties are broken by gene name, so the result is deterministic.
    Returns ``gene_a``, ``gene_b``, ``weight`` sorted by gene_a, then weight descending.
    Cost: one sparse genes x genes product per block of ``block`` genes (memory ~ block x genes).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    mat, genes, _ = gene_term_matrix(annotations)
    n = len(genes)
    sizes = np.asarray(mat.sum(axis=1)).ravel()
    mat_t = mat.T.tocsc()
    rows_a, rows_b, weights = [], [], []
    starts = range(0, n, block)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="GO Jaccard graph", unit="block")
    kk = min(k, n - 1)
    for s in starts:
        e = min(s + block, n)
        inter = (mat[s:e] @ mat_t).toarray()
        union = sizes[s:e, None] + sizes[None, :] - inter
        jac = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        jac[np.arange(e - s), np.arange(s, e)] = -1.0  # no self-edges
        if kk <= 0:
            continue
        # the k largest per row, ties broken by gene index (= name order), deterministically
        kth = -np.partition(-jac, kk - 1, axis=1)[:, kk - 1]
        r, c = np.nonzero((jac >= kth[:, None]) & (jac >= min_weight))
        w = jac[r, c]
        order = np.lexsort((c, -w, r))
        r, c, w = r[order], c[order], w[order]
        first = np.searchsorted(r, r, side="left")
        keep = (np.arange(len(r)) - first) < kk
        rows_a.append(r[keep] + s)
        rows_b.append(c[keep])
        weights.append(w[keep])
    if not rows_a:
        return pd.DataFrame({"gene_a": pd.Series(dtype=str), "gene_b": pd.Series(dtype=str),
                             "weight": pd.Series(dtype=np.float32)})
    a, b, w = np.concatenate(rows_a), np.concatenate(rows_b), np.concatenate(weights)
    return pd.DataFrame({"gene_a": genes[a], "gene_b": genes[b], "weight": w.astype(np.float32)})
