"""Perturbation-prediction recipes: the method lists, the knowledge inputs and :func:`run_methods`,
which fits every baseline, knowledge model and deep model on one split (data:
:class:`scprior.data.perturbation_data.PerturbationData`; deep models:
:mod:`scprior.models.perturbation_transformer` and :mod:`scprior.models.gears_adapter`).

A method whose knowledge covers fewer than ``min_coverage`` of the test perturbations' genes is
reported as *skipped* with its coverage, never as a result (it would equal the training mean).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from scprior.data.perturbation_data import PerturbationData, perturbation_coverage, symbol_key
from scprior.data.perturbation_splits import PerturbationSplit
from scprior.data.perturbations import (
    canonical_condition,
    perturbed_genes,
)
from scprior.errors import ScpriorInputError
from scprior.knowledge.embeddings import GeneEmbeddings
from scprior.knowledge.go_features import go_feature_table, go_svd_embedding
from scprior.models.perturbation_transformer import (
    DeepConfig,
    PerturbationTransformer,
    token_symbols,
)
from scprior.tasks.perturbation.baselines import (
    Additive,
    Combined,
    KnowledgeRegressor,
    LinearGeneEmbedding,
    NoChange,
    ResidualKnowledge,
    TrainMean,
)

#: kept for notebooks and scripts written against the earlier names
PerturbationTask = PerturbationData
DeepPerturbationModel = PerturbationTransformer

BASELINES = ("no_change", "train_mean", "additive", "combined", "linear_pca", "linear_go", "linear_text",
             "ridge_go", "rf_go", "ridge_text", "rf_text")
KNOWLEDGE = ("residual_go", "residual_text")
DEEP = ("scgpt", "scgenept_text", "scgenept_go")
GEARS_METHODS = ("gears",)
#: the models every baseline is compared with (knowledge models, deep models, GEARS)
MODELS = KNOWLEDGE + DEEP + GEARS_METHODS
#: the models that use prior gene knowledge (the issue's goal is about the best of these)
KNOWLEDGE_MODELS = KNOWLEDGE + ("scgenept_text", "scgenept_go") + GEARS_METHODS
ALL_METHODS = BASELINES + KNOWLEDGE + DEEP + GEARS_METHODS
#: methods that depend on a gene lookup and are skipped below ``min_coverage``
COVERAGE_GATED = ("linear_pca", "linear_go", "linear_text", "ridge_go", "rf_go", "ridge_text", "rf_text",
                  "residual_go", "residual_text", "gears")
DEEP_LABELS = {"scgpt": "scGPT setting (no language embedding)",
               "scgenept_text": "scGenePT (MiniLM gene text)",
               "scgenept_go": "scGenePT-GO (GO annotation SVD)",
               "gears": "GEARS (cell-gears, GO graph from our tables)"}
MIN_COVERAGE = 0.5


# ------------------------------------------------------------------------------ knowledge inputs
@dataclass
class KnowledgeInputs:
    """Prior gene knowledge the methods may use (each may be missing)."""

    text: GeneEmbeddings | None = None
    go_annotations: pd.DataFrame | None = None
    go_dim: int = 64

    def go_embedding(self, genes: Sequence[str], *, seed: int = 0, dim: int | None = None) -> GeneEmbeddings | None:
        """GO annotation vectors for ``genes`` (:func:`scprior.knowledge.go_features.go_svd_embedding`)."""
        if self.go_annotations is None:
            return None
        return go_svd_embedding(self.go_annotations, genes, dim=dim or self.go_dim, seed=seed)

    def features(self, source: str, genes: Sequence[str], *, dim: int | None = None, seed: int = 0) -> pd.DataFrame | None:
        """Gene (upper-case symbol) x feature table from ``source`` (``go``: indicators, or their
        ``dim``-d SVD; ``text``: the text embedding, or its top-``dim`` principal components)."""
        if source == "go":
            if self.go_annotations is None:
                return None
            if dim is None:
                return go_feature_table(self.go_annotations, genes)
            emb = self.go_embedding(genes, seed=seed, dim=dim)
            return None if emb is None else pd.DataFrame(emb.matrix, index=[symbol_key(s) for s in emb.symbols])
        if source == "text":
            if self.text is None:
                return None
            rows, report = self.text.lookup(list(genes), missing="drop")
            if not len(rows):
                return None
            table = pd.DataFrame(rows, index=[symbol_key(g) for g in genes if g in report.matched])
            if dim is not None and table.shape[0] > dim and table.shape[1] > dim:
                centred = table.to_numpy() - table.to_numpy().mean(0)
                U, s, _ = np.linalg.svd(centred, full_matrices=False)
                table = pd.DataFrame(U[:, :dim] * s[:dim], index=table.index)
            return table
        raise ScpriorInputError(f"Unknown knowledge source {source!r}; use 'go' or 'text'.")


# ------------------------------------------------------------------------------ all methods
@dataclass
class MethodRun:
    """Predictions of every method on one split, with fit seconds and notes (coverage, best epoch)."""

    predictions: dict[str, pd.DataFrame] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    notes: dict[str, dict] = field(default_factory=dict)
    histories: dict[str, list] = field(default_factory=dict)


def _gate(run: MethodRun, method: str, coverage: float, min_coverage: float) -> bool:
    """Record a skip note and return False when ``coverage`` is below ``min_coverage``."""
    if coverage < min_coverage:
        run.notes[method] = {"skipped": f"coverage {coverage:.2f} of the test perturbations' genes is below "
                                        f"{min_coverage:.2f}", "coverage": coverage}
        return False
    return True


def run_methods(task: PerturbationData, split: PerturbationSplit, conditions: Sequence[str], *,
                knowledge: KnowledgeInputs, methods: Sequence[str] = BASELINES + KNOWLEDGE + DEEP, seed: int = 0,
                deep_config: DeepConfig | None = None, models_dir: str | Path | None = None,
                min_coverage: float = MIN_COVERAGE, gears_config=None) -> MethodRun:
    """Fit each method on ``split``'s training conditions and predict ``conditions`` (canonical).

    Methods whose knowledge input is missing, or covers fewer than ``min_coverage`` of the genes
    perturbed in the split's test conditions, are skipped with a note (never silently replaced).
    """
    run = MethodRun()
    train = task.pseudobulk(split.conditions("train"))
    val = task.pseudobulk(split.conditions("val")) if split.conditions("val") else None
    conditions = list(dict.fromkeys(canonical_condition(c) for c in conditions))
    test = [canonical_condition(c) for c in split.conditions("test")] or conditions
    pert_genes = perturbed_genes(task.conditions)
    cache: dict[tuple, pd.DataFrame | None] = {}

    def feats(source: str, dim: int | None = None) -> pd.DataFrame | None:
        if (source, dim) not in cache:
            cache[(source, dim)] = knowledge.features(source, pert_genes, dim=dim, seed=seed)
        return cache[(source, dim)]

    unknown = sorted(set(methods) - set(BASELINES + KNOWLEDGE + DEEP + GEARS_METHODS))
    if unknown:
        raise ScpriorInputError(f"Unknown method(s) {unknown}; known: {BASELINES + KNOWLEDGE + DEEP + GEARS_METHODS}")
    for method in methods:
        start = time.perf_counter()
        note: dict = {}
        if method in BASELINES or method in KNOWLEDGE:
            if method in ("no_change", "train_mean", "additive", "combined", "linear_pca"):
                model = {"no_change": NoChange, "train_mean": TrainMean, "additive": Additive, "combined": Combined,
                         "linear_pca": LinearGeneEmbedding}[method]()
                if method == "linear_pca":
                    coverage = perturbation_coverage(test, task.gene_index)
                    if not _gate(run, method, coverage, min_coverage):
                        continue
                model.fit(train, task.ctrl)
            else:
                kind, source = method.split("_")
                table = feats(source, 10 if kind == "linear" else None)
                if table is None or table.empty:
                    run.notes[method] = {"skipped": f"no {source} knowledge available", "coverage": 0.0}
                    continue
                if not _gate(run, method, perturbation_coverage(test, table.index), min_coverage):
                    continue
                if kind == "linear":
                    model = LinearGeneEmbedding(pert_embedding=table, label=source).fit(train, task.ctrl)
                elif kind == "residual":
                    model = ResidualKnowledge(table, label=source).fit(train, task.ctrl, val=val)
                    note["alpha_by_type"] = json.dumps(model.alpha_, sort_keys=True)
                else:
                    model = KnowledgeRegressor(table, kind=kind, label=source, seed=seed).fit(train, task.ctrl, val=val)
                    if kind == "ridge":
                        note["alpha"] = model.alpha_
            if hasattr(model, "coverage"):
                note["coverage"] = model.coverage(test)
            run.predictions[method] = model.predict(conditions)
        elif method in DEEP:
            language = None
            if method == "scgenept_text":
                language = knowledge.text
            elif method == "scgenept_go":
                language = knowledge.go_embedding(token_symbols(task), seed=seed)
            if method != "scgpt" and language is None:
                run.notes[method] = {"skipped": "no gene knowledge for its language embedding"}
                continue
            deep = PerturbationTransformer(task, language=language, config=deep_config, seed=seed, name=method)
            ckpt = Path(models_dir) / f"{task.key}_{method}_seed{seed}.pt" if models_dir else None
            result = deep.fit(split, checkpoint=ckpt)
            run.predictions[method] = deep.predict(conditions)
            note.update(best_epoch=result.best_epoch, epochs_run=result.epochs_run,
                        seconds_per_epoch=result.seconds / max(result.epochs_run, 1))
            if deep.language_report is not None:
                note["language_coverage"] = deep.language_report.coverage
            if deep.checkpoint_report is not None:
                note["scgpt_checkpoint"] = str(deep.checkpoint_report)
            run.histories[method] = result.history
        else:  # gears
            from scprior.models.gears_adapter import GearsConfig, GearsModel

            if knowledge.go_annotations is None:
                run.notes[method] = {"skipped": "no GO annotations for GEARS's gene2go"}
                continue
            gm = GearsModel(task, knowledge.go_annotations, config=gears_config or GearsConfig(), seed=seed)
            if not _gate(run, method, gm.coverage(test), min_coverage):
                continue
            gm.fit(split, weights=Path(models_dir) / f"{task.key}_gears_seed{seed}.pt" if models_dir else None)
            predictable = [c for c in conditions if gm.can_predict(c)]
            pred = gm.predict(predictable)
            missing = [c for c in conditions if c not in pred.index]
            if missing:  # genes outside GEARS's GO graph: the training mean, and said so
                note["not_predictable"] = len(missing)
                pred = pd.concat([pred, TrainMean().fit(train, task.ctrl).predict(missing)])
            run.predictions[method] = pred.loc[conditions]
            note.update(coverage=gm.coverage(test), **gm.notes)
        run.seconds[method] = time.perf_counter() - start
        run.notes[method] = note
    return run
