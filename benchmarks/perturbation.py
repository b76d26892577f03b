"""Speed and memory of the perturbation models at the demo size: training seconds per epoch,
predictions per second, peak memory. Runs unchanged on a GPU (device picked by
``scprior.runtime.pick_device``).

    python benchmarks/perturbation.py [--epochs 3] [--threads 1] [--device auto]

Uses ``data/processed/perturb_simulated.h5ad`` (``dvc repro perturb_simulated``) when present, else
simulates the demo from the knowledge layer's regulon. Model sizes come from ``params.yaml``
(``notebooks.05_perturbation.deep``). Prints one line per model and the baselines' fit+predict time.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from scprior.config import notebook_params, section
from scprior.data.perturbation_prepare import (
    perturbation_path,
    read_perturbation_dataset,
    sim_config,
)
from scprior.data.perturbation_splits import simulation_split
from scprior.knowledge.store import load_embeddings
from scprior.runtime import pick_device, set_threads
from scprior.tasks import perturbation as pt


def _dataset(processed_dir: str, knowledge_dir: str):
    if perturbation_path("perturb_simulated", processed_dir).is_file():
        return read_perturbation_dataset("perturb_simulated", processed_dir)
    from scprior.data.perturb_sim import simulate_perturb_seq
    from scprior.knowledge.store import load_regulon

    return simulate_perturb_seq(load_regulon(knowledge_dir), sim_config(section("perturbation_sim")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="default: notebooks.05_perturbation.threads")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--processed-dir", default="data/processed")
    parser.add_argument("--knowledge-dir", default="data/processed/knowledge")
    args = parser.parse_args()
    params = notebook_params("05_perturbation")
    threads = set_threads(args.threads or params["threads"])
    device = pick_device(args.device)
    adata = _dataset(args.processed_dir, args.knowledge_dir)
    task = pt.PerturbationData.from_adata(adata)
    split = simulation_split(task.conditions, seed=1)
    test = split.conditions("test")
    print(f"demo: {adata.n_obs} cells x {adata.n_vars} genes, {len(task.conditions) - 1} perturbation labels; "
          f"device {device}, {threads} thread(s)")
    text = None
    try:
        text = load_embeddings("text_minilm", "human", args.knowledge_dir)
    except Exception as exc:  # noqa: BLE001 - the benchmark still times the scGPT setting
        print(f"(no text embeddings: {exc}; scGenePT timed with none)")
    cfg = pt.DeepConfig(**{**params["deep"], "max_epochs": args.epochs, "patience": None, "device": device,
                           "progress": False})
    for name, language in (("scgpt", None), ("scgenept_text", text)):
        if name == "scgenept_text" and language is None:
            continue
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        model = pt.PerturbationTransformer(task, language=language, config=cfg, seed=1, name=name)
        result = model.fit(split)
        start = time.perf_counter()
        model.predict(test)
        seconds = time.perf_counter() - start
        cells = len(test) * min(cfg.n_ctrl_predict, len(task.ctrl_cells))
        gpu = f", GPU peak {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB" if device.startswith("cuda") else ""
        print(f"{name}: {result.seconds / result.epochs_run:.2f} s/epoch ({cfg.pairs_per_epoch} cell pairs, "
              f"{cfg.genes_per_sample} genes per sequence); predictions: {cells / seconds:.0f} cells/s, "
              f"{len(test) / seconds:.1f} perturbations/s{gpu}")
    start = time.perf_counter()
    pt.run_methods(task, split, test, knowledge=pt.KnowledgeInputs(text=text), methods=("no_change", "train_mean",
                   "additive", "combined", "linear_pca", "ridge_text", "rf_text", "residual_text") if text is not None else
                   ("no_change", "train_mean", "additive", "combined", "linear_pca"), seed=1)
    print(f"baselines: fit + predict {time.perf_counter() - start:.1f} s")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
