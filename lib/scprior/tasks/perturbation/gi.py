"""Genetic interactions of double perturbations: measured vs predicted.

Norman et al. (and GEARS's ``get_GI_params``) describe a double ``A+B`` by regressing its
expression change on the two single changes, ``delta_AB ~ c1 delta_A + c2 delta_B`` (no intercept):
the *magnitude* ``sqrt(c1^2 + c2^2)`` is large for synergy and small for suppression. GEARS fits a
Theil-Sen regression; we use ordinary least squares (same model, much faster on CPU).
We also score the *non-additive residual* ``delta_AB - delta_A - delta_B``.

Recovery of a method = how well the GI computed from its predictions (of the two singles and the
double) matches the GI computed from the observed data: Spearman correlation of magnitudes across
doubles, and the mean Pearson (over genes) of predicted vs observed non-additive residuals.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from scprior.data.perturbations import CONTROL, canonical_condition, parse_condition
from scprior.tasks.perturbation.metrics import pearson


def gi_coefficients(delta_a: np.ndarray, delta_b: np.ndarray, delta_ab: np.ndarray) -> dict[str, float]:
    """c1, c2, magnitude and relative non-additivity of one double (all gene-wise deltas)."""
    X = np.stack([delta_a, delta_b], axis=1).astype(np.float64)
    y = np.asarray(delta_ab, dtype=np.float64)
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    additive = delta_a + delta_b
    denom = float(np.linalg.norm(additive))
    return {"c1": float(coef[0]), "c2": float(coef[1]), "magnitude": float(np.hypot(coef[0], coef[1])),
            "non_additivity": float(np.linalg.norm(y - additive) / denom) if denom > 0 else 0.0}


def gi_table(profiles: Mapping[str, np.ndarray], ctrl: np.ndarray, doubles: Sequence[str]) -> pd.DataFrame:
    """GI coefficients of each double from mean profiles (canonical name -> profile)."""
    rows = []
    for double in doubles:
        a, b = parse_condition(double)
        pa, pb = profiles[f"{a}+{CONTROL}"], profiles[f"{b}+{CONTROL}"]
        pab = profiles[canonical_condition(double)]
        rows.append({"condition": canonical_condition(double),
                     **gi_coefficients(pa - ctrl, pb - ctrl, pab - ctrl)})
    return pd.DataFrame(rows).set_index("condition")


def residuals(profiles: Mapping[str, np.ndarray], ctrl: np.ndarray, double: str) -> np.ndarray:
    """Non-additive residual ``delta_AB - delta_A - delta_B`` of one double (genes,)."""
    a, b = parse_condition(double)
    return (profiles[canonical_condition(double)] - ctrl) - (profiles[f"{a}+{CONTROL}"] - ctrl) - (profiles[f"{b}+{CONTROL}"] - ctrl)


def gi_recovery(predicted: Mapping[str, np.ndarray], observed: Mapping[str, np.ndarray], ctrl: np.ndarray,
                doubles: Sequence[str]) -> dict[str, float]:
    """How well predicted profiles reproduce the observed GIs of ``doubles``.

    ``magnitude_spearman``: Spearman of GI magnitudes across doubles (0 if undefined);
    ``residual_pearson``: mean over doubles of Pearson(predicted residual, observed residual).
    """
    doubles = list(doubles)
    if not doubles:
        return {"magnitude_spearman": float("nan"), "residual_pearson": float("nan"), "n_doubles": 0}
    pred = gi_table(predicted, ctrl, doubles)
    obs = gi_table(observed, ctrl, doubles)
    constant = np.ptp(pred["magnitude"].to_numpy()) < 1e-12 or np.ptp(obs["magnitude"].to_numpy()) < 1e-12
    rho = np.nan if constant or len(doubles) < 3 else spearmanr(pred["magnitude"], obs["magnitude"])[0]
    rho = 0.0 if not np.isfinite(rho) else float(rho)
    res = [pearson(residuals(predicted, ctrl, d), residuals(observed, ctrl, d)) for d in doubles]
    return {"magnitude_spearman": rho, "residual_pearson": float(np.mean(res)), "n_doubles": len(doubles)}


def doubles_with_singles(conditions: Sequence[str]) -> list[str]:
    """Canonical doubles among ``conditions`` whose two singles are also among them."""
    canon = {canonical_condition(c) for c in conditions}
    out = []
    for c in sorted(canon):
        genes = parse_condition(c)
        if len(genes) == 2 and all(f"{g}+{CONTROL}" in canon for g in genes):
            out.append(c)
    return out


def gi_magnitude_table(predictions: Mapping[str, pd.DataFrame], observed: Mapping[str, np.ndarray], ctrl: np.ndarray,
                       doubles: Sequence[str], gi_types: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Long table: method, condition, predicted and observed GI magnitude (and simulated GI type)."""
    obs = gi_table(observed, ctrl, doubles)["magnitude"]
    rows = []
    for method, pred in predictions.items():
        profiles = {c: pred.loc[c].to_numpy() for c in pred.index}
        mag = gi_table(profiles, ctrl, doubles)["magnitude"]
        for d in doubles:
            row = {"method": method, "condition": d, "predicted": mag.loc[d], "observed": obs.loc[d]}
            if gi_types is not None:
                row["gi_type"] = gi_types.get(d, "unknown")
            rows.append(row)
    return pd.DataFrame(rows)
