"""Perturbation-prediction recipes (scGenePT's task, evaluated the GEARS way): methods, benchmark, verdicts.

:func:`run_methods` fits every baseline, knowledge model and deep model on one split (data:
:class:`scprior.data.perturbation_data.PerturbationData`; deep models:
:mod:`scprior.models.perturbation_transformer` and :mod:`scprior.models.gears_adapter`);
:func:`benchmark` runs seeds, GEARS metrics per subgroup with their uncertainty (n test
conditions, sd over seeds, bootstrap interval) and genetic-interaction recovery; the verdict
functions turn those numbers into sentences.

A method whose knowledge covers fewer than ``min_coverage`` of the test perturbations' genes is
reported as *skipped* with its coverage, never as a result (it would equal the training mean).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from scprior.data.perturbation_data import PerturbationData, perturbation_coverage, symbol_key
from scprior.data.perturbation_splits import PerturbationSplit
from scprior.data.perturbations import (
    CONTROL,
    canonical_condition,
    is_control,
    parse_condition,
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
from scprior.tasks.perturbation_baselines import (
    Additive,
    Combined,
    KnowledgeRegressor,
    LinearGeneEmbedding,
    NoChange,
    ResidualKnowledge,
    TrainMean,
)
from scprior.tasks.perturbation_gi import doubles_with_singles, gi_recovery
from scprior.tasks.perturbation_metrics import evaluate_conditions, summarise_subgroups

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


# ------------------------------------------------------------------------------ uncertainty
def subgroup_uncertainty(per_condition: pd.DataFrame, metrics: Sequence[str], *, n_boot: int = 1000,
                         seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Per method, subgroup (and ``all``) and metric: mean over seeds of the subgroup mean, its sd over
    seeds, a bootstrap interval and the number of test conditions.

    ``per_condition``: long table (seed, method, condition, subgroup, metrics). The interval
    resamples each seed's test conditions with replacement (``n_boot`` times, seeded) and
    averages over seeds: it shows how much the score depends on which few conditions are tested.
    ``n_conditions``: test conditions per seed (the median over seeds).
    """
    rng = np.random.default_rng(seed)
    rows = []
    table = pd.concat([per_condition, per_condition.assign(subgroup="all")], ignore_index=True)
    table = table[table["subgroup"].notna()]
    lo_q, hi_q = (1 - level) / 2, 1 - (1 - level) / 2
    for (method, subgroup), group in table.groupby(["method", "subgroup"], sort=False):
        by_seed = [g for _, g in group.groupby("seed")]
        row = {"method": method, "subgroup": subgroup, "n_seeds": len(by_seed),
               "n_conditions": int(np.median([len(g) for g in by_seed]))}
        for metric in metrics:
            values = [g[metric].to_numpy(dtype=np.float64) for g in by_seed]
            means = np.array([v.mean() for v in values])
            boot = np.mean([v[rng.integers(0, len(v), (n_boot, len(v)))].mean(1) for v in values], axis=0)
            row.update({metric: float(means.mean()), f"{metric}_sd": float(means.std(ddof=1)) if len(means) > 1 else 0.0,
                        f"{metric}_ci_low": float(np.quantile(boot, lo_q)),
                        f"{metric}_ci_high": float(np.quantile(boot, hi_q))})
        rows.append(row)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------ benchmark
@dataclass
class BenchmarkResult:
    """Long tables of one dataset's benchmark over seeds."""

    dataset: str
    simulated: bool
    seeds: list[int]
    per_condition: pd.DataFrame  # seed, method, condition, subgroup, metrics...
    subgroups: pd.DataFrame  # seed, method, subgroup, metrics...
    gi: pd.DataFrame  # seed, method, magnitude_spearman, residual_pearson, n_doubles
    notes: pd.DataFrame  # seed, method, note columns
    splits: dict[int, PerturbationSplit]
    first_run: MethodRun

    def summary(self, metrics: Sequence[str] = ("pearson_delta", "pearson_delta_de", "mse_de")) -> pd.DataFrame:
        """Mean over seeds: rows (method, subgroup), columns ``metrics``."""
        return self.subgroups.groupby(["method", "subgroup"])[list(metrics)].mean()

    def uncertainty(self, metrics: Sequence[str] = ("pearson_delta", "pearson_delta_de", "mse_de"), *,
                    n_boot: int = 1000) -> pd.DataFrame:
        """:func:`subgroup_uncertainty` of this benchmark."""
        return subgroup_uncertainty(self.per_condition, metrics, n_boot=n_boot)

    def skipped(self) -> dict[str, dict]:
        """Methods skipped on any seed: the reason and the coverage (mean over the skipped seeds)."""
        if "skipped" not in self.notes:
            return {}
        out = {}
        for method, group in self.notes[self.notes["skipped"].notna()].groupby("method"):
            cov = group["coverage"].mean() if "coverage" in group else float("nan")
            out[method] = {"reason": str(group["skipped"].iloc[0]), "coverage": float(cov),
                           "seeds_skipped": int(len(group))}
        return out

    def metrics_json(self, metrics: Sequence[str] = ("pearson_delta", "pearson_delta_de", "mse_de")) -> dict:
        """``{"dataset", "simulated", "seeds", "methods": {name: {subgroup: {metric, metric_sd,
        metric_ci: [low, high], n_conditions}}}, "skipped": {name: {reason, coverage}}}``."""
        table = self.uncertainty(metrics)
        methods: dict = {}
        for row in table.to_dict("records"):
            entry = {"n_conditions": row["n_conditions"], "n_seeds": row["n_seeds"]}
            for m in metrics:
                entry.update({m: row[m], f"{m}_sd": row[f"{m}_sd"], f"{m}_ci": [row[f"{m}_ci_low"], row[f"{m}_ci_high"]]})
            methods.setdefault(row["method"], {})[row["subgroup"]] = entry
        return {"dataset": self.dataset, "simulated": self.simulated, "seeds": list(self.seeds), "methods": methods,
                "skipped": self.skipped()}

    def save_splits(self, folder: str | Path) -> list[Path]:
        """Each seed's split (assignment and subgroups) as JSON, as GEARS saves its split pickles."""
        from scprior.data.perturbation_splits import save_split

        return [save_split(split, Path(folder) / f"{self.dataset_key}_split_seed{seed}.json")
                for seed, split in self.splits.items()]

    dataset_key: str = "gears"


def benchmark(task: PerturbationData, make_split: Callable[[int], PerturbationSplit], seeds: Sequence[int], *,
              knowledge: KnowledgeInputs, methods: Sequence[str] = BASELINES + KNOWLEDGE + DEEP,
              deep_config: DeepConfig | None = None, models_dir: str | Path | None = None,
              min_coverage: float = MIN_COVERAGE, gears_config=None,
              method_seeds: dict[str, Sequence[int]] | None = None) -> BenchmarkResult:
    """Every method on ``make_split(seed)`` for each seed: GEARS metrics per test subgroup and GI
    recovery; with ``models_dir`` each seed's split is saved there as JSON. ``method_seeds``
    limits a costly method to some seeds (e.g. ``{"gears": [1]}``; its ``n_seeds`` says so)."""
    observed = task.observed_profiles()
    all_conditions = [c for c in task.conditions if not is_control(c)]
    cond_rows, sub_rows, gi_rows, note_rows = [], [], [], []
    splits, first = {}, None
    for seed in seeds:
        split = make_split(seed)
        splits[seed] = split
        test = split.conditions("test")
        doubles = [d for d in doubles_with_singles(all_conditions) if d in {canonical_condition(c) for c in test}]
        needed = list(test) + [f"{g}+{CONTROL}" for d in doubles for g in parse_condition(d)]
        todo = [m for m in methods if method_seeds is None or m not in method_seeds or seed in method_seeds[m]]
        run = run_methods(task, split, needed, knowledge=knowledge, methods=todo, seed=seed,
                          deep_config=deep_config, models_dir=models_dir, min_coverage=min_coverage,
                          gears_config=gears_config)
        first = first or run
        for method, pred in run.predictions.items():
            per = evaluate_conditions(pred, task.adata, test, truth=task.truth, ctrl=task.ctrl)
            per["subgroup"] = [split.subgroup_of(c) for c in per.index]
            cond_rows.append(per.reset_index().assign(seed=seed, method=method))
            summ = summarise_subgroups(per.drop(columns="subgroup"), split.test_subgroup)
            sub_rows.append(summ.rename_axis("subgroup").reset_index().assign(seed=seed, method=method))
            if doubles:
                profiles = {c: pred.loc[c].to_numpy() for c in pred.index}
                gi_rows.append({"seed": seed, "method": method, **gi_recovery(profiles, observed, task.ctrl, doubles)})
        for method, note in run.notes.items():
            note_rows.append({"seed": seed, "method": method, "fit_seconds": run.seconds.get(method), **note})
    result = BenchmarkResult(
        dataset=task.name, simulated=task.simulated, seeds=list(seeds),
        per_condition=pd.concat(cond_rows, ignore_index=True), subgroups=pd.concat(sub_rows, ignore_index=True),
        gi=pd.DataFrame(gi_rows), notes=pd.DataFrame(note_rows), splits=splits, first_run=first, dataset_key=task.key,
    )
    if models_dir is not None:
        result.save_splits(models_dir)
    return result


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
