"""CPA's drug-response metrics (``cpa/train.py`` ``evaluate_r2``), per condition and aggregated.

For one evaluated condition, with ``m``/``v`` the per-gene mean/variance of the true cells'
log-normalised expression and ``m'``/``v'`` a method's prediction:

- ``r2_mean``: ``r2_score(m, m')`` over all genes;
- ``r2_mean_de``: the same over the condition's top-50 DE genes (``uns['rank_genes_groups_cov']``);
- ``r2_var``: ``r2_score(v, v')`` over all genes.

As in CPA, a method's score for a split is the mean over the split's conditions; here also over
seeds, with the spread across seeds kept beside it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from sklearn.metrics import r2_score

METRICS = ("r2_mean", "r2_mean_de", "r2_var")


def condition_scores(true_mean: np.ndarray, true_var: np.ndarray, pred_mean: np.ndarray, pred_var: np.ndarray,
                     de: np.ndarray | None) -> dict[str, float]:
    """The three R2 scores of one condition (``de``: gene positions; empty -> NaN)."""
    out = {"r2_mean": float(r2_score(true_mean, pred_mean)), "r2_var": float(r2_score(true_var, pred_var))}
    out["r2_mean_de"] = float(r2_score(true_mean[de], pred_mean[de])) if de is not None and len(de) > 1 else float("nan")
    return out


def summarise(scores: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, split, method): mean over conditions per seed, then mean / sd / n over seeds.

    ``scores`` has one row per (dataset, split, method, seed, condition) with the :data:`METRICS`.
    Returns columns ``{metric}``, ``{metric}_sd``, ``n_seeds``, ``n_conditions``.
    """
    per_seed = scores.groupby(["dataset", "split", "method", "seed"], sort=False)[list(METRICS)].mean().reset_index()
    agg = per_seed.groupby(["dataset", "split", "method"], sort=False)[list(METRICS)]
    out = agg.mean()
    sd = agg.std(ddof=1).fillna(0.0).add_suffix("_sd")
    n = per_seed.groupby(["dataset", "split", "method"], sort=False)["seed"].nunique().rename("n_seeds")
    nc = scores.groupby(["dataset", "split", "method"], sort=False)["condition"].nunique().rename("n_conditions")
    return pd.concat([out, sd, n, nc], axis=1).reset_index()


def metrics_json(summary: pd.DataFrame, simulated: Mapping[str, bool]) -> dict:
    """``{"datasets": {name: {"simulated": bool, "splits": {split: {method: {r2_mean, r2_mean_de, r2_var}}}}}}``."""
    out: dict = {"datasets": {}}
    for (dataset, split), sub in summary.groupby(["dataset", "split"], sort=False):
        block = out["datasets"].setdefault(dataset, {"simulated": bool(simulated[dataset]), "splits": {}})
        block["splits"][split] = {r.method: {m: float(getattr(r, m)) for m in METRICS} for r in sub.itertuples()}
    return out


def losses_to_baselines(summary: pd.DataFrame, models: list[str], baselines: list[str],
                        metric: str = "r2_mean_de") -> pd.DataFrame:
    """Per dataset, split and model: the best baseline on ``metric``, whether the model beats it,
    the margin, the model's sd over seeds and whether the margin exceeds it (``clear``)."""
    rows = []
    for (dataset, split), sub in summary.groupby(["dataset", "split"], sort=False):
        base = sub[sub["method"].isin(baselines)].dropna(subset=[metric])
        if base.empty:
            continue
        best = base.loc[base[metric].idxmax()]
        for r in sub[sub["method"].isin(models)].itertuples():
            score = getattr(r, metric)
            spread = float(getattr(r, f"{metric}_sd", 0.0) or 0.0)
            rows.append({"dataset": dataset, "split": split, "method": r.method, metric: score,
                         "best_baseline": best["method"], "best_baseline_score": best[metric],
                         "beats_best_baseline": bool(score > best[metric]),
                         "margin": float(score - best[metric]), "seed_sd": spread,
                         "clear": bool(abs(score - best[metric]) > spread)})
    return pd.DataFrame(rows)


def verdict_sentences(comparison: pd.DataFrame, metric: str = "r2_mean_de") -> str:
    """Plain sentences, computed from ``comparison``: where each model loses to the best baseline."""
    if comparison.empty:
        return "No model was compared with a baseline."
    lines = []
    for (dataset, method), sub in comparison.groupby(["dataset", "method"], sort=False):
        lost = sub[~sub["beats_best_baseline"]]
        won = sub[sub["beats_best_baseline"]]
        unclear = [f"{r.split} (+{r.margin:.3f} vs seed sd {r.seed_sd:.3f})" for r in won.itertuples()
                   if "clear" in sub and not r.clear]
        caveat = f"; the win is within the seeds' spread in: {', '.join(unclear)}" if unclear else ""
        if lost.empty:
            lines.append(f"{dataset}: {method} beats the best baseline on {metric} in every split "
                         f"({', '.join(sub['split'])}){caveat}.")
            continue
        parts = [f"{r.split} ({r.best_baseline} {r.best_baseline_score:.3f} vs {getattr(r, metric):.3f})"
                 for r in lost.itertuples()]
        lines.append(f"{dataset}: {method} loses to a baseline on {metric} in {len(lost)}/{len(sub)} splits: "
                     + "; ".join(parts) + caveat + ".")
    return "\n".join(lines)


def ablation_sentence(summary: pd.DataFrame, with_knowledge: str, without: str, metric: str = "r2_mean_de") -> str:
    """Whether the knowledge-informed gene side helps, per dataset and split (means over seeds,
    with the seeds' spread), computed."""
    lines = []
    for (dataset, split), sub in summary.groupby(["dataset", "split"], sort=False):
        a = sub[sub["method"] == with_knowledge]
        b = sub[sub["method"] == without]
        if a.empty or b.empty:
            continue
        da, db = float(a[metric].iloc[0]), float(b[metric].iloc[0])
        if min(int(a["n_seeds"].iloc[0]), int(b["n_seeds"].iloc[0])) < 2:
            lines.append(f"{dataset} / {split}: {with_knowledge} {da:.3f} vs {without} {db:.3f} from one seed only: "
                         "no spread to judge the knowledge gene embeddings by.")
            continue
        sa, sb = float(a[f"{metric}_sd"].iloc[0]), float(b[f"{metric}_sd"].iloc[0])
        diff = da - db
        tag = "helps" if diff > max(sa, sb) else ("hurts" if diff < -max(sa, sb) else "makes no clear difference (within the seeds' spread)")
        lines.append(f"{dataset} / {split}: knowledge gene embeddings {tag}: {with_knowledge} {da:.3f} "
                     f"(sd {sa:.3f}) vs {without} {db:.3f} (sd {sb:.3f}).")
    return "\n".join(lines) if lines else "No knowledge ablation was run."
