"""Annotation metrics, the metrics file, and verdicts computed from the numbers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

METHOD_LABELS = {
    "genecompass": "GeneCompass (fine-tuned)", "genecompass_frozen": "GeneCompass (frozen encoder)",
    "celltypist": "CellTypist", "scanvi": "scANVI", "logistic_regression": "logistic regression (HVGs)",
    "knn_pca": "kNN on PCA", "saturn_lr": "SATURN embedding + LR",
}
MODELS = ("genecompass", "genecompass_frozen")
BASELINES = ("celltypist", "scanvi", "logistic_regression", "knn_pca", "saturn_lr")


def scores(y_true: Sequence[str], y_pred: Sequence[str]) -> dict:
    """accuracy, macro-F1 (over classes in truth or prediction: test classes never trained on
    count), per-class F1 (test classes) and the confusion matrix (rows truth, columns predicted)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    y_true = np.asarray(y_true).astype(str)
    y_pred = np.asarray(y_pred).astype(str)
    labels = sorted(set(y_true) | set(y_pred))
    f1 = f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    per_class = {c: float(v) for c, v in zip(labels, f1) if c in set(y_true)}
    return {"accuracy": float(accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
            "per_class_f1": per_class, "labels": labels,
            "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist()}


def summary(records: pd.DataFrame) -> pd.DataFrame:
    """Mean, sd and n over seeds per (task, method): columns accuracy/macro_f1 _mean/_sd, n."""
    g = records.groupby(["task", "method"], sort=False)
    out = g[["accuracy", "macro_f1"]].agg(["mean", "std", "count"])
    out.columns = [f"{a}_{b}".replace("_std", "_sd").replace("_count", "_n") for a, b in out.columns]
    out = out.drop(columns=["macro_f1_n"]).rename(columns={"accuracy_n": "n"})
    return out.fillna({"accuracy_sd": 0.0, "macro_f1_sd": 0.0}).reset_index()


def metrics_json(records: pd.DataFrame, ablations: pd.DataFrame | None, *, seeds: Sequence[int],
                 ablation_task: str | None = None, ablation_seeds: Sequence[int] = ()) -> dict:
    """``metrics/annotation.json`` in the issue's schema: seed means per task and method."""
    tasks: dict = {}
    for row in summary(records).itertuples():
        tasks.setdefault(row.task, {})[row.method] = {"accuracy": row.accuracy_mean, "macro_f1": row.macro_f1_mean}
    abl: dict = {}
    if ablations is not None and len(ablations):
        variants = {}
        for row in summary(ablations).itertuples():
            variants[row.method] = {"accuracy": row.accuracy_mean, "macro_f1": row.macro_f1_mean}
        abl = {"task": ablation_task, "seeds": list(ablation_seeds), "variants": variants}
    return {"simulated": False, "seeds": list(seeds), "tasks": tasks, "ablations": abl}


def verdicts(records: pd.DataFrame, *, models: Sequence[str] = MODELS, baselines: Sequence[str] = BASELINES,
             metric: str = "macro_f1") -> list[str]:
    """One sentence per task: the best GeneCompass variant against the best baseline on seed-mean
    ``metric``, saying who wins, by how much, and whether the gap exceeds one seed sd of either."""
    s = summary(records)
    out = []
    for task, t in s.groupby("task", sort=False):
        m = t[t["method"].isin(models)]
        b = t[t["method"].isin(baselines)]
        if m.empty or b.empty:
            continue
        bm = m.loc[m[f"{metric}_mean"].idxmax()]
        bb = b.loc[b[f"{metric}_mean"].idxmax()]
        gap = float(bm[f"{metric}_mean"] - bb[f"{metric}_mean"])
        noise = float(max(bm[f"{metric}_sd"], bb[f"{metric}_sd"]))
        name_m, name_b = METHOD_LABELS.get(bm.method, bm.method), METHOD_LABELS.get(bb.method, bb.method)
        vals = f"{bm[f'{metric}_mean']:.3f} vs {bb[f'{metric}_mean']:.3f}, n={int(bm.n)} seeds"
        if gap < 0:
            strength = "clearly" if -gap > noise else "within one seed sd"
            out.append(f"{task}: the transformer LOSES to the best baseline {name_b} on {metric} "
                       f"({name_m} {vals}; {strength}).")
        else:
            strength = "clearly" if gap > noise else "within one seed sd"
            out.append(f"{task}: {name_m} beats the best baseline {name_b} on {metric} ({vals}; {strength}).")
    return out


def ablation_verdict(ablations: pd.DataFrame, *, full: str = "all_priors", metric: str = "macro_f1") -> list[str]:
    """Sentences comparing each ablation variant with the full model (seed means)."""
    s = summary(ablations).set_index("method")
    if full not in s.index:
        return []
    ref = float(s.loc[full, f"{metric}_mean"])
    out = []
    for name, row in s.iterrows():
        if name == full:
            continue
        d = float(row[f"{metric}_mean"]) - ref
        word = "better than" if d > 0 else ("worse than" if d < 0 else "equal to")
        out.append(f"{name}: {metric} {row[f'{metric}_mean']:.3f} ({d:+.3f}, {word} all priors {ref:.3f}).")
    return out


def per_class_table(details: Mapping[str, Mapping[str, dict]]) -> pd.DataFrame:
    """Long table (task, method, class, f1) from {task: {method: scores}}."""
    rows = [(t, m, c, f) for t, ms in details.items() for m, sc in ms.items() for c, f in sc["per_class_f1"].items()]
    return pd.DataFrame(rows, columns=["task", "method", "cell_type", "f1"])
