"""Training CPA on one split and scoring every method the way CPA does.

:func:`train_cpa` fits :class:`scprior.models.cpa.CPA` on a split's ``train`` cells through the one
training loop (best epoch on a seeded validation slice of the training cells, never on ``ood``
cells). :func:`predict_condition` encodes the condition's own **vehicle** cells (training cells),
swaps in the drug, dose and covariates, samples negative-binomial counts and returns the mean and
variance of their log-normalised expression. :func:`run_split` scores models and baselines on a
split's ``ood`` conditions; :func:`benchmark` repeats it over seeds.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import torch

from scprior.models.cpa import CPA, CPAConfig, cpa_loss
from scprior.models.training import TrainConfig, TrainResult, fit
from scprior.runtime import seed_everything
from scprior.tasks.drug_response.baselines import BASELINES, baseline_predictions, moments
from scprior.tasks.drug_response.data import DrugTask
from scprior.tasks.drug_response.metrics import condition_scores


@dataclass
class ModelSpec:
    """One CPA variant: its drug embedding and whether the decoder reads knowledge gene embeddings."""

    name: str
    drug_embedding: str = "learned"
    use_gene_embeddings: bool = True


@dataclass
class CPASettings:
    """Model size and training budget (``params.yaml`` ``notebooks.04_drug_dose_response.model``)."""

    latent_dim: int = 32
    encoder_hidden: list[int] = field(default_factory=lambda: [128])
    decoder_hidden: list[int] = field(default_factory=lambda: [128])
    adversary_hidden: int = 64
    adversary_weight: float = 1.0
    fingerprint_hidden: int = 64
    dropout: float = 0.1
    lr: float = 1e-3
    weight_decay: float = 1e-6
    batch_size: int = 128
    max_epochs: int = 40
    patience: int = 5
    val_fraction: float = 0.1
    n_samples: int = 1          # NB samples drawn per vehicle cell when predicting a condition

    @classmethod
    def from_dict(cls, spec: Mapping | None) -> CPASettings:
        """Validated build from a params mapping; unknown keys are an error."""
        spec = dict(spec or {})
        unknown = set(spec) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"Unknown CPA settings {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}.")
        return cls(**spec)


def _batch(task: DrugTask, idx: np.ndarray) -> tuple[torch.Tensor, ...]:
    return (torch.as_tensor(task.counts[idx]), torch.as_tensor(task.drug[idx], dtype=torch.long),
            torch.as_tensor(task.dose[idx], dtype=torch.float32), torch.as_tensor(task.covariates[idx], dtype=torch.long))


def _as_dict(batch) -> dict[str, torch.Tensor]:
    counts, drug, dose, cov = batch
    return {"counts": counts, "drug": drug, "dose": dose, "covariates": cov}


def _loss(model: CPA, batch, epoch: int):
    return cpa_loss(model, _as_dict(batch), epoch)


def train_cpa(task: DrugTask, train_idx: np.ndarray, spec: ModelSpec, settings: CPASettings, *, seed: int,
              gene_embeddings: np.ndarray | None = None, fingerprints: np.ndarray | None = None,
              progress: bool = False, device: str = "auto") -> tuple[CPA, TrainResult]:
    """Fit one CPA variant on cells ``train_idx``; 10% of them (seeded) decide the best epoch."""
    from scprior.models.training import tensor_loader

    rng = seed_everything(seed)
    train_idx = np.asarray(train_idx)
    perm = rng.permutation(train_idx)
    n_val = max(1, int(round(settings.val_fraction * len(perm))))
    val, fit_idx = perm[:n_val], perm[n_val:]
    treated = task.dose[fit_idx] > 0
    logd = np.log10(task.dose[fit_idx][treated]) if treated.any() else np.zeros(1)
    cfg = CPAConfig(n_genes=task.n_genes, n_drugs=len(task.drugs), covariate_levels=[len(v) for v in task.covariate_levels],
                    latent_dim=settings.latent_dim, encoder_hidden=list(settings.encoder_hidden),
                    decoder_hidden=list(settings.decoder_hidden), adversary_hidden=settings.adversary_hidden,
                    adversary_weight=settings.adversary_weight, drug_embedding=spec.drug_embedding,
                    fingerprint_hidden=settings.fingerprint_hidden, use_gene_embeddings=spec.use_gene_embeddings,
                    dropout=settings.dropout, target_sum=task.target_sum)
    model = CPA(cfg, drug_features=fingerprints if spec.drug_embedding == "fingerprint" else None,
                gene_embeddings=gene_embeddings if spec.use_gene_embeddings else None,
                log_dose_center=float(np.median(logd)), log_dose_scale=float(max(np.std(logd), 0.5)))
    train_loader = tensor_loader(*_batch(task, fit_idx), batch_size=settings.batch_size, shuffle=True, seed=seed)
    val_loader = tensor_loader(*_batch(task, val), batch_size=max(settings.batch_size, 512))
    result = fit(model, _loss, train_loader, val_loader,
                 TrainConfig(max_epochs=settings.max_epochs, lr=settings.lr, weight_decay=settings.weight_decay,
                             patience=settings.patience, seed=seed, device=device, progress=progress,
                             desc=f"{spec.name} seed {seed}"))
    model.cpu()
    return model, result


def sample_log_expression(mu: torch.Tensor, theta: torch.Tensor, *, target_sum: float, generator: torch.Generator,
                          n_samples: int = 1) -> np.ndarray:
    """Negative-binomial (Gamma-Poisson) count samples of ``mu`` (B, G), log-normalised like the data."""
    out = []
    for _ in range(n_samples):
        rate = torch._standard_gamma(theta.expand_as(mu).contiguous(), generator=generator) * (mu / theta)
        counts = torch.poisson(rate, generator=generator)
        lib = counts.sum(1, keepdim=True).clamp_min(1.0)
        out.append(torch.log1p(counts / lib * target_sum))
    return torch.cat(out).numpy()


def predict_condition(model: CPA, task: DrugTask, vehicle_cells: np.ndarray, condition: Mapping, *, seed: int,
                      n_samples: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Predicted per-gene mean and variance of log-normalised expression for one condition."""
    counts, _, _, cov = _batch(task, vehicle_cells)
    n = len(vehicle_cells)
    drug = torch.full((n,), int(condition["drug"]), dtype=torch.long)
    dose = torch.full((n,), float(condition["dose"]), dtype=torch.float32)
    cov = torch.as_tensor(np.tile(np.asarray(condition["covariates"], dtype=np.int64), (n, 1)))
    out = model.predict(counts, drug, dose, cov)
    gen = torch.Generator().manual_seed(int(seed))
    x = sample_log_expression(out["mu"], out["theta"], target_sum=task.target_sum, generator=gen, n_samples=n_samples)
    return moments(x)


@dataclass
class SplitRun:
    """One split and seed: the per-condition scores, trained models and timings."""

    scores: pd.DataFrame
    models: dict[str, CPA]
    train_results: dict[str, TrainResult]
    conditions: pd.DataFrame
    seconds: dict[str, float]
    predictions: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]


def run_split(task: DrugTask, split_key: str, specs: Sequence[ModelSpec], settings: CPASettings, *, seed: int,
              dataset: str, gene_embeddings: np.ndarray | None = None, fingerprints: np.ndarray | None = None,
              similarity: np.ndarray | None = None, baselines: bool = True, min_cells: int = 5,
              progress: bool = False, split_name: str | None = None) -> SplitRun:
    """Train every model of ``specs`` on the split's train cells; score them and the baselines on
    every ``ood`` condition (vehicle cells of the condition's covariates are the model's input).
    ``split_name`` labels the rows (default: ``split_key``)."""
    labels = task.split(split_key)
    train = labels == "train"
    conds = task.conditions(np.flatnonzero(labels == "ood"), min_cells=min_cells)
    rows, preds, models, results, seconds = [], {}, {}, {}, {}
    truth = {c.category: moments(task.logx[c.cells]) for c in conds.itertuples()}
    if baselines:
        for c in conds.itertuples():
            for method, (m, v) in baseline_predictions(task, train, c._asdict(), similarity=similarity).items():
                preds.setdefault(method, {})[c.category] = (m, v)
    for spec in specs:
        t0 = time.perf_counter()
        model, res = train_cpa(task, np.flatnonzero(train), spec, settings, seed=seed, gene_embeddings=gene_embeddings,
                               fingerprints=fingerprints, progress=progress)
        seconds[spec.name] = time.perf_counter() - t0
        models[spec.name], results[spec.name] = model, res
        for k, c in enumerate(conds.itertuples()):
            veh = np.flatnonzero(train & task.control & task.cov_mask(c.covariates))
            preds.setdefault(spec.name, {})[c.category] = predict_condition(
                model, task, veh, c._asdict(), seed=seed * 1000 + k, n_samples=settings.n_samples)
    for method, by_cat in preds.items():
        for c in conds.itertuples():
            if c.category not in by_cat:
                continue
            m, v = by_cat[c.category]
            tm, tv = truth[c.category]
            rows.append({"dataset": dataset, "split": split_name or split_key, "method": method, "seed": seed,
                         "condition": c.category, "drug": c.drug_name, "dose": c.dose, "covariates": task.cov_label(c.covariates),
                         "n_cells": c.n_cells, **condition_scores(tm, tv, m, v, task.de_genes.get(c.category))})
    return SplitRun(pd.DataFrame(rows), models, results, conds, seconds, preds)


def benchmark(task: DrugTask, split_key: str, specs: Sequence[ModelSpec], settings: CPASettings, seeds: Sequence[int],
              *, dataset: str, **kwargs) -> tuple[pd.DataFrame, dict[int, SplitRun]]:
    """:func:`run_split` for every seed. Baselines are deterministic: scored once (first seed) and
    repeated for the other seeds so every method has the same number of seeds."""
    runs: dict[int, SplitRun] = {}
    frames = []
    for k, seed in enumerate(seeds):
        run = run_split(task, split_key, specs, settings, seed=int(seed), dataset=dataset, baselines=(k == 0), **kwargs)
        runs[int(seed)] = run
        frames.append(run.scores)
    scores = pd.concat(frames, ignore_index=True)
    base = scores[scores["method"].isin(BASELINES)]
    extra = [base.assign(seed=int(s)) for s in list(seeds)[1:]]
    scores = pd.concat([scores, *extra], ignore_index=True)
    return scores, runs


def settings_dict(settings: CPASettings) -> dict:
    """Plain dict of the settings (for the metrics file and notebook tables)."""
    return asdict(settings)


def dose_curve_tables(task: DrugTask, models: Mapping[str, CPA], train: np.ndarray, *, drugs: Sequence[str],
                      n_genes: int = 2, covariates: tuple[int, ...] = (0,), grid: np.ndarray | None = None,
                      seed: int = 0) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Observed and predicted dose-response of each drug's top DE genes (at its highest dose).

    Observed: mean and sd of log expression over all cells of each dose (vehicle drawn at the
    lowest dose / 10). Predicted: each model at ``grid`` doses (default 25 log-spaced over the
    observed range), plus the ``interpolation`` baseline from training cells.
    """
    from scprior.tasks.drug_response.baselines import interpolation

    cov = tuple(int(c) for c in covariates)
    in_cov = task.cov_mask(cov)
    treated_doses = np.unique(task.dose[~task.control])
    grid = np.logspace(np.log10(treated_doses.min()), np.log10(treated_doses.max()), 25) if grid is None else np.asarray(grid)
    vehicle_at = treated_doses.min() / 10
    obs_rows, pred_rows = [], {name: [] for name in [*models, "interpolation"]}
    veh = np.flatnonzero(train & task.control & in_cov)
    for drug_name in drugs:
        k = task.drugs.index(drug_name)
        top = task.dose[(task.drug == k) & ~task.control & in_cov].max()
        cat = task.category[np.flatnonzero((task.drug == k) & np.isclose(task.dose, top) & in_cov)[0]]
        genes = list(task.de_genes.get(cat, np.arange(n_genes))[:n_genes])
        for dose in [0.0, *treated_doses]:
            sel = in_cov & (task.control if dose == 0 else (~task.control & (task.drug == k) & np.isclose(task.dose, dose)))
            if not sel.any():
                continue
            x = task.logx[sel]
            for g in genes:
                obs_rows.append({"drug": drug_name, "gene": task.genes[g], "dose": dose if dose > 0 else vehicle_at,
                                 "mean": float(x[:, g].mean()), "sd": float(x[:, g].std())})
        for j, dose in enumerate(grid):
            cond = {"drug": k, "dose": float(dose), "covariates": cov}
            for name, model in models.items():
                m, _ = predict_condition(model, task, veh, cond, seed=seed + j)
                pred_rows[name] += [{"drug": drug_name, "gene": task.genes[g], "dose": dose, "mean": float(m[g])} for g in genes]
            base = interpolation(task, train, cov, k, float(dose))
            if base is not None:
                pred_rows["interpolation"] += [{"drug": drug_name, "gene": task.genes[g], "dose": dose,
                                                "mean": float(base[0][g])} for g in genes]
    return pd.DataFrame(obs_rows), {k: pd.DataFrame(v) for k, v in pred_rows.items() if v}
