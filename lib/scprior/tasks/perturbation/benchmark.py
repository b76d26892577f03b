"""The perturbation benchmark: every method over seeds, GEARS metrics per test subgroup with their
uncertainty (n test conditions, sd over seeds, bootstrap interval) and genetic-interaction recovery."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from scprior.data.perturbation_data import PerturbationData
from scprior.data.perturbation_splits import PerturbationSplit
from scprior.data.perturbations import CONTROL, canonical_condition, is_control, parse_condition
from scprior.models.perturbation_transformer import DeepConfig
from scprior.tasks.perturbation.gi import doubles_with_singles, gi_recovery
from scprior.tasks.perturbation.metrics import evaluate_conditions, summarise_subgroups
from scprior.tasks.perturbation.recipes import (
    BASELINES,
    DEEP,
    KNOWLEDGE,
    MIN_COVERAGE,
    KnowledgeInputs,
    MethodRun,
    run_methods,
)


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
            out[method] = {"reason": str(group["skipped"].iloc[0]), "coverage": None if pd.isna(cov) else float(cov),
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
              method_seeds: dict[str, Sequence[int]] | None = None,
              not_run: Mapping[str, str] | None = None) -> BenchmarkResult:
    """Every method on ``make_split(seed)`` for each seed: GEARS metrics per test subgroup and GI
    recovery; with ``models_dir`` each seed's split is saved there as JSON. ``method_seeds``
    limits a costly method to some seeds (e.g. ``{"gears": [1]}``; its ``n_seeds`` says so).
    ``not_run`` maps methods of ``methods`` that are deliberately not run (e.g. in a quick smoke
    run) to the reason, which :meth:`BenchmarkResult.skipped` reports with them."""
    not_run = dict(not_run or {})
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
        todo = [m for m in methods if m not in not_run
                and (method_seeds is None or m not in method_seeds or seed in method_seeds[m])]
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
        note_rows += [{"seed": seed, "method": m, "skipped": reason, "coverage": float("nan")}
                      for m, reason in not_run.items() if m in methods]
    result = BenchmarkResult(
        dataset=task.name, simulated=task.simulated, seeds=list(seeds),
        per_condition=pd.concat(cond_rows, ignore_index=True), subgroups=pd.concat(sub_rows, ignore_index=True),
        gi=pd.DataFrame(gi_rows), notes=pd.DataFrame(note_rows), splits=splits, first_run=first, dataset_key=task.key,
    )
    if models_dir is not None:
        result.save_splits(models_dir)
    return result
