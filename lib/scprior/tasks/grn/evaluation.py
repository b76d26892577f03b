"""The GRN benchmark recipe (notebook 03): genes and TFs of a dataset, every method's scores on the
same TFs x candidates, per-truth metrics with bootstrap intervals over TFs, computed verdicts.

A :class:`GrnDataset` is cells (AnnData, log-normalised ``X``, ``obs['cell_type']``) plus one or
more ground truths. :func:`select_genes` keeps the most variable genes plus every expressed TF of
the truths; :func:`candidate_tfs` the TFs with at least ``min_targets`` true targets among them.
Scores from any method (baselines here, in-silico deletion from a model) are TFs x genes matrices;
:func:`evaluate` scores each truth on the TFs that have targets in it, each method on exactly the
same TFs and candidates.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import anndata as ad
import numpy as np
import pandas as pd

from scprior.data.grn_truth import TRUTH_TITLES, restrict_truth, targets_by_tf
from scprior.errors import ScpriorInputError
from scprior.tasks.grn import baselines as bl
from scprior.tasks.grn.metrics import METRICS, pooled_pr_curve, score_methods, summarise

CORRELATION_RIVALS = ("pearson", "spearman", "grnboost2")


@dataclass
class GrnDataset:
    """Cells and their ground truths (``{name: tidy edge table}``)."""

    name: str
    adata: ad.AnnData
    truths: dict[str, pd.DataFrame]
    simulated: bool

    @property
    def label(self) -> str:
        return ("SIMULATED " if self.simulated else "") + self.name


@dataclass
class BaselineConfig:
    """Which baselines run and their cost knobs (``baselines`` in notebooks.03_grn_inference)."""

    methods: tuple[str, ...] = ("pearson", "spearman", "grnboost2", "genie3", "cosine_text", "cosine_protein", "random")
    n_workers: int = 2
    genie3_trees: int = 100
    grnboost2_trees: int | None = None  # None: arboreto's 5,000 boosting rounds (early stopping decides)
    max_cells_arboreto: int = 1000
    all_regulators: bool = False   # regress on every candidate TF (slower) instead of the scored TFs only
    seed: int = 0


@dataclass
class GrnResult:
    """Per-TF metrics, summaries (mean and 95 % bootstrap interval over TFs) and PR curves per truth."""

    dataset: GrnDataset
    per_tf: dict[str, pd.DataFrame] = field(default_factory=dict)
    summary: dict[str, pd.DataFrame] = field(default_factory=dict)
    curves: dict[str, dict[str, pd.DataFrame]] = field(default_factory=dict)
    tfs: dict[str, list[str]] = field(default_factory=dict)


def expressed(adata: ad.AnnData, min_cells: int) -> np.ndarray:
    """Genes detected (> 0) in at least ``min_cells`` cells (bool per gene)."""
    x = adata.layers["counts"] if "counts" in adata.layers else adata.X
    return np.asarray((x > 0).sum(axis=0)).ravel() >= min_cells


def select_genes(adata: ad.AnnData, truths: Mapping[str, pd.DataFrame], *, n_hvg: int, min_cells: int = 10,
                 min_targets: int = 1, extra: Iterable[str] = ()) -> list[str]:
    """The ``n_hvg`` most variable expressed genes (dispersion of log-normalised X), plus every
    expressed TF of the truths with >= ``min_targets`` true targets among them, plus ``extra``; sorted."""
    ok = expressed(adata, min_cells)
    names = adata.var_names.astype(str).str.upper()
    x = adata.X
    mean = np.asarray(x.mean(axis=0)).ravel()
    sq = np.asarray(x.multiply(x).mean(axis=0)).ravel() if hasattr(x, "multiply") else (np.asarray(x) ** 2).mean(axis=0)
    disp = np.where(mean > 0, (sq - mean ** 2) / np.maximum(mean, 1e-12), 0.0)
    disp[~ok] = -np.inf
    top = set(names[np.argsort(-disp)[: min(n_hvg, int(ok.sum()))]])
    present = set(names[ok])
    tfs: set[str] = set()
    for truth in truths.values():
        sub = truth[truth["tf"].isin(present) & truth["target"].isin(top)]
        counts = sub["tf"].value_counts()
        tfs |= set(counts[counts >= min_targets].index)
    return sorted(top | tfs | ({str(e).upper() for e in extra} & present))


def candidate_tfs(truths: Mapping[str, pd.DataFrame], genes: Sequence[str], min_targets: int) -> list[str]:
    """TFs among ``genes`` with >= ``min_targets`` targets among ``genes`` in at least one truth."""
    out: set[str] = set()
    for truth in truths.values():
        sub = restrict_truth(truth, genes)
        counts = sub["tf"].value_counts()
        out |= set(counts[counts >= min_targets].index)
    return sorted(out)


def subset(adata: ad.AnnData, genes: Sequence[str]) -> ad.AnnData:
    """Cells x ``genes`` (upper-case var names), a copy."""
    upper = adata.var_names.astype(str).str.upper()
    if upper.duplicated().any():
        adata = adata[:, ~upper.duplicated()]
        upper = adata.var_names.astype(str).str.upper()
    pos = pd.Index(upper).get_indexer(list(genes))
    if (pos < 0).any():
        raise ScpriorInputError(f"{int((pos < 0).sum())} genes are not in the data.")
    out = adata[:, pos].copy()
    out.var_names = list(genes)
    return out


def run_baselines(adata: ad.AnnData, genes: Sequence[str], tfs: Sequence[str], regulators: Sequence[str],
                  cfg: BaselineConfig, embeddings: Mapping[str, object] | None = None,
                  progress: bool = True) -> tuple[dict[str, pd.DataFrame], dict[str, float]]:
    """Every configured baseline's TFs x genes scores and its wall time in seconds.

    ``tfs``: the TFs scored; arboreto regresses each target on them (``cfg.all_regulators``: on
    every candidate TF in ``regulators`` too, as GRNBoost2 is often run; several times slower).
    """
    import time

    sub = subset(adata, genes)
    x = bl.dense(sub.X)
    out: dict[str, pd.DataFrame] = {}
    seconds: dict[str, float] = {}
    embeddings = embeddings or {}
    for method in cfg.methods:
        t0 = time.perf_counter()
        if method in ("pearson", "spearman"):
            out[method] = bl.correlation(x, genes, tfs, method)
        elif method in bl.ARBORETO:
            rng = np.random.default_rng(cfg.seed)
            rows = np.sort(rng.choice(len(x), size=min(cfg.max_cells_arboreto, len(x)), replace=False))
            regs = sorted(set(regulators) | set(tfs)) if cfg.all_regulators else list(tfs)
            full = bl.arboreto_scores(x[rows], genes, regs, method, n_workers=cfg.n_workers, seed=cfg.seed,
                                      n_estimators=cfg.genie3_trees if method == "genie3" else cfg.grnboost2_trees)
            out[method] = full.loc[list(tfs)]
        elif method.startswith("cosine_"):
            emb = embeddings.get(method.removeprefix("cosine_"))
            if emb is None:
                continue
            out[method] = bl.embedding_cosine(emb, genes, tfs)
        elif method == "random":
            out[method] = bl.random_scores(genes, tfs, cfg.seed)
        else:
            raise ScpriorInputError(f"Unknown GRN baseline {method!r}; known: {list(BaselineConfig().methods)}.")
        seconds[method] = time.perf_counter() - t0
        if progress:
            print(f"  {method}: {seconds[method]:.1f} s")
    return out, seconds


def bootstrap_mean(values: np.ndarray, *, n_boot: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile bootstrap interval of the mean (NaN-free ``values``)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def evaluate(dataset: GrnDataset, scores: Mapping[str, pd.DataFrame], tfs: Sequence[str], genes: Sequence[str],
             *, seed: int = 0) -> GrnResult:
    """Score every method on every truth of ``dataset`` (TFs with >= 1 true target among ``genes``)."""
    result = GrnResult(dataset)
    for name, truth in dataset.truths.items():
        sub = restrict_truth(truth, genes, tfs)
        targets = targets_by_tf(sub)
        scored = [t for t in tfs if targets.get(t)]
        if not scored:
            continue
        per_tf = score_methods({m: s.loc[scored, list(genes)] for m, s in scores.items()}, targets, scored)
        summ = summarise(per_tf)
        for metric in ("auprc_ratio", "epr"):
            ci = {m: bootstrap_mean(g[metric].to_numpy(), seed=seed) for m, g in per_tf.groupby("method", sort=False)}
            summ[f"{metric}_lo"] = [ci[m][0] for m in summ.index]
            summ[f"{metric}_hi"] = [ci[m][1] for m in summ.index]
        result.per_tf[name], result.summary[name], result.tfs[name] = per_tf, summ, scored
        result.curves[name] = {m: pooled_pr_curve(s.loc[scored, list(genes)], targets, scored) for m, s in scores.items()}
    return result


def paired_difference(per_tf: pd.DataFrame, method: str, rival: str, metric: str = "auprc_ratio",
                      *, seed: int = 0) -> dict[str, float]:
    """Mean over TFs of ``method - rival`` on ``metric`` with a 95 % bootstrap interval (paired by TF)."""
    a = per_tf[per_tf["method"] == method].set_index("tf")[metric]
    b = per_tf[per_tf["method"] == rival].set_index("tf")[metric]
    diff = (a - b).dropna().to_numpy()
    lo, hi = bootstrap_mean(diff, seed=seed)
    return {"mean": float(diff.mean()) if len(diff) else float("nan"), "lo": lo, "hi": hi, "n_tfs": int(len(diff))}


def comparison_table(result: GrnResult, method: str, rivals: Sequence[str] = CORRELATION_RIVALS,
                     metric: str = "auprc_ratio") -> pd.DataFrame:
    """Per truth and rival: paired difference ``method - rival`` and a computed verdict word."""
    rows = []
    for truth, per_tf in result.per_tf.items():
        have = set(per_tf["method"])
        if method not in have:
            continue
        for rival in rivals:
            if rival not in have:
                continue
            d = paired_difference(per_tf, method, rival, metric)
            verdict = "beats" if d["lo"] > 0 else ("loses to" if d["hi"] < 0 else "does not clearly differ from")
            rows.append({"truth": truth, "rival": rival, **d, "verdict": verdict})
    return pd.DataFrame(rows)


def verdict_sentences(result: GrnResult, method: str, rivals: Sequence[str] = CORRELATION_RIVALS,
                      metric: str = "auprc_ratio") -> str:
    """One computed sentence per truth: where ``method`` beats the rivals (interval over TFs > 0) and where not."""
    table = comparison_table(result, method, rivals, metric)
    if table.empty:
        return f"{result.dataset.label}: {method} was not scored."
    lines = []
    for truth, g in table.groupby("truth", sort=False):
        parts = [f"{r.verdict} {r.rival} ({metric} difference {r.mean:+.2f}, 95% CI {r.lo:+.2f} to {r.hi:+.2f})"
                 for r in g.itertuples()]
        lines.append(f"{result.dataset.label} vs {TRUTH_TITLES.get(truth, truth)} ({int(g['n_tfs'].iloc[0])} TFs): "
                     f"{method} " + "; ".join(parts) + ".")
    return "\n".join(lines)


def best_method_sentence(result: GrnResult, metric: str = "auprc_ratio") -> str:
    """Per truth: the best method by mean ``metric`` over TFs and whether it beats random (CI above 1)."""
    lines = []
    for truth, summ in result.summary.items():
        best = summ[metric].idxmax()
        lo = summ.loc[best, f"{metric}_lo"] if f"{metric}_lo" in summ else float("nan")
        above = "above" if lo > 1 else "not clearly above"
        lines.append(f"{result.dataset.label} vs {TRUTH_TITLES.get(truth, truth)}: best {metric} {summ.loc[best, metric]:.2f} "
                     f"by {best} (95% CI lower bound {lo:.2f}: {above} random = 1).")
    return "\n".join(lines)


def metrics_block(result: GrnResult) -> dict[str, dict]:
    """``{"<dataset>:<truth>": {"simulated", "truth", "n_tfs", "methods": {m: {auprc, auprc_ratio, auroc, epr}}}}``
    (means over TFs)."""
    out = {}
    for truth, summ in result.summary.items():
        out[f"{result.dataset.name}:{truth}"] = {
            "simulated": bool(result.dataset.simulated), "truth": TRUTH_TITLES.get(truth, truth),
            "n_tfs": int(len(result.tfs[truth])),
            "methods": {m: {k: float(summ.loc[m, k]) for k in METRICS} for m in summ.index},
        }
    return out
