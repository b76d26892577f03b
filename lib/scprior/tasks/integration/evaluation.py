"""Scoring every method of every seed, and the summaries written to ``metrics/integration.json``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import anndata as ad
import pandas as pd

from scprior.tasks.integration.data import SPECIES
from scprior.tasks.integration.methods import MethodRun
from scprior.tasks.integration.metrics import (
    TRANSFER_PROTOCOL,
    celltype_centroids,
    donor_batch_scores,
    mutual_nn_score,
    numba_env_matches_its_threads,
    scib_benchmark,
    scib_scores,
    transfer_both_ways,
    within_species_knn,
)

PAIR = SPECIES  # label transfer and the tree compare these two
DIRECTIONS = (f"{PAIR[0]}->{PAIR[1]}", f"{PAIR[1]}->{PAIR[0]}")
#: the two label-transfer settings: record-column suffix -> metrics.json key, description
TRANSFER_SETTINGS = {
    "": ("transfer_acc", "target labels unseen: no method saw a label of the target species in training "
                         "(label-using models retrained per direction with the source's labels only); the verdict setting"),
    "_both": ("transfer_acc_both_species_labels", "SATURN's setting: SATURN/Unify metric-learn on the "
                                                   "species-prefixed labels of both species (label-free methods: same embedding)"),
}


def with_embeddings(obs: pd.DataFrame, runs: Mapping[str, MethodRun]) -> ad.AnnData:
    """An AnnData of ``obs`` with ``obsm['X_<method>']`` for every run."""
    out = ad.AnnData(obs=obs[["cell_type", "species", "batch"]].copy())
    for name, run in runs.items():
        out.obsm[f"X_{name}"] = run.embedding
    return out


def evaluate_seed(obs: pd.DataFrame, runs: Mapping[str, MethodRun], *, seed: int, min_cells: int = 5, donor_batch: bool = True, kbet: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score all ``runs`` (must include ``pca``, the unintegrated reference) of one seed.

    Returns (one row per method with the summary scores, the full scib results table).
    """
    table = _scib_table(obs, runs, kbet=kbet)
    donor = _donor_table(obs, runs, kbet=kbet) if donor_batch else None
    return _rows(runs, seed, table, donor, _extras(obs, runs, seed=seed, min_cells=min_cells)), _seeded(table, seed)


def _scib_table(obs: pd.DataFrame, runs: Mapping[str, MethodRun], *, kbet: bool) -> pd.DataFrame:
    """The scib-metrics Benchmarker table of one seed's runs (bio on cell type, batch on species)."""
    if "pca" not in runs:
        raise ValueError("evaluate_seed needs the 'pca' run: it is the pre-integration reference.")
    adata = with_embeddings(obs, runs)
    table, _ = scib_benchmark(adata, [f"X_{m}" for m in runs], label_key="cell_type", batch_key="species",
                              pre_key="X_pca", kbet=kbet)
    return table


def _donor_table(obs: pd.DataFrame, runs: Mapping[str, MethodRun], *, kbet: bool) -> pd.DataFrame:
    """Batch correction across donors within each species, per run (:func:`.metrics.donor_batch_scores`)."""
    return donor_batch_scores(with_embeddings(obs, runs), [f"X_{m}" for m in runs], pre_key="X_pca", kbet=kbet)


def _extras(obs: pd.DataFrame, runs: Mapping[str, MethodRun], *, seed: int, min_cells: int) -> dict[str, dict]:
    """Per run: label transfer (both settings), within-species kNN and the tree score."""
    labels = obs["cell_type"].astype(str).to_numpy()
    species = obs["species"].astype(str).to_numpy()
    out = {}
    for m, run in runs.items():
        both = transfer_both_ways(run.embedding, labels, species, pair=PAIR, seed=seed)
        unseen = (both if not run.unseen else transfer_both_ways(
            {d: run.transfer_embedding(d) for d in DIRECTIONS}, labels, species, pair=PAIR, seed=seed))
        knn = within_species_knn(run.embedding, labels, species, seed=seed)
        tree, _ = mutual_nn_score(celltype_centroids(run.embedding, labels, species, min_cells=min_cells), pair=PAIR)
        row = {"tree_mutual_nn": tree}
        for s_name, v in knn.items():
            row[f"knn_bal_acc[{s_name}]"] = v
        for d in DIRECTIONS:
            for suffix, tr in (("", unseen), ("_both", both)):
                row[f"transfer_acc{suffix}[{d}]"] = tr[d]["accuracy"]
                row[f"transfer_bal_acc{suffix}[{d}]"] = tr[d]["balanced_accuracy"]
            row[f"transfer_dummy[{d}]"] = both[d]["dummy"]
            row[f"transfer_ceiling[{d}]"] = both[d]["ceiling"]
        out[m] = row
    return out


def _rows(runs: Mapping[str, MethodRun], seed: int, table: pd.DataFrame, donor: pd.DataFrame | None,
          extras: Mapping[str, dict]) -> pd.DataFrame:
    scores = scib_scores(table)
    rows = []
    for m, run in runs.items():
        key = f"X_{m}"
        row = {"seed": seed, "method": m, "scib_total": scores.loc[key, "Total"],
               "scib_bio": scores.loc[key, "Bio conservation"], "scib_batch": scores.loc[key, "Batch correction"],
               "tree_mutual_nn": extras[m]["tree_mutual_nn"], "seconds": run.seconds}
        if donor is not None:
            row["scib_batch_donor"] = donor.loc[key, "mean"]
        row.update({k: v for k, v in extras[m].items() if k != "tree_mutual_nn"})
        rows.append(row)
    return pd.DataFrame(rows)


def _seeded(table: pd.DataFrame, seed: int) -> pd.DataFrame:
    table = table.copy()
    table.insert(0, "seed", seed)
    return table


def _evaluate_seed_worker(obs, runs, seed: int, threads: int | None, kw) -> tuple[pd.DataFrame, pd.DataFrame]:
    """In a fresh joblib process: every thread pool limited (:func:`.methods.fixed_threads`) first."""
    from scprior.tasks.integration.methods import fixed_threads

    fixed_threads(threads)
    return evaluate_seed(obs, runs, seed=seed, **kw)


def _part_worker(part: str, obs, runs: Mapping[int, Mapping[str, MethodRun]], threads: int | None, kw) -> dict:
    """One part of the scoring for every seed, in one process: ``"scib"`` (the Benchmarker tables)
    or ``"donor"`` (donor batch tables, then transfer, kNN and tree). JAX compiles scib-metrics'
    functions once per process and array shape; every seed has the same shapes, so one process
    compiles them once for all seeds (a first call costs ~3x a repeat on the main table, ~20x on
    the per-species donor tables)."""
    from scprior.tasks.integration.methods import fixed_threads

    fixed_threads(threads)
    if part == "scib":
        return {s: _scib_table(obs, r, kbet=kw["kbet"]) for s, r in runs.items()}
    return {s: (_donor_table(obs, r, kbet=kw["kbet"]),
                _extras(obs, r, seed=int(s), min_cells=kw["min_cells"])) for s, r in runs.items()}


def _call_worker(call: Callable[[], Any], threads: int | None) -> Any:
    """An ``alongside`` call of :func:`evaluate_seeds_alongside` in a joblib process (thread pools limited)."""
    from scprior.tasks.integration.methods import fixed_threads

    fixed_threads(threads)
    return call()


def evaluate_seeds(obs: pd.DataFrame, runs: Mapping[int, Mapping[str, MethodRun]], *, n_jobs: int = 1,
                   threads: int | None = 1, **kw) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    """:func:`evaluate_seed` for every seed (parallel processes if ``n_jobs`` > 1, each limited to
    ``threads`` threads; a serial run uses the caller's thread settings); returns (all records,
    the per-seed scib tables). With donor batch scores and ``n_jobs`` > 1, two processes split
    the work by part rather than by seed (:func:`_part_worker`): the same scores, less compiling."""
    records, tables, _ = evaluate_seeds_alongside(obs, runs, {}, n_jobs=n_jobs, threads=threads, **kw)
    return records, tables


def evaluate_seeds_alongside(obs: pd.DataFrame, runs: Mapping[int, Mapping[str, MethodRun]],
                             alongside: Mapping[str, Callable[[], Any]], *, n_jobs: int = 1,
                             threads: int | None = 1, **kw) -> tuple[pd.DataFrame, list[pd.DataFrame], dict[str, Any]]:
    """:func:`evaluate_seeds`, and every ``alongside`` call (name -> picklable call without
    arguments, e.g. a ``functools.partial`` of a UMAP for the figures) in the same processes.

    The two scoring parts take unequal times (``benchmarks/scoring_balance.py``); in parallel, the
    calls queue behind them and run on whichever process is free first. Each call is one job, and a
    process compiles what a call needs on its first such call (numba for UMAP), so one call for all
    UMAPs compiles once instead of in both processes. A call's result must not depend on the process
    it runs in (seeded, single-threaded work). Returns (records, per-seed scib tables, name -> result)."""
    seeds = list(runs)
    numba_env_matches_its_threads()  # and so for umap imported later in this process (the UMAP figures)
    kw = {"min_cells": 5, "donor_batch": True, "kbet": False, **kw}
    names, calls = list(alongside), list(alongside.values())
    if n_jobs == 1 or len(seeds) == 1:
        out = [evaluate_seed(obs, runs[s], seed=int(s), **kw) for s in seeds]
        extra = [c() for c in calls]
    elif kw["donor_batch"]:
        from joblib import Parallel, delayed

        runs = {int(s): runs[s] for s in seeds}
        jobs = [delayed(_part_worker)(p, obs, runs, threads, kw) for p in ("scib", "donor")]
        done = Parallel(n_jobs=2, batch_size=1)(jobs + [delayed(_call_worker)(c, threads) for c in calls])
        (tables, rest), extra = done[:2], done[2:]
        out = [(_rows(runs[s], s, tables[s], rest[s][0], rest[s][1]), _seeded(tables[s], s)) for s in runs]
    else:
        from joblib import Parallel, delayed

        jobs = [delayed(_evaluate_seed_worker)(obs, runs[s], int(s), threads, kw) for s in seeds]
        done = Parallel(n_jobs=min(n_jobs, len(seeds)), batch_size=1)(
            jobs + [delayed(_call_worker)(c, threads) for c in calls])
        out, extra = done[:len(seeds)], done[len(seeds):]
    return pd.concat([r for r, _ in out], ignore_index=True), [t for _, t in out], dict(zip(names, extra))


def mean_scib_results(tables: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Per-seed scib tables (from :func:`evaluate_seed`) averaged, in the layout scib-metrics keeps
    its results (rows = metrics, columns = embeddings + ``Metric Type``) for its table plot."""
    types = tables[0].loc["Metric Type"].drop("seed")
    num = pd.concat([scib_scores(t.drop(columns="seed")) for t in tables])
    mean = num.groupby(level=0, sort=False).mean()
    metric_cols = [c for c in mean.columns if types[c] != "Aggregate score"]
    out = mean[metric_cols].T
    out["Metric Type"] = types[metric_cols].to_numpy()
    return out


def mean_sd(records: pd.DataFrame) -> pd.DataFrame:
    """Mean and sd over seeds of every numeric column, per method (columns ``<col>`` and ``<col>_sd``),
    and ``n_seeds`` (how many seeds the method ran: ablations may run on fewer, sd NaN for one)."""
    num = records.drop(columns=["seed"]).groupby("method", sort=False)
    mean, sd = num.mean(numeric_only=True), num.std(numeric_only=True, ddof=1)
    out = mean.copy()
    for c in sd.columns:
        out[f"{c}_sd"] = sd[c]
    out["n_seeds"] = num.size()
    return out


def metrics_json(records: pd.DataFrame, *, dataset: str, seeds: Sequence[int], simulated: bool = False) -> dict:
    """``metrics/integration.json`` in the issue's schema (means over seeds)."""
    m = mean_sd(records)
    methods = {}
    for name, r in m.iterrows():
        methods[str(name)] = {
            "scib_total": float(r["scib_total"]), "scib_bio": float(r["scib_bio"]),
            "scib_batch": float(r["scib_batch"]),
            "tree_mutual_nn": float(r["tree_mutual_nn"]), "n_seeds": int(r["n_seeds"]),
        }
        for suffix, (key, _) in TRANSFER_SETTINGS.items():
            methods[str(name)][key] = {
                d: {"accuracy": float(r[f"transfer_acc{suffix}[{d}]"]),
                    "balanced_accuracy": float(r[f"transfer_bal_acc{suffix}[{d}]"]),
                    "ceiling": float(r[f"transfer_ceiling[{d}]"]), "dummy": float(r[f"transfer_dummy[{d}]"])}
                for d in DIRECTIONS}
    return {"dataset": dataset, "simulated": bool(simulated), "seeds": [int(s) for s in seeds],
            "transfer_protocol": TRANSFER_PROTOCOL,
            "transfer_settings": {key: text for key, text in TRANSFER_SETTINGS.values()}, "methods": methods}


def detail_json(records: pd.DataFrame, *, extra: Mapping | None = None) -> dict:
    """Everything behind the summary: per method mean and sd of every score, and per-seed rows."""
    m = mean_sd(records)
    return {"mean_sd": {str(k): {c: float(v) for c, v in row.items() if pd.notna(v)} for k, row in m.iterrows()},
            "per_seed": records.to_dict(orient="records"), **dict(extra or {})}


def beats(records: pd.DataFrame, *, models: Sequence[str], baselines: Sequence[str],
          columns: Sequence[str] = ("scib_total", "transfer_acc[human->mouse]", "transfer_acc[mouse->human]",
                                    "tree_mutual_nn")) -> pd.DataFrame:
    """Which model beats which baseline on which score: mean difference over seeds and whether the
    model's worst seed still beats the baseline's best (a conservative "clearly better"; never
    said of a model with one seed)."""
    rows = []
    for col in columns:
        for m in models:
            for b in baselines:
                a = records.loc[records["method"] == m, col].to_numpy()
                c = records.loc[records["method"] == b, col].to_numpy()
                if len(a) == 0 or len(c) == 0:
                    continue
                rows.append({"score": col, "model": m, "baseline": b, "difference": float(a.mean() - c.mean()),
                             "better_on_mean": bool(a.mean() > c.mean()),
                             "clearly_better": bool(len(a) > 1 and a.min() > c.max())})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------- verdicts
def _label(labels: Mapping[str, str] | None, m: str) -> str:
    return (labels or {}).get(m, m)


def seed_labels(summary: pd.DataFrame, labels: Mapping[str, str] | None = None) -> dict[str, str]:
    """Display names for every method of ``summary`` (from :func:`mean_sd`), with "(k of n seeds)"
    for a method that ran on fewer seeds than the most (an ablation cut to fit the budget)."""
    most = int(summary["n_seeds"].max()) if "n_seeds" in summary.columns else 0
    out = {}
    for m in summary.index:
        k = int(summary.loc[m, "n_seeds"]) if "n_seeds" in summary.columns else most
        out[m] = _label(labels, m) + (f" ({k} of {most} seeds)" if k < most else "")
    return out


def transfer_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Means over seeds of the label-transfer scores: rows = methods, columns = (setting,
    direction, score) with the dummy and the ceiling beside accuracy and balanced accuracy."""
    cols = {}
    for suffix, (key, _) in TRANSFER_SETTINGS.items():
        for d in DIRECTIONS:
            cols[(key, d, "accuracy")] = summary[f"transfer_acc{suffix}[{d}]"]
            cols[(key, d, "balanced_accuracy")] = summary[f"transfer_bal_acc{suffix}[{d}]"]
            cols[(key, d, "dummy")] = summary[f"transfer_dummy[{d}]"]
            cols[(key, d, "ceiling")] = summary[f"transfer_ceiling[{d}]"]
    return pd.DataFrame(cols)


def verdict_lines(records: pd.DataFrame, summary: pd.DataFrame, *, models: Sequence[str], baselines: Sequence[str],
                  uses_labels: Sequence[str] = (), labels: Mapping[str, str] | None = None,
                  columns: Sequence[str] = ("scib_total", *(f"transfer_acc[{d}]" for d in DIRECTIONS),
                                            "tree_mutual_nn")) -> list[str]:
    """Markdown bullets: per score, the best baseline and the knowledge models that beat it (mean
    over seeds; "clearly" when the model's worst seed beats the baseline's best), which of them
    saw labels, and whether a label-free model beats the best baseline on scib total."""
    wins = beats(records, models=models, baselines=baselines, columns=columns)
    names = {f"transfer_acc[{d}]": f"label transfer {d} (SATURN's protocol, target labels unseen, accuracy)"
             for d in DIRECTIONS}
    lines = []
    for score in columns:
        best_b = max(baselines, key=lambda b: summary.loc[b, score])
        grp = wins[(wins["score"] == score) & (wins["baseline"] == best_b)].set_index("model")
        winners = [m for m in models if summary.loc[m, score] > summary.loc[best_b, score]]
        label = names.get(score, score)
        if winners:
            seen = [_label(labels, m) for m in winners if m in uses_labels]
            lines.append(f"- **{label}**: best baseline {_label(labels, best_b)} ({summary.loc[best_b, score]:.3f}); "
                         "beaten by " + ", ".join(
                             f"{_label(labels, m)} ({summary.loc[m, score]:.3f}"
                             f"{', clearly' if bool(grp.loc[m, 'clearly_better']) else ''})" for m in winners)
                         + ". Labels (of the source species) seen in training: " + (", ".join(seen) or "none") + ".")
        else:
            lines.append(f"- **{label}**: **no knowledge-based model beats** the best baseline "
                         f"{_label(labels, best_b)} ({summary.loc[best_b, score]:.3f}).")
    free = [m for m in models if m not in uses_labels]
    best_b = max(baselines, key=lambda b: summary.loc[b, "scib_total"])
    free_win = [m for m in free if summary.loc[m, "scib_total"] > summary.loc[best_b, "scib_total"]]
    lines.append(f"- Among the models that never see a label ({', '.join(_label(labels, m) for m in free)}), "
                 + (f"{', '.join(_label(labels, m) for m in free_win)} beat{'s' if len(free_win) == 1 else ''} "
                    "the best baseline on scib total." if free_win else "none beats the best baseline on scib total."))
    return lines


def goal_lines(summary: pd.DataFrame, *, models: Sequence[str], reference: str = "scvi", scib_goal: float = 0.60,
               transfer_goal: float = 0.90, labels: Mapping[str, str] | None = None) -> list[str]:
    """Markdown bullets on the task's goals for the best knowledge model (by scib total): scib
    total >= ``scib_goal``, label-transfer accuracy (target labels unseen) >= ``transfer_goal``
    both ways, and at least ``reference``'s scores; each said met or missed, with the numbers; a
    direction whose ceiling (``transfer_ceiling[...]``) is below the transfer goal is said unreachable."""
    best = max(models, key=lambda m: summary.loc[m, "scib_total"])
    acc = {d: float(summary.loc[best, f"transfer_acc[{d}]"]) for d in DIRECTIONS}
    lines = [f"- Best knowledge model on scib total: **{_label(labels, best)}** "
             f"({summary.loc[best, 'scib_total']:.3f}; goal >= {scib_goal:.2f}: "
             f"{'met' if summary.loc[best, 'scib_total'] >= scib_goal else '**missed**'})."]
    lines.append("- Its label-transfer accuracy (target labels unseen): "
                 + ", ".join(f"{d} {v:.3f}" for d, v in acc.items())
                 + f" (goal >= {transfer_goal:.2f} both ways: "
                 + ("met" if min(acc.values()) >= transfer_goal else "**missed**") + ").")
    for d in DIRECTIONS:  # a target type the source lacks always counts as an error (SATURN's protocol)
        col = f"transfer_ceiling[{d}]"
        if col in summary.columns and float(summary.loc[best, col]) < transfer_goal:
            lines.append(f"- The transfer goal cannot be met {d} under this protocol: its ceiling (the fraction "
                         f"of target cells whose type the source has) is {float(summary.loc[best, col]):.3f}.")
    best_t = {d: max(models, key=lambda m: summary.loc[m, f"transfer_acc[{d}]"]) for d in DIRECTIONS}
    lines.append("- Best knowledge model per transfer direction: " + ", ".join(
        f"{d} {_label(labels, m)} ({summary.loc[m, f'transfer_acc[{d}]']:.3f})" for d, m in best_t.items()) + ".")
    if reference in summary.index:
        cols = ["scib_total", *(f"transfer_acc[{d}]" for d in DIRECTIONS)]
        behind = [c for c in cols if summary.loc[best, c] < summary.loc[reference, c]]
        lines.append(f"- Against {_label(labels, reference)}: "
                     + (f"**behind** on {', '.join(behind)} ("
                        + ", ".join(f"{summary.loc[best, c]:.3f} vs {summary.loc[reference, c]:.3f}" for c in behind)
                        + ")." if behind else "matches or beats it on scib total and both transfer directions."))
    return lines


def knn_gap_lines(summary: pd.DataFrame, *, model: str = "uce", reference: str = "pca", max_gap: float = 0.10,
                  species: Sequence[str] = PAIR, labels: Mapping[str, str] | None = None) -> list[str]:
    """Markdown bullets: ``model``'s within-species 5-fold kNN balanced accuracy against
    ``reference``'s on the same cells, per species, and whether it is within ``max_gap``."""
    lines = []
    for s in species:
        col = f"knn_bal_acc[{s}]"
        a, b = float(summary.loc[model, col]), float(summary.loc[reference, col])
        ok = b - a <= max_gap
        lines.append(f"- {s}: {_label(labels, model)} {a:.3f} vs {_label(labels, reference)} {b:.3f} "
                     f"(gap {b - a:+.3f}; goal: within {max_gap:.2f}: {'met' if ok else '**missed**'}).")
    return lines


def uce_diagnostics_table(diagnostics: Mapping[int, Mapping]) -> pd.DataFrame:
    """Per seed: the UCE objective diagnostics (training and held-out queries), the mean
    pairwise cosine of the embedding and its sentence stability (``sentence_stability_<K>``: mean
    cosine of a cell's embeddings from two independent draws of K sentences), one row per seed."""
    rows = []
    for seed, d in diagnostics.items():
        row = {"seed": int(seed), "mean_pairwise_cosine": d.get("mean_pairwise_cosine")}
        for k, v in d.get("sentence_stability", {}).items():
            row[f"sentence_stability_{k}"] = v
        for part in ("train", "val"):
            for k, v in d.get(part, {}).items():
                row[f"{part}_{k}"] = v
        rows.append(row)
    return pd.DataFrame(rows).set_index("seed")


def uce_lines(table: pd.DataFrame, *, auroc_tolerance: float = 0.05, collapsed_cosine: float = 0.95,
              min_gap: float = 0.01) -> list[str]:
    """Markdown bullets read from :func:`uce_diagnostics_table`: is the objective cell-blind-proof,
    does the decoder read the cell (every seed's gap above ``min_gap``), is the embedding collapsed."""
    auc = table["train_cell_blind_auroc"]
    gap = table["train_decoder_gap"]
    cos = table["mean_pairwise_cosine"]
    stab = sorted((int(c.rsplit("_", 1)[1]), c) for c in table.columns if c.startswith("sentence_stability_"))
    extra = []
    if stab:
        extra.append("- Sentence stability (mean cosine between a cell's embeddings from two independent "
                     "sentence draws): " + ", ".join(
                         f"{table[c].mean():.3f} with {k} sentence{'s' if k > 1 else ''} per cell" for k, c in stab)
                     + (". The embedding averages the last." if len(stab) > 1 else "."))
    return [
        f"- Cell-blind frequency score on the training queries: AUROC {auc.mean():.3f} "
        f"(range {auc.min():.3f}-{auc.max():.3f}; "
        + ("within" if (auc - 0.5).abs().max() <= auroc_tolerance else "**outside**")
        + f" {auroc_tolerance:.2f} of 0.5).",
        f"- Decoder accuracy with each cell's own vector minus with a shuffled one: {gap.mean():+.3f} "
        f"(min {gap.min():+.3f}): the decoder " + ("reads the cell." if gap.min() > min_gap else
                                                   f"**does not read the cell** (gap not above {min_gap:.2f})."),
        f"- Mean pairwise cosine of the cell embeddings: {cos.mean():.3f} ("
        + ("**collapsed**" if cos.mean() >= collapsed_cosine else "not collapsed") + ").",
        *extra,
    ]
