"""GEARS's perturbation metrics, per condition and per test subgroup.

For one perturbation GEARS compares the *mean* predicted profile with the mean observed profile of
its cells (``gears/inference.py``: ``compute_metrics``, ``deeper_analysis``,
``non_dropout_analysis``). With ``ctrl`` the mean of all control cells, ``de`` the condition's
top-20 genes of ``uns['rank_genes_groups_cov_all']`` and ``nd`` its ``uns['top_non_dropout_de_20']``:

- ``mse``, ``pearson``: over all genes; ``mse_de``, ``pearson_de``: over ``de``;
- ``pearson_delta``: Pearson of ``pred - ctrl`` and ``truth - ctrl`` over all genes;
  ``pearson_delta_de``: the same over ``de``;
- ``frac_correct_direction_de``: share of ``de`` genes where sign(pred - ctrl) equals
  sign(truth - ctrl) (GEARS's ``frac_correct_direction_20``);
- ``mse_top20_de_non_dropout``, ``pearson_delta_top20_de_non_dropout``,
  ``frac_opposite_direction_top20_non_dropout``: over ``nd``;
- ``pearson_delta_de_no_target``: ``pearson_delta_de`` with the perturbed genes removed from
  ``de`` (a CRISPRa/i target moves trivially; this asks about everything downstream).

A Pearson that is undefined (a constant vector, e.g. the no-change prediction's delta) counts as
0, as in GEARS. Subgroup scores are means over the subgroup's conditions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import anndata as ad
import numpy as np
import pandas as pd

from scprior.data.gears import DE_KEY, NON_DROPOUT_KEY, condition_means, de_gene_positions
from scprior.data.perturbations import CONTROL, is_control, parse_condition

HEADLINE = ("pearson_delta", "pearson_delta_de", "mse_de")
METRICS = ("mse", "pearson", "mse_de", "pearson_de", "pearson_delta", "pearson_delta_de",
           "frac_correct_direction_de", "pearson_delta_de_no_target", "mse_top20_de_non_dropout",
           "pearson_delta_top20_de_non_dropout", "frac_opposite_direction_top20_non_dropout")


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation; 0 where undefined (fewer than 2 values or a constant vector), as GEARS."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.size < 2:
        return 0.0
    da, db = a - a.mean(), b - b.mean()
    tol = 1e-10 * max(float(np.abs(a).max()), float(np.abs(b).max()), 1e-300)
    if np.abs(da).max() <= tol or np.abs(db).max() <= tol:  # constant up to rounding
        return 0.0
    denom = np.sqrt((da * da).sum() * (db * db).sum())
    if denom == 0 or not np.isfinite(denom):
        return 0.0
    return float(np.clip((da * db).sum() / denom, -1.0, 1.0))


def mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared error."""
    return float(np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2))


def condition_metrics(pred: np.ndarray, truth: np.ndarray, ctrl: np.ndarray, *, de_idx: Sequence[int],
                      non_dropout_idx: Sequence[int] | None = None,
                      target_idx: Sequence[int] = ()) -> dict[str, float]:
    """All GEARS metrics (module docstring) of one condition's mean prediction ``pred`` (genes,)."""
    pred, truth, ctrl = (np.asarray(v, dtype=np.float64) for v in (pred, truth, ctrl))
    de = np.asarray(de_idx, dtype=int)
    dp, dt = pred - ctrl, truth - ctrl
    out = {
        "mse": mse(pred, truth),
        "pearson": pearson(pred, truth),
        "mse_de": mse(pred[de], truth[de]),
        "pearson_de": pearson(pred[de], truth[de]),
        "pearson_delta": pearson(dp, dt),
        "pearson_delta_de": pearson(dp[de], dt[de]),
        "frac_correct_direction_de": float(np.mean(np.sign(dp[de]) == np.sign(dt[de]))),
    }
    keep = np.asarray([i for i in de if i not in set(int(t) for t in target_idx)], dtype=int)
    out["pearson_delta_de_no_target"] = pearson(dp[keep], dt[keep])
    nd = np.asarray(non_dropout_idx if non_dropout_idx is not None else de, dtype=int)
    out["mse_top20_de_non_dropout"] = mse(pred[nd], truth[nd])
    out["pearson_delta_top20_de_non_dropout"] = pearson(dp[nd], dt[nd])
    out["frac_opposite_direction_top20_non_dropout"] = float(np.mean(np.abs(np.sign(dp[nd]) - np.sign(dt[nd])) == 2))
    return out


def observed_means(adata: ad.AnnData) -> pd.DataFrame:
    """Mean ``X`` per raw condition label (rows) x ``var_names``."""
    return condition_means(adata, column="condition")


def control_mean(adata: ad.AnnData) -> np.ndarray:
    """Mean ``X`` of all control cells (GEARS's ``ctrl``)."""
    mask = (adata.obs["condition"].astype(str) == CONTROL).to_numpy()
    x = adata.X[mask]
    return np.asarray(x.mean(axis=0)).ravel().astype(np.float64)


def evaluate_conditions(predictions: Mapping[str, np.ndarray] | pd.DataFrame, adata: ad.AnnData,
                        conditions: Sequence[str], *, truth: pd.DataFrame | None = None,
                        ctrl: np.ndarray | None = None) -> pd.DataFrame:
    """Metrics of each raw condition label in ``conditions`` (one row each, columns :data:`METRICS`).

    ``predictions`` maps a label (or its canonical name) to the predicted mean profile over
    ``adata.var_names``. ``truth`` (default: observed means) and ``ctrl`` (default: control mean)
    can be passed to avoid recomputing them.
    """
    from scprior.data.perturbations import canonical_condition

    truth = observed_means(adata) if truth is None else truth
    ctrl = control_mean(adata) if ctrl is None else ctrl
    gene_pos = {g: i for i, g in enumerate(adata.var["gene_name"].astype(str))}
    name_of = dict(zip(adata.obs["condition"].astype(str), adata.obs["condition_name"].astype(str)))
    preds = predictions if isinstance(predictions, Mapping) else {k: predictions.loc[k].to_numpy() for k in predictions.index}
    rows = []
    for cond in conditions:
        if is_control(cond):
            continue
        key = cond if cond in preds else canonical_condition(cond)
        if key not in preds:
            raise KeyError(f"No prediction for condition {cond!r}.")
        cname = name_of[cond]
        de = de_gene_positions(adata, cname, key=DE_KEY)
        nd = de_gene_positions(adata, cname, key=NON_DROPOUT_KEY) if NON_DROPOUT_KEY in adata.uns else None
        targets = [gene_pos[g] for g in parse_condition(cond) if g in gene_pos]
        row = condition_metrics(np.asarray(preds[key]), truth.loc[cond].to_numpy(), ctrl,
                                de_idx=de, non_dropout_idx=nd, target_idx=targets)
        rows.append({"condition": cond, **row})
    return pd.DataFrame(rows).set_index("condition")


def summarise_subgroups(per_condition: pd.DataFrame, subgroups: Mapping[str, Sequence[str]], *,
                        include_all: bool = True) -> pd.DataFrame:
    """Mean of each metric per subgroup (rows: subgroup names, plus ``all`` test conditions)."""
    out = {}
    for name, labels in subgroups.items():
        labels = [c for c in labels if c in per_condition.index]
        if labels:
            out[name] = per_condition.loc[labels].mean()
    if include_all and len(per_condition):
        out["all"] = per_condition.mean()
    return pd.DataFrame(out).T
