"""The methods compared in the cross-species integration task and how each is trained.

Baselines (no gene knowledge): ``pca`` (unintegrated PCA of log-normalised one-to-one orthologs),
``harmony`` (on that PCA, species as batch), ``scvi`` (one-to-one orthologs, species as batch).
Knowledge-based models:

============== ============================================================ ==============
name           what                                                         cell labels?
============== ============================================================ ==============
saturn         protein macrogenes, ZINB pretraining + weak-label metric     within species
unify_text     text macrogenes only (ablation), same recipe                 within species
unify          protein + text macrogenes, adversarial species term          within species
unify_free     ``unify``'s pretrained model, clusters as weak labels        none
uce            UCE-style cell sentences of protein tokens, masked pretrain  none
scilama        sciLaMA on ortholog genes, text + protein gene VAE           none
============== ============================================================ ==============

The macrogene models' embeddings are the encoder output after metric learning, not normalised, as
SATURN stores and scores them. "Within species" = SATURN's protocol: species-prefixed cell types of *both* species, so the labels
never say which types match across species, but the target species' labels are seen. For label
transfer these methods are also trained once per direction with the source species' labels only
(:func:`source_labels_only`: the target is label-free), the setting of annotating a new species.
Every recipe takes the settings from ``params.yaml``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anndata as ad
import numpy as np
import scipy.sparse as sp

from scprior.errors import ScpriorInputError
from scprior.models.macrogene_integrator import MacrogeneIntegratorConfig, metric_learn, pretrain
from scprior.models.scilama import SciLaMAConfig, train_scilama
from scprior.models.uce import UCEConfig, train_uce
from scprior.tasks.integration import baselines
from scprior.tasks.integration.data import (
    SPECIES,
    Knowledge,
    embedded_genes,
    human_embeddings_for,
    load_baron,
    load_knowledge,
    ortholog_adata,
    select_hvgs,
    species_hvgs,
    with_ortholog_partners,
)

BASELINES = ("pca", "harmony", "scvi")
KNOWLEDGE_METHODS = ("saturn", "unify_text", "unify", "unify_free", "uce", "scilama")
#: ablations: may run on fewer seeds than the models they ablate (``ablation_seeds``)
ABLATIONS = ("unify_text",)
METHODS = BASELINES + KNOWLEDGE_METHODS
#: methods whose training sees cell-type labels (species-prefixed, within species)
USES_LABELS = ("saturn", "unify_text", "unify")
LABELS = {
    "pca": "PCA (orthologs)", "harmony": "Harmony", "scvi": "scVI",
    "saturn": "SATURN (protein)", "unify_text": "Unify text-only", "unify": "Unify (protein+text)",
    "unify_free": "Unify label-free", "uce": "UCE-style", "scilama": "sciLaMA",
}


@dataclass
class TaskData:
    """Everything the methods read: per-species counts, their HVGs, the ortholog matrix, knowledge."""

    adatas: dict[str, ad.AnnData]
    hvg: dict[str, ad.AnnData]
    orthologs: ad.AnnData
    knowledge: Knowledge
    #: each species' own HVGs, before any ortholog partners were added to ``hvg`` (None: ``hvg``'s genes)
    own_hvgs: dict[str, list[str]] | None = None

    def species_hvg_genes(self) -> dict[str, list[str]]:
        """Species -> its own HVG symbols (what the UCE-style ``gene_set="hvg"`` reads)."""
        if self.own_hvgs is not None:
            return {s: list(g) for s, g in self.own_hvgs.items()}
        return {s: list(a.var_names) for s, a in self.hvg.items()}

    @property
    def obs(self):
        return self.orthologs.obs


def prepare_task(processed_dir: str | os.PathLike, knowledge_dir: str | os.PathLike, *, n_hvg: int = 2000,
                 n_hvg_orthologs: int = 2000, max_cells: int | None = None, seed: int = 0,
                 embedding_sources: Mapping[str, str] | None = None, hvg_ortholog_partners: bool = False) -> TaskData:
    """Read Baron + knowledge; HVGs per species among genes with an embedding; ortholog HVGs.

    ``embedding_sources``: see :func:`.data.load_knowledge` (default protein_kmer and text_minilm).
    ``hvg_ortholog_partners``: each species' HVGs for the macrogene models also get the one-to-one
    orthologs of the other species' HVGs (:func:`.data.with_ortholog_partners`).
    """
    adatas = load_baron(processed_dir, max_cells=max_cells, seed=seed)
    know = load_knowledge(knowledge_dir, sources=embedding_sources)
    covered = {s: embedded_genes(know, s) for s in adatas}
    hvg = species_hvgs(adatas, n_hvg, covered=covered)
    own = {s: list(a.var_names) for s, a in hvg.items()}
    if hvg_ortholog_partners:
        hvg = with_ortholog_partners(hvg, adatas, know.orthologs, covered=covered)
    orth = ortholog_adata(adatas, know.orthologs)
    genes = select_hvgs(orth, n_hvg_orthologs, batch_key="species")
    return TaskData(adatas=adatas, hvg=hvg, orthologs=orth[:, genes].copy(), knowledge=know, own_hvgs=own)


@dataclass
class MethodRun:
    """One method's embedding for one seed, with its wall time and notes (e.g. training history)."""

    embedding: np.ndarray
    seconds: float
    info: dict = field(default_factory=dict)
    #: "source->target" -> embedding of a model trained without the target species' labels (only
    #: for methods that see labels; the others never see any, so ``embedding`` serves every setting)
    unseen: dict[str, np.ndarray] = field(default_factory=dict)
    #: the trained objects (macrogene models: ``pre``, ``model``), kept only when ``settings`` has
    #: ``keep_models: true`` (to write the anchors' output layouts); never checkpointed or pickled
    artifacts: dict = field(default_factory=dict)

    def transfer_embedding(self, direction: str) -> np.ndarray:
        """The embedding scored for ``direction`` in the "target labels unseen" setting."""
        return self.unseen.get(direction, self.embedding)


def _macrogene_config(settings: Mapping, seed: int, **overrides) -> MacrogeneIntegratorConfig:
    return MacrogeneIntegratorConfig(**{**dict(settings.get("macrogenes", {})), **overrides, "seed": seed,
                                        "progress": False})


def _ckpt(models_dir: str | os.PathLike | None, seed: int) -> Path | None:
    return None if models_dir is None else Path(models_dir) / f"seed{seed}"


def run_methods(task: TaskData, settings: Mapping, *, seed: int, methods: Sequence[str] = METHODS,
                models_dir: str | os.PathLike | None = None,
                on_done: Callable[[str, MethodRun], None] | None = None) -> dict[str, MethodRun]:
    """Train/compute every method in ``methods`` for one ``seed``; embeddings in ``task.obs`` order."""
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ScpriorInputError(f"Unknown method(s) {unknown}; known: {list(METHODS)}.")
    ckpt = _ckpt(models_dir, seed)
    know = task.knowledge
    runs: dict[str, MethodRun] = {}

    def done(name: str, start: float, emb: np.ndarray, unseen: Mapping[str, np.ndarray] | None = None,
             **info) -> None:
        run = MethodRun(np.asarray(emb, dtype=np.float32), time.perf_counter() - start, info,
                        {k: np.asarray(v, dtype=np.float32) for k, v in (unseen or {}).items()})
        for e in (run.embedding, *run.unseen.values()):
            if e.shape[0] != task.orthologs.n_obs or not np.isfinite(e).all():
                raise RuntimeError(f"{name} returned a bad embedding of shape {e.shape}.")
        runs[name] = run
        if on_done is not None:
            on_done(name, run)

    def keep(name: str, pre, model) -> None:
        if settings.get("keep_models"):
            runs[name].artifacts = {"pre": pre, "model": model}

    def wanted(*names: str) -> bool:
        return any(n in methods for n in names)

    ev = settings.get("baselines", {})
    if wanted("pca", "harmony"):
        t = time.perf_counter()
        pca = baselines.pca_embedding(task.orthologs, n_comps=int(ev.get("n_pcs", 50)), seed=seed)
        done("pca", t, pca)
        if wanted("harmony"):
            t = time.perf_counter()
            done("harmony", t, baselines.harmony_embedding(pca, task.obs["species"].to_numpy(), seed=seed,
                                                           theta=float(ev.get("harmony_theta", 2.0))))
    if wanted("scvi"):
        t = time.perf_counter()
        done("scvi", t, baselines.scvi_embedding(task.orthologs, seed=seed,
                                                 n_latent=int(ev.get("scvi_latent", 30)),
                                                 max_epochs=int(ev.get("scvi_epochs", 200)),
                                                 batch_size=int(ev.get("scvi_batch_size", 128))))
    for name, emb_set in (("saturn", "protein"), ("unify_text", "text")):  # one embedding set each
        if wanted(name):
            t = time.perf_counter()
            cfg = _macrogene_config(settings, seed, label_mode="weak", adversarial_weight=0.0)
            pre = pretrain(task.hvg, {emb_set: know.embeddings[emb_set]}, config=cfg, checkpoint_dir=ckpt,
                           name=name)
            model, _, z = metric_learn(pre, checkpoint_dir=ckpt, name=name, normalize=False)
            done(name, t, z, unseen=source_labels_only(pre, name=name, pair=pre.species), pretrain_epochs=pre.history.epochs_run,
                 best_epoch=pre.history.best_epoch)
            keep(name, pre, model)
    if wanted("unify", "unify_free"):
        t = time.perf_counter()
        cfg = _macrogene_config(settings, seed, label_mode="weak",
                                adversarial_weight=float(settings.get("unify_adversarial_weight", 0.0)))
        pre = pretrain(task.hvg, know.embeddings, config=cfg, checkpoint_dir=ckpt, name="unify")
        t_pre = time.perf_counter() - t
        if wanted("unify"):
            t = time.perf_counter()
            model, _, z = metric_learn(pre, label_mode="weak", checkpoint_dir=ckpt, name="unify", normalize=False)
            done("unify", t - t_pre, z, unseen=source_labels_only(pre, name="unify", pair=pre.species),
                 pretrain_epochs=pre.history.epochs_run, best_epoch=pre.history.best_epoch)
            keep("unify", pre, model)
        if wanted("unify_free"):
            t = time.perf_counter()
            _, _, z = metric_learn(pre, label_mode="clusters", checkpoint_dir=ckpt, name="unify_free",
                                   normalize=False)
            done("unify_free", t - t_pre, z)
    if wanted("uce"):
        t = time.perf_counter()
        cfg = UCEConfig(**{**dict(settings.get("uce", {})), "seed": seed, "progress": False})
        # gene_set "hvg": sentences and queries on each species' own HVGs (without the macrogene
        # models' ortholog partners: the UCE settings were chosen on those)
        genes = task.species_hvg_genes() if cfg.gene_set == "hvg" else None
        res = train_uce(task.adatas, know.embeddings["protein"], know.gene_tables, config=cfg,
                        checkpoint=ckpt / "uce.pt" if ckpt else None, genes=genes)
        done("uce", t, res.adata.obsm["X_uce"], epochs=res.train.epochs_run if res.train else 0,
             best_epoch=res.train.best_epoch if res.train else -1,
             val_accuracy=res.train.history[res.train.best_epoch].get("val_accuracy") if res.train else None,
             diagnostics=res.diagnostics)
    if wanted("scilama"):
        t = time.perf_counter()
        cfg = SciLaMAConfig(**{**dict(settings.get("scilama", {})), "seed": seed, "progress": False})
        res = train_scilama(scaled(task.orthologs), human_embeddings_for(task.orthologs.var_names, know),
                            config=cfg, covariate_key="species", checkpoint_dir=ckpt)
        done("scilama", t, res.adata.obsm["X_sciLaMA"], n_genes=len(res.genes),
             epochs={k: v.epochs_run for k, v in res.phases.items()})
    return runs


def source_labels_only(pre, *, name: str, pair: Sequence[str] = SPECIES) -> dict[str, np.ndarray]:
    """The "target labels unseen" setting: metric learning once per direction ``a->b`` with the
    labels of ``a`` only (the other species' cells get per-species k-means clusters as weak labels),
    from the same label-free pretrained model. ``pair``: the species (two or more; every ordered
    pair is a direction). Returns ``{"a->b": embedding}`` (not checkpointed)."""
    out = {}
    for s in pair:  # one model per labelled species serves every target
        _, _, z = metric_learn(pre, label_mode="weak", labelled_species=[s], name=f"{name} {s} labels",
                               normalize=False)
        out.update({f"{s}->{t}": z for t in pair if t != s})
    return out


def scaled(adata: ad.AnnData, *, max_value: float = 10.0) -> ad.AnnData:
    """A copy with ``X`` = log-normalised values scaled per gene to unit variance (clipped), dense."""
    x = adata.X.toarray() if sp.issparse(adata.X) else np.asarray(adata.X)
    x = x.astype(np.float64)
    sd = x.std(axis=0)
    x = (x - x.mean(axis=0)) / np.where(sd == 0, 1.0, sd)
    out = ad.AnnData(X=np.clip(x, -max_value, max_value).astype(np.float32), obs=adata.obs.copy(),
                     var=adata.var.copy())
    return out


def with_overrides(settings: Mapping, overrides: Mapping | None) -> dict:
    """``settings`` with ``overrides`` merged in, nested dicts merged key by key (e.g. quick mode)."""
    out = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in settings.items()}
    for k, v in (overrides or {}).items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = with_overrides(out[k], v)
        else:
            out[k] = v
    return out


def fixed_threads(n: int | None) -> int:
    """:func:`scprior.runtime.set_threads` plus the limits a seeded rerun needs to repeat exactly:
    BLAS/OpenMP pools already loaded limited through threadpoolctl, and (``n == 1``, before JAX is
    imported, e.g. in a fresh worker) single-threaded XLA CPU kernels for scib-metrics."""
    import os

    from threadpoolctl import threadpool_limits

    from scprior.runtime import set_threads

    n = set_threads(n)
    if n == 1:
        os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    threadpool_limits(limits=n)
    return n


def _run_seed(task: TaskData, settings: Mapping, seed: int, methods: Sequence[str], models_dir, threads: int | None,
              worker: bool = False):
    if worker:  # a fresh joblib process: every thread pool limited before anything runs
        fixed_threads(threads)
    else:
        from scprior.runtime import set_threads

        set_threads(threads)
    return run_methods(task, settings, seed=seed, methods=methods, models_dir=models_dir)


def seed_methods(seeds: Sequence[int], methods: Sequence[str], *, ablation_seeds: int | None = None) -> dict[int, list[str]]:
    """Per seed, the methods it runs: all of ``methods`` on the first ``ablation_seeds`` seeds
    (None: every seed), the rest without the :data:`ABLATIONS`. Every model depends on its own
    seed only (each reseeds), so leaving an ablation out does not change the other methods."""
    if ablation_seeds is not None and int(ablation_seeds) < 1:
        raise ScpriorInputError(f"ablation_seeds must be >= 1 (or None for every seed), got {ablation_seeds}.")
    n = len(seeds) if ablation_seeds is None else int(ablation_seeds)
    return {int(s): [m for m in methods if i < n or m not in ABLATIONS] for i, s in enumerate(seeds)}


def run_seeds(task: TaskData, settings: Mapping, *, seeds: Sequence[int], methods: Sequence[str] = METHODS,
              models_dir: str | os.PathLike | None = None, n_jobs: int = 1,
              threads: int | None = 1, ablation_seeds: int | None = None) -> dict[int, dict[str, MethodRun]]:
    """:func:`run_methods` for every seed; ``n_jobs`` > 1 runs seeds in parallel processes (joblib),
    each with ``threads`` torch/BLAS threads. A rerun with the same ``n_jobs`` repeats the
    embeddings exactly; another job layout can move them by float32 rounding (~1e-6).
    ``ablation_seeds``: the :data:`ABLATIONS` run on the first N seeds only (:func:`seed_methods`),
    in parallel as jobs of their own."""
    seeds = [int(s) for s in seeds]
    plan = seed_methods(seeds, methods, ablation_seeds=ablation_seeds)
    if n_jobs == 1 or len(seeds) == 1:
        return {s: _run_seed(task, settings, s, plan[s], models_dir, threads) for s in seeds}
    from joblib import Parallel, delayed

    # a seed's ablations are a job of their own when only some seeds run them (each model reseeds:
    # the same numbers up to float32 rounding). With more jobs than CPUs this does not shorten the
    # wall time, which the total work sets.
    jobs = [(s, [m for m in plan[s] if m in ABLATIONS]) for s in seeds
            if len(set(plan[s]) & set(ABLATIONS)) and any(set(plan[t]) != set(plan[s]) for t in seeds)]
    split = {s for s, _ in jobs}
    jobs += [(s, [m for m in plan[s] if s not in split or m not in ABLATIONS]) for s in seeds]
    out = Parallel(n_jobs=min(n_jobs, len(jobs)))(
        delayed(_run_seed)(task, settings, s, ms, models_dir, threads, True) for s, ms in jobs)
    merged: dict[int, dict[str, MethodRun]] = {s: {} for s in seeds}
    for (s, _), runs in zip(jobs, out):
        merged[s].update(runs)
    return {s: {m: merged[s][m] for m in plan[s]} for s in seeds}
