"""How much of notebook 01's scoring is JAX compiling? First vs repeated calls in one process.

Scores ``--embeddings`` noisy copies of the Baron ortholog PCA (all 4,028 cells, 1 thread) twice
with the scib-metrics Benchmarker (bio on cell type, batch on species) and twice with the donor
batch tables (per species, donors as batch), and prints the seconds of each call. JAX compiles
scib-metrics' functions once per process and array shape, so the first call pays for compiling
and the repeat does not: the reason ``evaluation.evaluate_seeds`` splits scoring by part (one
process for every seed's main tables, one for the donor tables) rather than by seed.

Usage: ``PYTHONPATH=lib .venv/bin/python benchmarks/scoring_compile.py [--embeddings 3]``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--embeddings", type=int, default=3)
    p.add_argument("--processed-dir", default="data/processed")
    p.add_argument("--knowledge-dir", default="data/processed/knowledge")
    args = p.parse_args()

    from scprior.tasks.integration.methods import fixed_threads

    fixed_threads(1)
    from scprior.tasks.integration.baselines import pca_embedding
    from scprior.tasks.integration.evaluation import with_embeddings
    from scprior.tasks.integration.methods import prepare_task
    from scprior.tasks.integration.metrics import donor_batch_scores, scib_benchmark

    task = prepare_task(args.processed_dir, args.knowledge_dir, n_hvg=1000, n_hvg_orthologs=2000)
    pca = pca_embedding(task.orthologs, n_comps=50, seed=0)
    adata = with_embeddings(task.obs, {})
    adata.obsm["X_pca"] = pca
    rng = np.random.default_rng(0)
    keys = []
    for i in range(args.embeddings):
        adata.obsm[f"X_e{i}"] = (pca[:, :32] + rng.normal(scale=0.1 * i, size=(len(pca), 32))).astype(np.float32)
        keys.append(f"X_e{i}")
    out = {"cells": int(adata.n_obs), "embeddings": len(keys)}
    for name, call in (("scib", lambda: scib_benchmark(adata, keys, pre_key="X_pca")),
                       ("donor", lambda: donor_batch_scores(adata, keys, pre_key="X_pca"))):
        for attempt in ("first", "repeat"):
            t = time.perf_counter()
            call()
            out[f"{name}_{attempt}_s"] = round(time.perf_counter() - t, 1)
            print(name, attempt, out[f"{name}_{attempt}_s"], flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
