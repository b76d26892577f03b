"""Scoring every method of every seed, and the summaries written to ``metrics/integration.json``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import anndata as ad
import pandas as pd

from scprior.tasks.integration.data import SPECIES
from scprior.tasks.integration.methods import MethodRun
from scprior.tasks.integration.metrics import (
    celltype_centroids,
    donor_batch_scores,
    mutual_nn_score,
    scib_benchmark,
    scib_scores,
    transfer_both_ways,
)

PAIR = SPECIES  # label transfer and the tree compare these two
DIRECTIONS = (f"{PAIR[0]}->{PAIR[1]}", f"{PAIR[1]}->{PAIR[0]}")


def with_embeddings(obs: pd.DataFrame, runs: Mapping[str, MethodRun]) -> ad.AnnData:
    """An AnnData of ``obs`` with ``obsm['X_<method>']`` for every run."""
    out = ad.AnnData(obs=obs[["cell_type", "species", "batch"]].copy())
    for name, run in runs.items():
        out.obsm[f"X_{name}"] = run.embedding
    return out


def evaluate_seed(obs: pd.DataFrame, runs: Mapping[str, MethodRun], *, seed: int, transfer_c: float = 0.1,
                  min_cells: int = 5, donor_batch: bool = True, kbet: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score all ``runs`` (must include ``pca``, the unintegrated reference) of one seed.

    Returns (one row per method with the summary scores, the full scib results table).
    """
    if "pca" not in runs:
        raise ValueError("evaluate_seed needs the 'pca' run: it is the pre-integration reference.")
    adata = with_embeddings(obs, runs)
    keys = [f"X_{m}" for m in runs]
    table, _ = scib_benchmark(adata, keys, label_key="cell_type", batch_key="species", pre_key="X_pca", kbet=kbet)
    scores = scib_scores(table)
    donor = donor_batch_scores(adata, keys, pre_key="X_pca", kbet=kbet) if donor_batch else None
    labels = obs["cell_type"].astype(str).to_numpy()
    species = obs["species"].astype(str).to_numpy()
    rows = []
    for m, run in runs.items():
        key = f"X_{m}"
        tr = transfer_both_ways(run.embedding, labels, species, pair=PAIR, C=transfer_c, min_cells=min_cells, seed=seed)
        tree, _ = mutual_nn_score(celltype_centroids(run.embedding, labels, species, min_cells=min_cells), pair=PAIR)
        row = {"seed": seed, "method": m, "scib_total": scores.loc[key, "Total"],
               "scib_bio": scores.loc[key, "Bio conservation"], "scib_batch": scores.loc[key, "Batch correction"],
               "tree_mutual_nn": tree, "seconds": run.seconds}
        if donor is not None:
            row["scib_batch_donor"] = donor.loc[key, "mean"]
        for d in DIRECTIONS:
            row[f"transfer_acc[{d}]"] = tr[d]["accuracy"]
            row[f"transfer_bal_acc[{d}]"] = tr[d]["balanced_accuracy"]
        rows.append(row)
    table = table.copy()
    table.insert(0, "seed", seed)
    return pd.DataFrame(rows), table


def evaluate_seeds(obs: pd.DataFrame, runs: Mapping[int, Mapping[str, MethodRun]], *, n_jobs: int = 1,
                   **kw) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    """:func:`evaluate_seed` for every seed (parallel processes if ``n_jobs`` > 1); returns
    (all records, the per-seed scib tables)."""
    seeds = list(runs)
    if n_jobs == 1 or len(seeds) == 1:
        out = [evaluate_seed(obs, runs[s], seed=int(s), **kw) for s in seeds]
    else:
        from joblib import Parallel, delayed

        out = Parallel(n_jobs=min(n_jobs, len(seeds)))(
            delayed(evaluate_seed)(obs, runs[s], seed=int(s), **kw) for s in seeds)
    return pd.concat([r for r, _ in out], ignore_index=True), [t for _, t in out]


def mean_scib_results(tables: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Per-seed scib tables (from :func:`evaluate_seed`) averaged, in the layout scib-metrics keeps
    its results (rows = metrics, columns = embeddings + ``Metric Type``) for its table plot."""
    types = tables[0].loc["Metric Type"].drop("seed")
    num = pd.concat([scib_scores(t.drop(columns="seed")) for t in tables])
    mean = num.groupby(level=0, sort=False).mean()
    metric_cols = [c for c in mean.columns if types[c] != "Aggregate score"]
    out = mean[metric_cols].T
    out["Metric Type"] = types[metric_cols].to_numpy()
    return out


def mean_sd(records: pd.DataFrame) -> pd.DataFrame:
    """Mean and sd over seeds of every numeric column, per method (columns ``<col>`` and ``<col>_sd``)."""
    num = records.drop(columns=["seed"]).groupby("method", sort=False)
    mean, sd = num.mean(numeric_only=True), num.std(numeric_only=True, ddof=1)
    out = mean.copy()
    for c in sd.columns:
        out[f"{c}_sd"] = sd[c]
    return out


def metrics_json(records: pd.DataFrame, *, dataset: str, seeds: Sequence[int], simulated: bool = False) -> dict:
    """``metrics/integration.json`` in the issue's schema (means over seeds)."""
    m = mean_sd(records)
    methods = {}
    for name, r in m.iterrows():
        methods[str(name)] = {
            "scib_total": float(r["scib_total"]), "scib_bio": float(r["scib_bio"]),
            "scib_batch": float(r["scib_batch"]),
            "transfer_bal_acc": {d: float(r[f"transfer_bal_acc[{d}]"]) for d in DIRECTIONS},
            "tree_mutual_nn": float(r["tree_mutual_nn"]),
        }
    return {"dataset": dataset, "simulated": bool(simulated), "seeds": [int(s) for s in seeds], "methods": methods}


def detail_json(records: pd.DataFrame, *, extra: Mapping | None = None) -> dict:
    """Everything behind the summary: per method mean and sd of every score, and per-seed rows."""
    m = mean_sd(records)
    return {"mean_sd": {str(k): {c: float(v) for c, v in row.items() if pd.notna(v)} for k, row in m.iterrows()},
            "per_seed": records.to_dict(orient="records"), **dict(extra or {})}


def beats(records: pd.DataFrame, *, models: Sequence[str], baselines: Sequence[str],
          columns: Sequence[str] = ("scib_total", "transfer_bal_acc[human->mouse]", "transfer_bal_acc[mouse->human]",
                                    "tree_mutual_nn")) -> pd.DataFrame:
    """Which model beats which baseline on which score: mean difference over seeds and whether the
    model's worst seed still beats the baseline's best (a conservative "clearly better")."""
    rows = []
    for col in columns:
        for m in models:
            for b in baselines:
                a = records.loc[records["method"] == m, col].to_numpy()
                c = records.loc[records["method"] == b, col].to_numpy()
                if len(a) == 0 or len(c) == 0:
                    continue
                rows.append({"score": col, "model": m, "baseline": b, "difference": float(a.mean() - c.mean()),
                             "better_on_mean": bool(a.mean() > c.mean()), "clearly_better": bool(a.min() > c.max())})
    return pd.DataFrame(rows)
