"""One call per dataset for notebook 03: genes, held-out TFs, baselines, GeneCompass deletion, scores.

Order of work, so nothing scored leaks into anything trained: (1) genes and candidate TFs from the
data and truths, (2) the held-out TFs drawn (pancreas TFs first where present), (3) the GRN prior
rebuilt without their edges and the model pretrained on the cells (self-supervised), (4) every
method scores exactly the held-out TFs x the same candidate genes, (5) each truth is scored.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import pandas as pd

from scprior.tasks.grn.deletion import DeletionSettings
from scprior.tasks.grn.evaluation import (
    BaselineConfig,
    GrnDataset,
    GrnResult,
    candidate_tfs,
    evaluate,
    run_baselines,
    select_genes,
)
from scprior.tasks.grn.genecompass_deletion import (
    GrnModelSettings,
    deletion_scores,
    pretrain_for_grn,
)
from scprior.tasks.grn.holdout import choose_heldout_tfs

DELETION = "genecompass_deletion"


def _make(cls, values: Mapping | None):
    values = dict(values or {})
    known = {f.name for f in fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"{cls.__name__} has no setting(s) {sorted(unknown)}; known: {sorted(known)}.")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


@dataclass
class GrnBenchmarkConfig:
    """The notebook's settings (validated: unknown keys fail)."""

    n_hvg: int = 800
    min_cells: int = 10
    min_targets: int = 5
    n_heldout_tfs: int = 40
    include_tfs: tuple[str, ...] = ()
    baselines: BaselineConfig = field(default_factory=BaselineConfig)
    model: GrnModelSettings | None = field(default_factory=GrnModelSettings)
    deletion: DeletionSettings = field(default_factory=DeletionSettings)
    seed: int = 0

    @classmethod
    def from_params(cls, *, n_hvg: int, min_cells: int, min_targets: int, n_heldout_tfs: int,
                    include_tfs: Sequence[str], baselines: Mapping, genecompass: Mapping | None,
                    deletion: Mapping, seed: int, device: str = "auto", n_workers: int | None = None) -> GrnBenchmarkConfig:
        from scprior.runtime import pick_device

        base = _make(BaselineConfig, {**baselines, "seed": seed, **({"n_workers": n_workers} if n_workers else {})})
        return cls(n_hvg=n_hvg, min_cells=min_cells, min_targets=min_targets, n_heldout_tfs=n_heldout_tfs,
                   include_tfs=tuple(include_tfs), baselines=base,
                   model=_make(GrnModelSettings, genecompass) if genecompass else None,
                   deletion=_make(DeletionSettings, {**deletion, "seed": seed, "device": pick_device(device)}), seed=seed)


@dataclass
class GrnRun:
    """Everything one dataset's benchmark produced."""

    result: GrnResult
    genes: list[str]
    candidates: list[str]
    heldout: list[str]
    scores: dict[str, pd.DataFrame]
    deletion_groups: dict[str, pd.DataFrame]
    seconds: dict[str, float]
    train: dict


def run_benchmark(dataset: GrnDataset, regulon: pd.DataFrame, knowledge_dir: str | os.PathLike,
                  cfg: GrnBenchmarkConfig, *, embeddings: Mapping[str, object] | None = None,
                  genes: Sequence[str] | None = None, models_dir: str | os.PathLike | None = None,
                  progress: bool = True) -> GrnRun:
    """Run every method on ``dataset`` and score it against each of its truths."""
    genes = list(genes) if genes is not None else select_genes(dataset.adata, dataset.truths, n_hvg=cfg.n_hvg,
                                                               min_cells=cfg.min_cells, min_targets=cfg.min_targets,
                                                               extra=cfg.include_tfs)
    candidates = candidate_tfs(dataset.truths, genes, cfg.min_targets)
    heldout = choose_heldout_tfs(candidates, cfg.n_heldout_tfs, seed=cfg.seed, include=cfg.include_tfs)
    if progress:
        print(f"{dataset.label}: {dataset.adata.n_obs} cells, {len(genes)} genes, {len(candidates)} TFs with "
              f">= {cfg.min_targets} true targets, {len(heldout)} held out and scored")
    scores, seconds = run_baselines(dataset.adata, genes, heldout, candidates, cfg.baselines, embeddings, progress)
    groups: dict[str, pd.DataFrame] = {}
    train: dict = {}
    if cfg.model is not None:
        t0 = time.perf_counter()
        folder = Path(models_dir) / dataset.name if models_dir is not None else None
        ckpt = folder / "genecompass.pt" if folder is not None else None
        gc, res, prior = pretrain_for_grn(dataset.adata, genes, heldout, regulon, knowledge_dir, cfg.model,
                                          seed=cfg.seed, checkpoint=ckpt, progress=progress)
        train = {"best_epoch": res.best_epoch, "epochs_run": res.epochs_run, "seconds": res.seconds,
                 "prior_edges": int(len(prior)), "regulon_edges": int(len(regulon)),
                 "val_loss": [h.get("val_loss") for h in res.history]}
        seconds["genecompass_pretrain"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        groups, _long = deletion_scores(gc, dataset.adata, genes, heldout, cfg.deletion,
                                        out_dir=folder / "deletion" if folder is not None else None, progress=progress)
        scores = {DELETION: groups["all"], **scores}
        seconds[DELETION] = time.perf_counter() - t0
        if progress:
            print(f"  GeneCompass pretraining {seconds['genecompass_pretrain']:.0f} s (best epoch {res.best_epoch}), "
                  f"deletion {seconds[DELETION]:.0f} s")
    result = evaluate(dataset, scores, heldout, genes, seed=cfg.seed)
    return GrnRun(result, genes, candidates, heldout, scores, groups, seconds, train)


def per_group_table(run: GrnRun, truth: str, metric: str = "auprc_ratio") -> pd.DataFrame:
    """Deletion scored per cell type (shifts averaged over that type's cells) vs all cells: mean ``metric``."""
    from scprior.data.grn_truth import restrict_truth, targets_by_tf
    from scprior.tasks.grn.metrics import score_matrix

    if not run.deletion_groups or truth not in run.result.tfs:
        return pd.DataFrame()
    tfs = run.result.tfs[truth]
    targets = targets_by_tf(restrict_truth(run.result.dataset.truths[truth], run.genes, tfs))
    rows = []
    n_cells = run.result.dataset.adata.obs["cell_type"].value_counts()
    for group, mat in run.deletion_groups.items():
        per_tf = score_matrix(mat.loc[tfs], targets, tfs)
        rows.append({"group": group, "cells": int(n_cells.sum() if group == "all" else n_cells.get(group, 0)),
                     metric: float(per_tf[metric].mean()), "n_tfs": int(per_tf[metric].notna().sum())})
    return pd.DataFrame(rows).set_index("group").sort_values(metric, ascending=False)
