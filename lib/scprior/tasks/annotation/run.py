"""The whole annotation benchmark of notebook 02: pretrain GeneCompass, fine-tune per task and
seed, fit every baseline on the same training cells, score the test cells once, run ablations."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from scprior.errors import ScpriorInputError
from scprior.models.genecompass import GeneCompassConfig
from scprior.models.genecompass.api import PretrainConfig
from scprior.tasks.annotation import baselines as bl
from scprior.tasks.annotation.data import (
    CROSS_SPECIES,
    TaskSplit,
    load_datasets,
    make_tasks,
    validation_mask,
)
from scprior.tasks.annotation.genecompass import (
    FinetuneConfig,
    finetune,
    prepare_corpus,
    pretrained_model,
)
from scprior.tasks.annotation.metrics import scores

METHODS = ("genecompass", "genecompass_frozen", "celltypist", "scanvi", "logistic_regression", "knn_pca", "saturn_lr")
ABLATIONS = ("all_priors", "no_priors", "text", "protein", "go", "grn", "family", "coexp", "no_pretraining")


def merge(base: Mapping, over: Mapping | None) -> dict:
    """``base`` with ``over`` merged in (one level of nested dicts)."""
    out = dict(base)
    for k, v in dict(over or {}).items():
        out[k] = {**dict(out[k]), **dict(v)} if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


@dataclass
class AnnotationResults:
    """Per-seed records (task, method, seed, accuracy, macro_f1), ablation records, per-task
    details of the first seed ({task: {method: scores}}), timings and training notes."""

    records: pd.DataFrame
    ablations: pd.DataFrame
    details: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    notes: dict = field(default_factory=dict)


def task_overview(task: TaskSplit) -> dict:
    """Cells, classes and test classes never seen in training (they count as errors)."""
    test_classes = set(task.test.obs["cell_type"].astype(str))
    return {"train_species": task.train_species, "test_species": task.test_species,
            "train_cells": int(task.train.n_obs), "test_cells": int(task.test.n_obs),
            "train_classes": len(task.classes), "test_classes": len(test_classes),
            "test_classes_not_in_training": sorted(test_classes - set(task.classes)),
            "test_cells_of_unseen_classes": int((~task.test.obs["cell_type"].astype(str).isin(task.classes)).sum())}


def _labels(task: TaskSplit) -> tuple[list[str], np.ndarray]:
    classes = task.classes
    idx = {c: i for i, c in enumerate(classes)}
    return classes, np.asarray([idx[c] for c in task.train.obs["cell_type"].astype(str)])


def _genecompass_runs(gc, task: TaskSplit, seeds, ft: FinetuneConfig, val_fraction: float, modes,
                      on_record) -> dict:
    """Fine-tune (and/or frozen) ``gc`` on ``task`` for each seed; test predicted once per run."""
    classes, y = _labels(task)
    tr_enc = gc.encode(task.train, task.train_species)
    te_enc = gc.encode(task.test, task.test_species)
    notes = {}
    for seed in seeds:
        val = validation_mask(y, val_fraction, seed=seed)
        for name, frozen in modes:
            t = time.perf_counter()
            run = finetune(gc, tr_enc.subset(np.flatnonzero(~val)), y[~val], tr_enc.subset(np.flatnonzero(val)),
                           y[val], n_classes=len(classes), frozen=frozen, config=ft, seed=seed)
            pred = np.asarray(classes)[run.predict(te_enc)]
            on_record(name, seed, pred, time.perf_counter() - t)
            notes[f"{name}_seed{seed}"] = {"best_epoch": run.result.best_epoch, "epochs": run.result.epochs_run,
                                           "val_macro_f1": 1.0 - run.result.best_val_loss}
    return notes


def run_annotation(settings: Mapping, *, progress: bool = True) -> AnnotationResults:
    """Run notebook 02's benchmark from its params (``notebooks.02_cell_type_annotation``).

    BLAS/OpenMP pools (NumPy, scikit-learn) are limited to ``threads`` for the whole run: on a
    shared 2-core machine their default pool oversubscribes the CPU and runs ~10x slower.
    """
    from threadpoolctl import threadpool_limits

    threads = int(settings.get("threads") or 0) or None
    with threadpool_limits(limits=threads):
        return _run(settings, progress=progress)


def _run(settings: Mapping, *, progress: bool) -> AnnotationResults:
    s = dict(settings)
    quick = bool(s.get("quick", False))
    if quick:
        s = merge(s, s.get("quick_overrides"))
    seeds = [int(x) for x in s["seeds"]]
    baseline_seeds = [int(x) for x in s.get("baseline_seeds", seeds)]
    methods = list(s["methods"])
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ScpriorInputError(f"Unknown method(s) {unknown}; known: {list(METHODS)}.")
    t0 = time.perf_counter()
    datasets = load_datasets(s["processed_dir"], max_cells=s.get("quick_max_cells") if quick else None,
                             seed=seeds[0])
    from scprior.knowledge import store

    orth = store.load_orthologs(s["knowledge_dir"])
    o1 = orth[orth["homology_type"] == "one2one"]
    mouse_to_human = {m.upper(): h for h, m in zip(o1["human"], o1["mouse"])}
    tasks = make_tasks(datasets, test_donors=s["test_donors"], pbmc_test_fraction=float(s["pbmc_test_fraction"]),
                       split_seed=int(s.get("split_seed", 0)), tasks=s["tasks"])
    model_cfg = GeneCompassConfig(**dict(s["model"]))
    pre_cfg = PretrainConfig(**{**dict(s["pretrain"]), "seed": seeds[0], "progress": progress})
    ft = FinetuneConfig(**dict(s["finetune"]))
    prior_names = list(s["priors"])
    seconds: dict[str, float] = {"load": time.perf_counter() - t0}
    t = time.perf_counter()
    pre = prepare_corpus(datasets, knowledge_dir=s["knowledge_dir"], orthologs=mouse_to_human,
                         prior_names=prior_names, model=model_cfg, pretrain=pre_cfg,
                         max_genes_per_species=s.get("max_genes_per_species"), prior_dim=int(s["prior_dim"]),
                         promoter_file=s.get("promoter_file"))
    seconds["corpus_and_priors"] = time.perf_counter() - t
    from scprior.models.genecompass.priors import coverage

    notes: dict = {"vocab_size": len(pre.vocab), "prior_coverage": coverage(pre.priors),
                   "corpus_cells": int(len(pre.encoding)), "corpus_val_cells": int(len(pre.val_idx)),
                   "tasks": {n: task_overview(t) for n, t in tasks.items()}}
    models_dir = Path(s["models_dir"]) if s.get("models_dir") else None
    if models_dir is not None:
        from scprior.safe_io import check_writable

        check_writable(models_dir)
    t = time.perf_counter()
    gc = pretrained_model(pre, model_cfg, pre_cfg, priors=prior_names,
                          checkpoint=models_dir / "genecompass.pt" if models_dir else None)
    seconds["pretrain"] = time.perf_counter() - t
    notes["pretrain"] = {k: gc.info.get(k) for k in ("pretrain_best_epoch", "pretrain_epochs_run", "prior_alpha",
                                                     "pretrain_seconds")}
    notes["pretrain_history"] = gc.info.get("pretrain_history")

    rows, details = [], {}
    b = dict(s.get("baselines", {}))
    saturn_z = None

    def recorder(name):
        y_test = tasks[name].test.obs["cell_type"].astype(str).to_numpy()
        details.setdefault(name, {})

        def record(method, seed, pred, secs, _name=name, _y=y_test):
            sc = scores(_y, pred)
            rows.append({"task": _name, "method": method, "seed": seed, "accuracy": sc["accuracy"],
                         "macro_f1": sc["macro_f1"], "seconds": secs})
            if seed == seeds[0]:
                details[_name][method] = sc
            if progress:
                print(f"[annotation] {_name} {method} seed {seed}: macro-F1 {sc['macro_f1']:.3f} ({secs:.0f} s)",
                      flush=True)

        return record

    # torch models first: scvi-tools/lightning reconfigure torch's thread pool, after which small
    # torch models run several times slower on CPU; so GeneCompass (and its ablations) run before
    # any baseline, and scANVI runs last
    modes = [(m, m == "genecompass_frozen") for m in ("genecompass", "genecompass_frozen") if m in methods]
    for name, task in tqdm(list(tasks.items()), desc="genecompass tasks", disable=not progress):
        if modes:
            t = time.perf_counter()
            notes[name] = _genecompass_runs(gc, task, seeds, ft, float(s["val_fraction"]), modes, recorder(name))
            seconds[f"genecompass_{name}"] = time.perf_counter() - t
    records = pd.DataFrame(rows)

    # ---------------------------------------------------------------------------- ablations
    abl_rows = []
    abl_task = s.get("ablation_task")
    variants = list(s.get("ablations", []))
    if abl_task and variants:
        if abl_task not in tasks:
            raise ScpriorInputError(f"ablation_task {abl_task!r} is not among the tasks run ({list(tasks)}).")
        task = tasks[abl_task]
        y_test = task.test.obs["cell_type"].astype(str).to_numpy()
        abl_seeds = [int(x) for x in s.get("ablation_seeds", seeds[:1])]
        abl_epochs = s.get("ablation_pretrain_epochs")
        abl_pre = pre_cfg if abl_epochs is None else PretrainConfig(**{**pre_cfg.__dict__, "epochs": int(abl_epochs)})
        same_budget = abl_pre.epochs == pre_cfg.epochs
        t = time.perf_counter()
        for variant in tqdm(variants, desc="ablations", disable=not progress):
            if variant == "all_priors" and same_budget and "genecompass" in methods:  # the main model's runs
                same = records[(records["task"] == abl_task) & (records["method"] == "genecompass")
                               & records["seed"].isin(abl_seeds)]
                abl_rows.extend({**r, "method": "all_priors"} for r in same.to_dict("records"))
                continue
            if variant == "all_priors":
                vgc = gc if same_budget else pretrained_model(pre, model_cfg, abl_pre, priors=prior_names)
            elif variant == "no_pretraining":
                vgc = pretrained_model(pre, model_cfg, abl_pre, priors=prior_names, do_pretrain=False)
            elif variant == "no_priors":
                vgc = pretrained_model(pre, model_cfg, abl_pre, priors=())
            elif variant in prior_names:
                vgc = pretrained_model(pre, model_cfg, abl_pre, priors=(variant,))
            else:
                raise ScpriorInputError(f"Unknown ablation {variant!r}; known: {list(ABLATIONS)} (priors must be "
                                        f"among {prior_names}).")

            def rec(method, seed, pred, secs, _v=variant):
                sc = scores(y_test, pred)
                abl_rows.append({"task": abl_task, "method": _v, "seed": seed, "accuracy": sc["accuracy"],
                                 "macro_f1": sc["macro_f1"], "seconds": secs})

            _genecompass_runs(vgc, task, abl_seeds, ft, float(s["val_fraction"]), [(variant, False)], rec)
            if progress:
                print(f"[annotation] ablation {variant}: macro-F1 {abl_rows[-1]['macro_f1']:.3f}", flush=True)
        seconds["ablations"] = time.perf_counter() - t
    spaces = {}
    for name, task in tqdm(list(tasks.items()), desc="baselines", disable=not progress):
        record = recorder(name)
        t_task = time.perf_counter()
        xtr, xte = bl.shared_space(task, orth)
        y_train = xtr.obs["cell_type"].astype(str).to_numpy()
        hv = bl.hvgs(xtr, int(b.get("n_hvg", 2000)))
        # deterministic given the training cells (fixed CV folds): one run, recorded under the first seed
        if "logistic_regression" in methods:
            t = time.perf_counter()
            pred, _ = bl.logistic_regression(xtr[:, hv].X, y_train, xte[:, hv].X, cs=b.get("lr_cs", (0.01, 0.1, 1.0)),
                                             folds=int(b.get("lr_folds", 3)), seed=0,
                                             max_iter=int(b.get("lr_max_iter", 100)))
            record("logistic_regression", seeds[0], pred, time.perf_counter() - t)
        if "knn_pca" in methods:
            t = time.perf_counter()
            pred, _ = bl.knn_pca(xtr[:, hv].X, y_train, xte[:, hv].X, n_pcs=int(b.get("n_pcs", 50)),
                                 k=int(b.get("knn_k", 15)), seed=0)
            record("knn_pca", seeds[0], pred, time.perf_counter() - t)
        for seed in baseline_seeds:  # stochastic baselines
            if "celltypist" in methods:
                t = time.perf_counter()
                pred, _ = bl.celltypist_predict(xtr[:, hv], y_train, xte[:, hv], seed=seed,
                                                max_iter=int(b.get("celltypist_max_iter", 200)))
                record("celltypist", seed, pred, time.perf_counter() - t)
            if "saturn_lr" in methods and name in CROSS_SPECIES:
                t = time.perf_counter()
                saturn_z = saturn_z or {}
                if seed not in saturn_z:  # one label-free SATURN run per seed serves both directions
                    protein = {sp_: store.load_embeddings("protein_kmer", sp_, s["knowledge_dir"])
                               for sp_ in ("human", "mouse")}
                    saturn_z[seed] = bl.saturn_embeddings({"human": datasets["human"], "mouse": datasets["mouse"]},
                                                          protein, seed=seed, settings=b.get("saturn"),
                                                          n_hvg=int(b.get("saturn_n_hvg", 1000)))
                z = saturn_z[seed]
                pred, _ = bl.saturn_lr(z[task.train_species], y_train, z[task.test_species], seed=seed)
                record("saturn_lr", seed, pred, time.perf_counter() - t)
        spaces[name] = (xtr, xte, y_train, hv)
        seconds[f"baselines_{name}"] = time.perf_counter() - t_task
    if "scanvi" in methods:
        for name, (xtr, xte, y_train, hv) in spaces.items():
            record = recorder(name)
            for seed in baseline_seeds:
                t = time.perf_counter()
                pred, _ = bl.scanvi_predict(xtr[:, hv], y_train, xte[:, hv], seed=seed,
                                            scvi_epochs=int(b.get("scvi_epochs", 30)),
                                            scanvi_epochs=int(b.get("scanvi_epochs", 10)),
                                            batch_size=int(b.get("scvi_batch_size", 128)))
                record("scanvi", seed, pred, time.perf_counter() - t)
    records = pd.DataFrame(rows)
    seconds["total"] = time.perf_counter() - t0
    return AnnotationResults(records, pd.DataFrame(abl_rows), details, seconds, notes)
