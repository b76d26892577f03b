"""Perturbation-prediction recipes (scGenePT's task, evaluated the GEARS way).

:class:`PerturbationTask` holds one GEARS-format AnnData in the arrays the methods need;
:class:`DeepPerturbationModel` trains scGenePT / the scGPT setting through
:func:`scprior.models.training.fit` (GEARS's cell pairing: every perturbed cell paired with a random
control cell; best epoch on the validation conditions' loss) and predicts a condition as the mean
over predictions from control cells; :func:`run_methods` fits every baseline and deep model on one
split and :func:`benchmark` runs seeds, metrics per subgroup and genetic-interaction recovery.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from scprior.data.gears import pair_controls
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
from scprior.models.scgenept import ScGenePT, ScGenePTConfig, language_table, sample_gene_subset
from scprior.models.scgpt_checkpoint import build_from_scgpt
from scprior.models.training import TrainConfig, TrainResult, fit
from scprior.runtime import pick_device
from scprior.tasks.perturbation_baselines import (
    Additive,
    KnowledgeRegressor,
    LinearGeneEmbedding,
    NoChange,
    TrainMean,
    canonical_pseudobulk,
    go_feature_table,
)
from scprior.tasks.perturbation_gi import doubles_with_singles, gi_recovery
from scprior.tasks.perturbation_metrics import (
    control_mean,
    evaluate_conditions,
    observed_means,
    summarise_subgroups,
)

BASELINES = ("no_change", "train_mean", "additive", "linear_pca", "ridge_go", "rf_go", "ridge_text", "rf_text")
DEEP = ("scgpt", "scgenept_text", "scgenept_go")
DEEP_LABELS = {"scgpt": "scGPT setting (no language embedding)",
               "scgenept_text": "scGenePT (MiniLM gene text)",
               "scgenept_go": "scGenePT-GO (GO annotation SVD)"}


# ------------------------------------------------------------------------------ data holder
@dataclass
class PerturbationTask:
    """Arrays of one GEARS-format dataset: expression, labels, observed means, control mean."""

    adata: ad.AnnData
    name: str
    simulated: bool
    genes: list[str]
    X: np.ndarray
    labels: np.ndarray
    canonical: np.ndarray
    ctrl_cells: np.ndarray
    truth: pd.DataFrame
    ctrl: np.ndarray
    cells_per_label: pd.Series
    key: str = "gears"

    @classmethod
    def from_adata(cls, adata: ad.AnnData, *, name: str | None = None, key: str | None = None) -> PerturbationTask:
        """Build from a validated GEARS AnnData (see :func:`scprior.data.gears.read_gears`).

        ``name`` is shown in tables and titles; ``key`` (default: the dataset id) names checkpoints.
        """
        prov = adata.uns.get("scprior", {})
        key = key or str(prov.get("dataset_id", name or "gears"))
        key = re.sub(r"[^A-Za-z0-9_.-]+", "_", key).strip("_") or "gears"
        labels = adata.obs["condition"].astype(str).to_numpy()
        X = adata.X.toarray() if sp.issparse(adata.X) else np.asarray(adata.X)
        return cls(
            adata=adata, name=name or str(prov.get("dataset_id", "gears")), simulated=not bool(prov.get("real", True)),
            genes=adata.var["gene_name"].astype(str).tolist(), X=X.astype(np.float32), labels=labels,
            canonical=np.asarray([canonical_condition(c) for c in labels], dtype=object),
            ctrl_cells=np.flatnonzero(labels == CONTROL), truth=observed_means(adata), ctrl=control_mean(adata),
            cells_per_label=pd.Series(labels).value_counts(), key=key,
        )

    @property
    def conditions(self) -> list[str]:
        """Raw condition labels in order of first appearance."""
        return list(pd.unique(self.labels))

    def pseudobulk(self, labels: Sequence[str]) -> pd.DataFrame:
        """Canonical target set -> mean profile over the cells of ``labels``."""
        return canonical_pseudobulk(self.truth, list(labels), self.cells_per_label)

    def observed_profiles(self) -> dict[str, np.ndarray]:
        """Canonical target set -> observed mean profile, over all cells of the dataset."""
        table = self.pseudobulk(self.conditions)
        return {c: table.loc[c].to_numpy() for c in table.index}


# ------------------------------------------------------------------------------ knowledge inputs
@dataclass
class KnowledgeInputs:
    """Prior gene knowledge the methods may use (each may be missing)."""

    text: GeneEmbeddings | None = None
    go_annotations: pd.DataFrame | None = None
    go_dim: int = 64

    def go_embedding(self, genes: Sequence[str], *, seed: int = 0) -> GeneEmbeddings | None:
        """GO annotation vectors for ``genes``: truncated SVD of the gene x term indicator matrix."""
        if self.go_annotations is None:
            return None
        table = go_feature_table(self.go_annotations, genes, min_genes=2)
        if table.shape[0] < 3 or table.shape[1] < 2:
            return None
        from sklearn.decomposition import TruncatedSVD

        k = int(min(self.go_dim, table.shape[1] - 1, table.shape[0] - 1))
        emb = TruncatedSVD(n_components=k, random_state=seed).fit_transform(table.to_numpy())
        return GeneEmbeddings(table.index.to_numpy(dtype=object), emb.astype(np.float32), "human", "go_svd",
                              {"terms": int(table.shape[1])})


# ------------------------------------------------------------------------------ deep models
@dataclass
class DeepConfig:
    """Size and training budget of the deep models (CPU-sized defaults)."""

    d_model: int = 32
    nhead: int = 2
    d_hid: int = 64
    nlayers: int = 2
    dropout: float = 0.0
    residual: bool = True
    lr: float = 2e-3
    batch_size: int = 32
    max_epochs: int = 20
    patience: int = 4
    pairs_per_epoch: int = 640
    val_pairs: int = 128
    genes_per_sample: int = 128
    n_ctrl_predict: int = 16
    device: str = "auto"
    progress: bool = True
    scgpt_checkpoint: str | None = None  # a scGPT model folder: sizes from args.json, weights loaded


def token_symbols(task: PerturbationTask) -> list[str]:
    """Token vocabulary: the measured genes, then perturbed genes that are not measured (sorted)."""
    measured = set(task.genes)
    extra = [g for g in perturbed_genes(task.conditions) if g not in measured]
    return list(task.genes) + extra


def _pert_tokens(conditions: Sequence[str], token_pos: Mapping[str, int]) -> np.ndarray:
    out = np.full((len(conditions), 2), -1, dtype=np.int64)
    for i, c in enumerate(conditions):
        for j, g in enumerate(parse_condition(c)):
            out[i, j] = token_pos[g]
    return out


class DeepPerturbationModel:
    """scGenePT (``language`` given) or the scGPT setting (``language=None``) on one task.

    ``language``: GeneEmbeddings looked up for every token (missing genes: small random vectors).
    """

    def __init__(self, task: PerturbationTask, *, language: GeneEmbeddings | None, config: DeepConfig | None = None,
                 seed: int = 0, name: str = "scgenept"):
        self.task, self.config, self.seed, self.name = task, config or DeepConfig(), seed, name
        self.symbols = token_symbols(task)
        self.token_pos = {g: i for i, g in enumerate(self.symbols)}
        table, self.language_report = (None, None)
        if language is not None:
            table, self.language_report = language_table(self.symbols, language, seed=seed)
        cfg = self.config
        torch.manual_seed(seed)
        self.checkpoint_report = None
        if cfg.scgpt_checkpoint:
            self.model, self.checkpoint_report = build_from_scgpt(
                cfg.scgpt_checkpoint, self.symbols, n_measured=len(task.genes), language_table=table,
                residual=cfg.residual)
            self.model_config = self.model.config
        else:
            self.model_config = ScGenePTConfig(n_tokens=len(self.symbols) + 1, n_measured=len(task.genes),
                                               d_model=cfg.d_model, nhead=cfg.nhead, d_hid=cfg.d_hid,
                                               nlayers=cfg.nlayers, dropout=cfg.dropout, residual=cfg.residual)
            self.model = ScGenePT(self.model_config, table)
        self.device = pick_device(cfg.device)
        self.result: TrainResult | None = None

    # -------------------------------------------------------------- pairs and batches
    def _pairs(self, labels: Sequence[str], rng: np.random.Generator, limit: int | None = None) -> torch.Tensor:
        """(n, 4) int64: target cell, paired control cell, two perturbation tokens (GEARS pairing)."""
        cells = np.flatnonzero(np.isin(self.task.labels, list(labels)))
        if limit is not None and len(cells) > limit:
            cells = np.sort(rng.choice(cells, limit, replace=False))
        partner = pair_controls(self.task.labels, rng=rng, cells=cells)
        tokens = _pert_tokens(self.task.canonical[cells], self.token_pos)
        return torch.as_tensor(np.column_stack([cells, partner, tokens]), dtype=torch.long)

    def _chunks(self, seed: int) -> list[torch.Tensor]:
        gen = torch.Generator().manual_seed(seed)
        n = len(self.task.genes)
        return list(torch.randperm(n, generator=gen).split(self.config.genes_per_sample))

    def _predict_cells(self, x: torch.Tensor, pert: torch.Tensor, chunks: list[torch.Tensor]) -> torch.Tensor:
        """(B, n_measured) predictions, gene chunks as in training (each with the batch's perturbed genes)."""
        n = self.model_config.n_measured
        out = torch.empty(x.shape[0], n, device=x.device)
        must = torch.unique(pert[(pert >= 0) & (pert < n)])
        for chunk in chunks:
            chunk = chunk.to(x.device)
            subset = torch.unique(torch.cat([chunk, must]))
            pred = self.model.forward_cells(x, pert, subset)
            out[:, chunk] = pred[:, torch.searchsorted(subset, chunk)]
        return out

    def _loss_fn(self, X: torch.Tensor, chunks: list[torch.Tensor]) -> Callable:
        size, n = self.config.genes_per_sample, self.model_config.n_measured

        def loss_fn(model, batch, epoch):
            (pairs,) = batch
            y, x, pert = X[pairs[:, 0]], X[pairs[:, 1]], pairs[:, 2:]
            if model.training:
                subset = sample_gene_subset(pert, n, size)
                pred = model.forward_cells(x, pert, subset)
                return {"loss": torch.mean((pred - y[:, subset]) ** 2)}
            pred = self._predict_cells(x, pert, chunks)
            return {"loss": torch.mean((pred - y) ** 2)}

        return loss_fn

    # -------------------------------------------------------------- fit / predict
    def fit(self, split: PerturbationSplit, *, checkpoint: str | Path | None = None) -> TrainResult:
        """Train on the split's train conditions; choose the best epoch on its val conditions."""
        cfg = self.config
        rng = np.random.default_rng(self.seed)
        train = self._pairs(split.conditions("train"), rng)
        val_labels = split.conditions("val")
        if not val_labels:
            raise ScpriorInputError("The split has no validation conditions; the best epoch must be chosen on them.")
        val = self._pairs(val_labels, rng, limit=cfg.val_pairs)
        X = torch.as_tensor(self.task.X, device=self.device)
        chunks = self._chunks(self.seed)
        gen = torch.Generator().manual_seed(self.seed)
        sampler = torch.utils.data.RandomSampler(train, replacement=False,
                                                 num_samples=min(cfg.pairs_per_epoch, len(train)), generator=gen)
        train_loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(train), batch_size=cfg.batch_size,
                                                   sampler=sampler, drop_last=len(train) > cfg.batch_size)
        val_loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(val), batch_size=cfg.batch_size * 2)
        tc = TrainConfig(max_epochs=cfg.max_epochs, lr=cfg.lr, patience=cfg.patience, seed=self.seed,
                         device=self.device, progress=cfg.progress, grad_clip=1.0, desc=f"{self.name} seed {self.seed}")
        self.result = fit(self.model, self._loss_fn(X, chunks), train_loader, val_loader, tc, checkpoint=checkpoint,
                          extra_state={"model_config": asdict(self.model_config), "token_symbols": self.symbols,
                                       "deep_config": asdict(cfg), "dataset": self.task.name})
        return self.result

    @torch.no_grad()
    def predict(self, conditions: Sequence[str]) -> pd.DataFrame:
        """Mean predicted profile of each condition over ``n_ctrl_predict`` random control cells."""
        cfg = self.config
        self.model.eval().to(self.device)
        conditions = [canonical_condition(c) for c in conditions]
        rng = np.random.default_rng(self.seed + 1)
        X = torch.as_tensor(self.task.X, device=self.device)
        chunks = self._chunks(self.seed)
        k = min(cfg.n_ctrl_predict, len(self.task.ctrl_cells))
        ctrl_idx = np.stack([rng.choice(self.task.ctrl_cells, k, replace=False) for _ in conditions])
        tokens = _pert_tokens(conditions, self.token_pos)
        flat_ctrl = torch.as_tensor(ctrl_idx.ravel(), device=self.device)
        flat_tok = torch.as_tensor(np.repeat(tokens, k, axis=0), device=self.device)
        preds = []
        step = cfg.batch_size * 2
        for s in range(0, len(flat_ctrl), step):
            preds.append(self._predict_cells(X[flat_ctrl[s:s + step]], flat_tok[s:s + step], chunks).cpu())
        mean = torch.cat(preds).reshape(len(conditions), k, -1).mean(1).numpy()
        return pd.DataFrame(mean, index=conditions, columns=self.task.genes)


# ------------------------------------------------------------------------------ all methods
@dataclass
class MethodRun:
    """Predictions of every method on one split, with fit seconds and notes (coverage, best epoch)."""

    predictions: dict[str, pd.DataFrame] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    notes: dict[str, dict] = field(default_factory=dict)
    histories: dict[str, list] = field(default_factory=dict)


def run_methods(task: PerturbationTask, split: PerturbationSplit, conditions: Sequence[str], *,
                knowledge: KnowledgeInputs, methods: Sequence[str] = BASELINES + DEEP, seed: int = 0,
                deep_config: DeepConfig | None = None, models_dir: str | Path | None = None) -> MethodRun:
    """Fit each method on ``split``'s training conditions and predict ``conditions`` (canonical).

    Methods whose knowledge input is missing are skipped with a note (never silently replaced).
    """
    run = MethodRun()
    train = task.pseudobulk(split.conditions("train"))
    val = task.pseudobulk(split.conditions("val")) if split.conditions("val") else None
    conditions = list(dict.fromkeys(canonical_condition(c) for c in conditions))
    pert_genes = perturbed_genes(task.conditions)
    features: dict[str, pd.DataFrame | None] = {"go": None, "text": None}
    if knowledge.go_annotations is not None:
        features["go"] = go_feature_table(knowledge.go_annotations, pert_genes)
    if knowledge.text is not None:
        rows, report = knowledge.text.lookup(pert_genes, missing="drop")
        features["text"] = pd.DataFrame(rows, index=[g for g in pert_genes if g in report.matched])
    for method in methods:
        start = time.perf_counter()
        note: dict = {}
        if method in BASELINES:
            if method in ("ridge_go", "rf_go", "ridge_text", "rf_text"):
                kind, source = method.split("_")
                table = features[source]
                if table is None or table.empty:
                    run.notes[method] = {"skipped": f"no {source} knowledge available"}
                    continue
                model = KnowledgeRegressor(table, kind=kind, label=source, seed=seed)
                model.fit(train, task.ctrl, val=val)
                note["coverage"] = model.coverage(conditions)
                if kind == "ridge":
                    note["alpha"] = model.alpha_
            else:
                model = {"no_change": NoChange, "train_mean": TrainMean, "additive": Additive,
                         "linear_pca": LinearGeneEmbedding}[method]()
                model.fit(train, task.ctrl)
                if hasattr(model, "coverage"):
                    note["coverage"] = model.coverage(conditions)
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
            deep = DeepPerturbationModel(task, language=language, config=deep_config, seed=seed, name=method)
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
        else:
            raise ScpriorInputError(f"Unknown method {method!r}; known: {BASELINES + DEEP}")
        run.seconds[method] = time.perf_counter() - start
        run.notes[method] = note
    return run


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

    def metrics_json(self, metrics: Sequence[str] = ("pearson_delta", "pearson_delta_de", "mse_de")) -> dict:
        """``{"dataset", "simulated", "seeds", "methods": {name: {subgroup: {metric: mean}}}}``."""
        table = self.summary(metrics)
        methods: dict = {}
        for (method, subgroup), row in table.iterrows():
            methods.setdefault(method, {})[subgroup] = {m: float(row[m]) for m in metrics}
        return {"dataset": self.dataset, "simulated": self.simulated, "seeds": list(self.seeds), "methods": methods}


def benchmark(task: PerturbationTask, make_split: Callable[[int], PerturbationSplit], seeds: Sequence[int], *,
              knowledge: KnowledgeInputs, methods: Sequence[str] = BASELINES + DEEP,
              deep_config: DeepConfig | None = None, models_dir: str | Path | None = None) -> BenchmarkResult:
    """Every method on ``make_split(seed)`` for each seed: GEARS metrics per test subgroup and GI recovery."""
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
        run = run_methods(task, split, needed, knowledge=knowledge, methods=methods, seed=seed,
                          deep_config=deep_config, models_dir=models_dir)
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
    return BenchmarkResult(
        dataset=task.name, simulated=task.simulated, seeds=list(seeds),
        per_condition=pd.concat(cond_rows, ignore_index=True), subgroups=pd.concat(sub_rows, ignore_index=True),
        gi=pd.DataFrame(gi_rows), notes=pd.DataFrame(note_rows), splits=splits, first_run=first,
    )


def baseline_comparison(result: BenchmarkResult, *, metric: str = "pearson_delta_de",
                        higher_is_better: bool = True) -> pd.DataFrame:
    """Per deep model and subgroup: its score, the best baseline and its score, and whether the deep
    model beats every baseline (means over seeds)."""
    table = result.summary((metric,))[metric].unstack("method")
    deep = [m for m in DEEP if m in table.columns]
    base = [m for m in BASELINES if m in table.columns]
    rows = []
    for subgroup, row in table.iterrows():
        scores = row[base].dropna()
        if scores.empty:
            continue
        best = scores.idxmax() if higher_is_better else scores.idxmin()
        for m in deep:
            beaten = [b for b in base if pd.notna(row[b]) and ((row[b] > row[m]) if higher_is_better else (row[b] < row[m]))]
            rows.append({"method": m, "subgroup": subgroup, metric: row[m], "best_baseline": best,
                         "best_baseline_score": row[best], "beats_all_baselines": not beaten,
                         "not_beaten": ", ".join(beaten)})
    return pd.DataFrame(rows)


def fail_to_beat_sentence(comparison: pd.DataFrame, *, metric: str = "pearson_delta_de") -> str:
    """One plain sentence per deep model naming the baselines it does not beat (on ``metric``)."""
    lines = []
    for method, sub in comparison.groupby("method", sort=False):
        sub = sub[sub["subgroup"] != "all"] if (sub["subgroup"] != "all").any() else sub
        losses = sub[~sub["beats_all_baselines"]]
        if losses.empty:
            lines.append(f"{method} beats every baseline on {metric} in every subgroup.")
            continue
        parts = [f"{r.subgroup} (best: {r.best_baseline} {r.best_baseline_score:.3f} vs {getattr(r, metric):.3f})"
                 for r in losses.itertuples()]
        lines.append(f"{method} fails to beat the best baseline on {metric} in {len(losses)}/{len(sub)} "
                     f"subgroups: " + "; ".join(parts) + ".")
    return "\n".join(lines)
