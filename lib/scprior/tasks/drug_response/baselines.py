"""Simple baselines for drug response, reported beside every model.

Each returns, for one evaluated condition (covariates, drug, dose), the predicted per-gene **mean**
and **variance** of log-normalised expression, computed from training cells only (``train`` is the
boolean mask of cells a method may look at), or ``None`` where it does not apply:

- ``vehicle``: the condition's own vehicle cells (no drug effect);
- ``nearest_dose``: the same drug and covariates at the seen dose closest in log dose;
- ``interpolation``: per gene, linear in log10 dose between the two seen doses that bracket the
  target (constant beyond the seen range);
- ``covariate_shift``: the vehicle cells of these covariates plus the mean shift (drug minus
  vehicle, for mean and variance) of the same drug and dose in the *other* covariate groups: the
  held-out-patient baseline;
- ``tanimoto_nearest``: for an unseen drug, the seen drug most similar by fingerprint (Tanimoto)
  at the same dose and covariates.
"""

from __future__ import annotations

import numpy as np

from scprior.tasks.drug_response.data import DrugTask

Moments = tuple[np.ndarray, np.ndarray]
BASELINES = ("vehicle", "nearest_dose", "interpolation", "covariate_shift", "tanimoto_nearest")


def moments(x: np.ndarray) -> Moments:
    """Per-gene mean and (population) variance of cells ``x`` (n, G)."""
    return x.mean(0), x.var(0)


def _cells(task: DrugTask, train: np.ndarray, cov: tuple[int, ...], drug: int | None, dose: float | None) -> np.ndarray:
    mask = train & task.cov_mask(cov)
    if drug is None:
        mask &= task.control
    else:
        mask &= ~task.control & (task.drug == drug)
        if dose is not None:
            mask &= np.isclose(task.dose, dose)
    return np.flatnonzero(mask)


def vehicle(task: DrugTask, train: np.ndarray, cov: tuple[int, ...], drug: int, dose: float) -> Moments | None:
    """Vehicle cells of the same covariates."""
    cells = _cells(task, train, cov, None, None)
    return moments(task.logx[cells]) if len(cells) else None


def seen_doses(task: DrugTask, train: np.ndarray, cov: tuple[int, ...], drug: int) -> np.ndarray:
    """Doses of ``drug`` with training cells in these covariates (sorted)."""
    cells = _cells(task, train, cov, drug, None)
    return np.unique(task.dose[cells])


def nearest_dose(task: DrugTask, train: np.ndarray, cov: tuple[int, ...], drug: int, dose: float) -> Moments | None:
    """Same drug at the seen dose nearest in log10 dose (the lower one on a tie)."""
    doses = seen_doses(task, train, cov, drug)
    if not len(doses):
        return None
    best = doses[np.argmin(np.abs(np.log10(doses) - np.log10(dose)))]
    return moments(task.logx[_cells(task, train, cov, drug, best)])


def interpolation(task: DrugTask, train: np.ndarray, cov: tuple[int, ...], drug: int, dose: float) -> Moments | None:
    """Per-gene linear interpolation in log10 dose between the bracketing seen doses."""
    doses = seen_doses(task, train, cov, drug)
    if not len(doses):
        return None
    logd, target = np.log10(doses), np.log10(dose)
    if target <= logd[0] or target >= logd[-1] or len(doses) == 1:
        return nearest_dose(task, train, cov, drug, dose)
    hi = int(np.searchsorted(logd, target))
    lo = hi - 1
    w = (target - logd[lo]) / (logd[hi] - logd[lo])
    m_lo, v_lo = moments(task.logx[_cells(task, train, cov, drug, doses[lo])])
    m_hi, v_hi = moments(task.logx[_cells(task, train, cov, drug, doses[hi])])
    return (1 - w) * m_lo + w * m_hi, (1 - w) * v_lo + w * v_hi


def covariate_shift(task: DrugTask, train: np.ndarray, cov: tuple[int, ...], drug: int, dose: float) -> Moments | None:
    """Own vehicle cells + the other covariate groups' mean (drug - vehicle) shift at this dose."""
    own = vehicle(task, train, cov, drug, dose)
    if own is None:
        return None
    shifts_m, shifts_v = [], []
    for other in {tuple(int(c) for c in row) for row in task.covariates}:
        if other == tuple(cov):
            continue
        treated = _cells(task, train, other, drug, dose)
        ctrl = _cells(task, train, other, None, None)
        if len(treated) and len(ctrl):
            mt, vt = moments(task.logx[treated])
            mc, vc = moments(task.logx[ctrl])
            shifts_m.append(mt - mc)
            shifts_v.append(vt - vc)
    if not shifts_m:
        return None
    return own[0] + np.mean(shifts_m, 0), np.maximum(own[1] + np.mean(shifts_v, 0), 0.0)


def tanimoto_nearest(task: DrugTask, train: np.ndarray, cov: tuple[int, ...], drug: int, dose: float,
                     *, similarity: np.ndarray | None = None) -> Moments | None:
    """The most fingerprint-similar drug with training cells at this dose and covariates."""
    if similarity is None:
        return None
    order = np.argsort(-similarity[drug], kind="stable")
    for other in order:
        if other == drug:
            continue
        cells = _cells(task, train, cov, int(other), dose)
        if len(cells):
            return moments(task.logx[cells])
    return None


def baseline_predictions(task: DrugTask, train: np.ndarray, condition: dict, *,
                         similarity: np.ndarray | None = None) -> dict[str, Moments]:
    """Every applicable baseline for one condition (a row of :meth:`DrugTask.conditions`)."""
    cov, drug, dose = condition["covariates"], condition["drug"], condition["dose"]
    out: dict[str, Moments] = {}
    for name, fn in (("vehicle", vehicle), ("nearest_dose", nearest_dose), ("interpolation", interpolation),
                     ("covariate_shift", covariate_shift)):
        pred = fn(task, train, cov, drug, dose)
        if pred is not None:
            out[name] = pred
    if not len(seen_doses(task, train, cov, drug)):  # an unseen drug: fingerprint neighbour
        pred = tanimoto_nearest(task, train, cov, drug, dose, similarity=similarity)
        if pred is not None:
            out["tanimoto_nearest"] = pred
    return out
