"""Speed of the CPA-style drug-response model at the demo size: training seconds per epoch, cells
per second (training and counterfactual prediction), peak memory. Runs unchanged on a GPU (device
picked by ``scprior.runtime.pick_device``).

    python benchmarks/drug_response.py [--epochs 3] [--threads 1] [--device auto]

Uses ``data/processed/drug_sciplex_simulated.h5ad`` and ``drug_glioblastoma.h5ad``
(``dvc repro drug_data``); model sizes come from ``params.yaml``
(``notebooks.04_drug_dose_response.model``). Prints one line per dataset and model variant.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from scprior.config import notebook_params
from scprior.data.drug_fingerprints import morgan_fingerprints
from scprior.data.drug_prepare import read_drug_dataset
from scprior.knowledge.store import load_embeddings
from scprior.runtime import pick_device, set_threads
from scprior.tasks.drug_response import recipes
from scprior.tasks.drug_response.data import DrugTask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    set_threads(args.threads)
    params = notebook_params("04_drug_dose_response")
    settings = recipes.CPASettings.from_dict({**params["model"], "max_epochs": args.epochs, "patience": None})
    emb = load_embeddings(params["gene_embedding_source"], "human", params["knowledge_dir"])
    device = pick_device(args.device)
    print(f"device {device}, threads {args.threads}, {args.epochs} epochs, settings {settings}")
    for name, split, specs in (
        ("sciplex_simulated", "split_ood_dose", [recipes.ModelSpec("cpa_knowledge"), recipes.ModelSpec("cpa", use_gene_embeddings=False),
                                                 recipes.ModelSpec("chemcpa_knowledge", drug_embedding="fingerprint")]),
        ("glioblastoma", "split_patient_PW030", [recipes.ModelSpec("cpa_knowledge")]),
    ):
        task = DrugTask.from_adata(read_drug_dataset(name, params["processed_dir"]))
        genes, _ = emb.lookup(task.genes, missing="zero")
        fp = morgan_fingerprints([task.smiles[d] for d in task.drugs]) if task.smiles else None
        train = np.flatnonzero(task.split(split) == "train")
        n_fit = int(round(len(train) * (1 - settings.val_fraction)))
        warm = recipes.CPASettings.from_dict({**params["model"], "max_epochs": 1, "patience": None})
        recipes.train_cpa(task, train[:512], specs[0], warm, seed=0, gene_embeddings=genes, fingerprints=fp,
                          device=args.device)  # untimed warm-up (first-call allocations, thread pools)
        for spec in specs:
            t0 = time.perf_counter()
            model, result = recipes.train_cpa(task, train, spec, settings, seed=0, gene_embeddings=genes,
                                              fingerprints=fp, device=args.device)
            per_epoch = (time.perf_counter() - t0) / max(result.epochs_run, 1)
            cond = task.conditions(np.flatnonzero(task.split(split) == "ood")).iloc[0].to_dict()
            veh = np.flatnonzero(task.control & task.cov_mask(cond["covariates"]))
            t1 = time.perf_counter()
            for _ in range(5):
                recipes.predict_condition(model, task, veh, cond, seed=0)
            pred_rate = 5 * len(veh) / (time.perf_counter() - t1)
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"{name:18s} {spec.name:18s} cells {task.counts.shape[0]:5d} genes {task.n_genes:4d}: "
                  f"{per_epoch:6.2f} s/epoch, {n_fit / per_epoch:7.0f} training cells/s, "
                  f"{pred_rate:8.0f} predicted cells/s, peak RSS {peak:.0f} MiB")
    if torch.cuda.is_available():
        print(f"GPU peak memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
