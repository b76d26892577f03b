"""How long each of notebook 01's two scoring parts takes, each in its own fresh process.

``evaluation.evaluate_seeds`` scores in two processes split by part: the scib-metrics tables of
every seed, and the donor batch tables with transfer, kNN and tree. This scores ``--seeds`` x 8
noisy copies of the Baron ortholog PCA (all 4,028 cells; the dimensions of notebook 01's eight
methods; 1 thread per process) that way and prints each part's seconds. The shorter part leaves
a CPU idle until the longer one ends: ``evaluation.evaluate_seeds_alongside`` queues the
notebook's UMAPs behind the parts to use it.

Usage: ``PYTHONPATH=lib .venv/bin/python benchmarks/scoring_balance.py [--seeds 3]``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

#: embedding widths of notebook 01's methods (PCA/Harmony 50, scVI 30, macrogene models 64, UCE/sciLaMA 32)
DIMS = {"pca": 50, "harmony": 50, "scvi": 30, "saturn": 64, "unify": 64, "unify_free": 64, "uce": 32, "scilama": 32}


def _timed_part(part: str, obs, runs) -> tuple[str, float]:
    from scprior.tasks.integration import evaluation as ev

    t = time.perf_counter()
    ev._part_worker(part, obs, runs, 1, {"min_cells": 5, "donor_batch": True, "kbet": False})
    return part, time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--processed-dir", default="data/processed")
    p.add_argument("--knowledge-dir", default="data/processed/knowledge")
    args = p.parse_args()

    from joblib import Parallel, delayed

    from scprior.tasks.integration.baselines import pca_embedding
    from scprior.tasks.integration.methods import MethodRun, prepare_task

    task = prepare_task(args.processed_dir, args.knowledge_dir, n_hvg=1000, n_hvg_orthologs=2000)
    pca = pca_embedding(task.orthologs, n_comps=max(DIMS.values()), seed=0)
    runs = {}
    for s in range(args.seeds):
        rng = np.random.default_rng(s)
        runs[s] = {}
        for m, d in DIMS.items():
            e = (pca[:, :d] + 0.5 * rng.normal(size=(len(task.obs), d))).astype(np.float32)
            unseen = {"human->mouse": e, "mouse->human": e} if m in ("saturn", "unify") else {}
            runs[s][m] = MethodRun(embedding=e, seconds=0.0, unseen=unseen)
    out = Parallel(n_jobs=2)(delayed(_timed_part)(part, task.obs, runs) for part in ("scib", "donor"))
    print(json.dumps({"seeds": args.seeds, "embeddings_per_seed": len(DIMS), "cells": len(task.obs),
                      "seconds": {part: round(t, 1) for part, t in out}}, indent=1))


if __name__ == "__main__":
    main()
