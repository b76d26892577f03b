"""The baselines every GRN method is scored beside, on the same TFs x candidate genes.

- ``pearson`` / ``spearman``: absolute correlation of the TF's and the gene's expression over cells.
- ``grnboost2`` / ``genie3``: arboreto's per-target regressions (stochastic gradient boosting with
  early stopping / random forest; importance of each TF for each target) run on a
  ``dask.distributed`` local cluster. arboreto 0.1.6's ``grnboost2()`` breaks on current dask
  (``from_delayed`` of an empty meta list when ``include_meta=False``); we build arboreto's own graph
  with ``create_graph(..., include_meta=True)``, which runs the same regressions and avoids it.
- ``cosine_<source>``: cosine similarity of the TF's and the gene's knowledge embeddings alone
  (text MiniLM, protein k-mer): how much a prior says without any cells.
- ``random``: seeded uniform scores.

Every function returns a :class:`pandas.DataFrame` TFs x genes (higher = more likely a target).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.stats import rankdata

from scprior.errors import ScpriorInputError
from scprior.knowledge.embeddings import GeneEmbeddings

ARBORETO = {"grnboost2": "GBM", "genie3": "RF"}


def dense(x) -> np.ndarray:
    """A cells x genes array (float64) from a dense or sparse matrix."""
    return np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float64)


def _check(genes: Sequence[str], tfs: Sequence[str]) -> list[int]:
    index = {g: i for i, g in enumerate(genes)}
    missing = [t for t in tfs if t not in index]
    if missing:
        raise ScpriorInputError(f"TFs {missing[:5]} are not among the genes of the expression matrix.")
    return [index[t] for t in tfs]


def correlation(x, genes: Sequence[str], tfs: Sequence[str], method: str = "pearson") -> pd.DataFrame:
    """|Pearson| or |Spearman| correlation of each TF with each gene (cells x genes ``x``)."""
    x = dense(x)
    if method == "spearman":
        x = rankdata(x, axis=0)
    elif method != "pearson":
        raise ValueError(f"method must be 'pearson' or 'spearman', got {method!r}")
    z = x - x.mean(axis=0)
    sd = np.sqrt((z ** 2).sum(axis=0))
    z = np.divide(z, sd, out=np.zeros_like(z), where=sd > 0)
    idx = _check(genes, tfs)
    r = z[:, idx].T @ z
    return pd.DataFrame(np.abs(r), index=list(tfs), columns=list(genes))


def embedding_cosine(emb: GeneEmbeddings, genes: Sequence[str], tfs: Sequence[str]) -> pd.DataFrame:
    """Cosine similarity of knowledge embeddings; NaN where the TF or the gene has none."""
    lookup = {str(s).upper(): i for i, s in enumerate(emb.symbols)}
    mat = np.asarray(emb.matrix, dtype=np.float64)
    mat = mat / np.clip(np.linalg.norm(mat, axis=1, keepdims=True), 1e-12, None)

    def rows(names: Sequence[str]) -> np.ndarray:
        out = np.full((len(names), mat.shape[1]), np.nan)
        for i, g in enumerate(names):
            j = lookup.get(str(g).upper())
            if j is not None:
                out[i] = mat[j]
        return out

    return pd.DataFrame(rows(tfs) @ rows(genes).T, index=list(tfs), columns=list(genes))


def random_scores(genes: Sequence[str], tfs: Sequence[str], seed: int = 0) -> pd.DataFrame:
    """Uniform random scores (seeded)."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.random((len(tfs), len(genes))), index=list(tfs), columns=list(genes))


def arboreto_scores(x, genes: Sequence[str], tfs: Sequence[str], method: str = "grnboost2", *,
                    client=None, n_workers: int = 1, seed: int = 0, n_estimators: int | None = None) -> pd.DataFrame:
    """GRNBoost2 / GENIE3 importances of each TF for every gene (arboreto on dask.distributed).

    ``client``: an existing ``distributed.Client``; else, if the environment variable
    ``SCPRIOR_DASK_SCHEDULER`` holds a scheduler address (``tcp://host:8786``: a multi-machine
    cluster started with ``dask scheduler`` / ``dask worker``), a client of that cluster; else a
    ``LocalCluster`` with ``n_workers`` single-threaded worker processes is started and closed. ``n_estimators`` overrides arboreto's
    tree count (GENIE3's 1,000 random-forest trees per target cost minutes per hundred targets on
    two cores). Genes no TF explains (no regression, e.g. constant) score 0.
    """
    from arboreto import core

    if method not in ARBORETO:
        raise ValueError(f"method must be one of {sorted(ARBORETO)}, got {method!r}")
    regressor = ARBORETO[method]
    kwargs = dict(core.SGBM_KWARGS if method == "grnboost2" else core.RF_KWARGS)
    if n_estimators is not None:
        kwargs["n_estimators"] = int(n_estimators)
    x = dense(x)
    genes, tfs = list(genes), list(tfs)
    _check(genes, tfs)

    def run(c) -> pd.DataFrame:
        links, _meta = core.create_graph(x, genes, tfs, regressor, kwargs, c, include_meta=True, seed=seed)
        return links.compute()

    address = os.environ.get("SCPRIOR_DASK_SCHEDULER", "").strip()
    if client is not None:
        links = run(client)
    elif address:
        from distributed import Client

        with Client(address) as c:
            links = run(c)
    else:
        from distributed import Client, LocalCluster

        with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as c:
            links = run(c)
    out = pd.DataFrame(0.0, index=tfs, columns=genes)
    if len(links):
        piv = links.pivot_table(index="TF", columns="target", values="importance", aggfunc="sum")
        out.loc[piv.index, piv.columns] = piv.fillna(0.0).to_numpy()
    return out
