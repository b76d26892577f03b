"""Verdicts of the perturbation benchmark: which baselines each model fails to beat, and whether the
best knowledge model reaches the best baseline (the issue's goal), as tables and plain sentences."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from scprior.tasks.perturbation.benchmark import BenchmarkResult
from scprior.tasks.perturbation.recipes import BASELINES, KNOWLEDGE_MODELS, MODELS


# ------------------------------------------------------------------------------ verdicts
def baseline_comparison(result: BenchmarkResult, *, metric: str = "pearson_delta_de",
                        higher_is_better: bool = True, models: Sequence[str] = MODELS) -> pd.DataFrame:
    """Per model (knowledge, deep, GEARS) and subgroup: its score, n test conditions, the best baseline
    and its score, and whether the model beats every baseline (means over seeds)."""
    unc = result.uncertainty((metric,), n_boot=200)
    table = unc.pivot(index="subgroup", columns="method", values=metric)
    n = unc.groupby("subgroup")["n_conditions"].max()
    present = [m for m in models if m in table.columns]
    base = [m for m in BASELINES if m in table.columns]
    rows = []
    for subgroup, row in table.iterrows():
        scores = row[base].dropna()
        if scores.empty:
            continue
        best = scores.idxmax() if higher_is_better else scores.idxmin()
        for m in present:
            if pd.isna(row[m]):
                continue
            beaten = [b for b in base if pd.notna(row[b]) and ((row[b] > row[m]) if higher_is_better else (row[b] < row[m]))]
            rows.append({"method": m, "subgroup": subgroup, "n_conditions": int(n.loc[subgroup]), metric: row[m],
                         "best_baseline": best, "best_baseline_score": row[best],
                         "beats_all_baselines": not beaten, "not_beaten": ", ".join(beaten)})
    return pd.DataFrame(rows)


def fail_to_beat_sentence(comparison: pd.DataFrame, *, metric: str = "pearson_delta_de") -> str:
    """One plain sentence per model naming the subgroups where it does not beat the best baseline."""
    lines = []
    for method, sub in comparison.groupby("method", sort=False):
        sub = sub[sub["subgroup"] != "all"] if (sub["subgroup"] != "all").any() else sub
        losses = sub[~sub["beats_all_baselines"]]
        if losses.empty:
            lines.append(f"{method} is not beaten by any baseline on {metric} in any subgroup.")
            continue
        parts = [f"{r.subgroup} (n={r.n_conditions}; best: {r.best_baseline} {r.best_baseline_score:.3f} vs "
                 f"{getattr(r, metric):.3f})" for r in losses.itertuples()]
        lines.append(f"{method} fails to beat the best baseline on {metric} in {len(losses)}/{len(sub)} "
                     f"subgroups: " + "; ".join(parts) + ".")
    return "\n".join(lines)


def knowledge_goal(comparison: pd.DataFrame, *, metric: str = "pearson_delta_de", min_conditions: int = 5,
                   models: Sequence[str] = KNOWLEDGE_MODELS) -> pd.DataFrame:
    """Per subgroup with >= ``min_conditions`` test conditions: the best model (of ``models``) and the
    best baseline, and whether the model reaches the baseline (``met``: model >= baseline)."""
    rows = []
    sub = comparison[comparison["method"].isin(models) & (comparison["subgroup"] != "all")]
    for subgroup, group in sub.groupby("subgroup", sort=False):
        top = group.loc[group[metric].idxmax()]
        rows.append({"subgroup": subgroup, "n_conditions": int(top["n_conditions"]), "best_model": top["method"],
                     "best_model_score": float(top[metric]), "best_baseline": top["best_baseline"],
                     "best_baseline_score": float(top["best_baseline_score"]),
                     "met": bool(top[metric] >= top["best_baseline_score"]),
                     "counted": bool(top["n_conditions"] >= min_conditions)})
    return pd.DataFrame(rows)


def knowledge_goal_sentence(goal: pd.DataFrame, *, dataset: str, metric: str = "pearson_delta_de",
                            min_conditions: int = 5) -> str:
    """Plain sentence: does the best knowledge model reach the best baseline in every subgroup with
    enough conditions? (``goal`` from :func:`knowledge_goal`.)"""
    counted = goal[goal["counted"]] if len(goal) else goal
    if counted.empty:
        return f"{dataset}: no test subgroup has {min_conditions} or more conditions; the goal cannot be judged."
    lost = counted[~counted["met"]]
    small = ", ".join(f"{r.subgroup} (n={r.n_conditions})" for r in goal[~goal["counted"]].itertuples())
    tail = f" Subgroups with fewer than {min_conditions} conditions are not judged: {small}." if small else ""
    if lost.empty:
        wins = "; ".join(f"{r.subgroup} (n={r.n_conditions}): {r.best_model} {r.best_model_score:.3f} >= "
                         f"{r.best_baseline} {r.best_baseline_score:.3f}" for r in counted.itertuples())
        return (f"{dataset}: the best knowledge model reaches the best baseline on {metric} in every subgroup with >= "
                f"{min_conditions} conditions ({wins}).{tail}")
    parts = "; ".join(f"{r.subgroup} (n={r.n_conditions}): best knowledge model {r.best_model} {r.best_model_score:.3f} < "
                      f"{r.best_baseline} {r.best_baseline_score:.3f}" for r in lost.itertuples())
    return (f"{dataset}: the goal is NOT met: no knowledge model reaches the best baseline on {metric} in "
            f"{len(lost)}/{len(counted)} subgroups with >= {min_conditions} conditions: {parts}.{tail}")
