"""Gene features from GO annotations: a binary gene x term table and its truncated-SVD embedding.

Used by the perturbation task's knowledge baselines (ridge / random forest / linear model on GO
features of the perturbed genes) and as scGenePT-GO's gene "language" embedding.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from scprior.errors import ScpriorInputError
from scprior.knowledge.embeddings import GeneEmbeddings


def go_feature_table(annotations: pd.DataFrame, genes: Sequence[str], *, min_genes: int = 2) -> pd.DataFrame:
    """Binary gene x GO-term table for ``genes`` from an annotation table (``symbol``, ``go_id``).

    Rows are upper-case symbols. Keeps terms annotated to at least ``min_genes`` of ``genes``
    (others cannot generalise). Genes without any kept term are absent from the result.
    """
    for col in ("symbol", "go_id"):
        if col not in annotations:
            raise ScpriorInputError(f"GO annotations need columns 'symbol' and 'go_id' (has {list(annotations.columns)}).")
    wanted = {str(g).strip().upper() for g in genes}
    ann = annotations.assign(symbol=annotations["symbol"].astype(str).str.upper())
    ann = ann[ann["symbol"].isin(wanted)][["symbol", "go_id"]].drop_duplicates()
    counts = ann.groupby("go_id")["symbol"].nunique()
    ann = ann[ann["go_id"].isin(counts[counts >= min_genes].index)]
    if ann.empty:
        return pd.DataFrame(index=pd.Index([], name="symbol"))
    return pd.crosstab(ann["symbol"], ann["go_id"]).clip(upper=1).astype(np.float32)


def go_svd_embedding(annotations: pd.DataFrame, genes: Sequence[str], *, dim: int = 64,
                     seed: int = 0) -> GeneEmbeddings | None:
    """GO annotation vectors for ``genes`` (genes, <= dim): truncated SVD of :func:`go_feature_table`.

    ``None`` when fewer than 3 genes or 2 terms remain (nothing to embed).
    """
    table = go_feature_table(annotations, genes, min_genes=2)
    if table.shape[0] < 3 or table.shape[1] < 2:
        return None
    from sklearn.decomposition import TruncatedSVD

    k = int(min(dim, table.shape[1] - 1, table.shape[0] - 1))
    emb = TruncatedSVD(n_components=k, random_state=seed).fit_transform(table.to_numpy())
    return GeneEmbeddings(table.index.to_numpy(dtype=object), emb.astype(np.float32), "human", "go_svd",
                          {"terms": int(table.shape[1])})


def gene2go(annotations: pd.DataFrame, genes: Sequence[str] | None = None) -> dict[str, set[str]]:
    """Symbol -> set of its direct GO ids (GEARS's ``gene2go_all.pkl`` content), optionally for ``genes``."""
    ann = annotations[["symbol", "go_id"]].dropna().astype(str)
    if genes is not None:
        wanted = {str(g) for g in genes}
        ann = ann[ann["symbol"].isin(wanted)]
    return {s: set(g) for s, g in ann.groupby("symbol")["go_id"]}
