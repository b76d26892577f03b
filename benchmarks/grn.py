"""Speed of the GRN methods at the demo size: in-silico TF deletions per second (cells x TFs per
second) on a GeneCompass of the notebook's size, and GRNBoost2 targets per second with 1 and 2
dask workers. Runs unchanged on a GPU (device picked by ``scprior.runtime.pick_device``).

    python benchmarks/grn.py [--tfs 8] [--cells 150] [--targets 120] [--threads 2] [--device auto]

Uses Baron human (``data/processed/baron_human.h5ad``) and the truth parquet (DVC stages
``prepare``, ``grn_truth``); sizes come from ``params.yaml`` (``notebooks.03_grn_inference``). The
model is freshly initialised (speed does not depend on training). Prints one line per measurement.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from scprior.config import notebook_params
from scprior.data.grn_truth import read_truth_table
from scprior.data.processed import read_processed
from scprior.runtime import pick_device, set_threads
from scprior.tasks.grn import baselines as bl
from scprior.tasks.grn import evaluation as ev
from scprior.tasks.grn.deletion import DeletionSettings, run_deletion
from scprior.tasks.grn.genecompass_deletion import GeneCompassEncoder, GrnModelSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tfs", type=int, default=8)
    parser.add_argument("--cells", type=int, default=None, help="cells per TF (default: deletion.max_cells)")
    parser.add_argument("--targets", type=int, default=120, help="GRNBoost2 targets timed")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--processed-dir", default="data/processed")
    parser.add_argument("--truth-file", default="data/processed/grn/truth.parquet")
    args = parser.parse_args()
    p = notebook_params("03_grn_inference")
    threads = set_threads(args.threads or p["threads"])
    device = pick_device(args.device)
    from scprior.models.genecompass import GeneCompassConfig, build_model, build_vocab

    adata = read_processed("baron_human", args.processed_dir)
    truths = read_truth_table(args.truth_file, [t for t in p["truths"] if t != "dorothea_ab"])
    genes = ev.select_genes(adata, truths, n_hvg=p["n_hvg"], min_cells=p["min_cells"], min_targets=p["min_targets"])
    tfs = ev.candidate_tfs(truths, genes, p["min_targets"])[: args.tfs]
    cells = ev.subset(adata, genes)
    ms = GrnModelSettings(**{k: tuple(v) if isinstance(v, list) else v for k, v in p["genecompass"].items()})
    vocab = build_vocab([("human", cells)], min_cells=1)
    cfg = GeneCompassConfig(hidden_size=ms.hidden_size, num_layers=ms.num_layers, num_heads=ms.num_heads,
                            intermediate_size=ms.intermediate_size, top_k=ms.top_k)
    gc = build_model(vocab, {}, cfg, seed=0)
    gc.model.to(device)
    enc = gc.encode(cells, "human")
    gene_to_id = {g: vocab.token("human", g) for g in genes if vocab.token("human", g) >= 0}
    max_cells = args.cells or p["deletion"]["max_cells"]
    settings = DeletionSettings(max_cells=max_cells, batch_size=p["deletion"]["batch_size"], device=device)
    present = {t: int((enc.input_ids == gene_to_id[t]).any(1).sum()) for t in tfs if t in gene_to_id}
    t0 = time.perf_counter()
    run_deletion(GeneCompassEncoder(gc), enc.input_ids, enc.values, enc.species, cells.obs["cell_type"].astype(str),
                 list(present), gene_to_id, settings=settings, progress=False)
    sec = time.perf_counter() - t0
    deletions = sum(min(n, max_cells) for n in present.values())
    print(f"deletion  device={device} threads={threads} model {ms.hidden_size}d x {ms.num_layers} layers, "
          f"top_k {ms.top_k}: {len(present)} TFs, {deletions} cell-deletions in {sec:.1f} s = "
          f"{deletions / sec:.1f} cells x TFs per second")

    x = bl.dense(cells.X)[: p["baselines"]["max_cells_arboreto"]]
    rng = np.random.default_rng(0)
    targets = sorted(set(rng.choice(genes, size=min(args.targets, len(genes)), replace=False)) | set(tfs))
    cols = [genes.index(g) for g in targets]
    for workers in (1, 2):
        t0 = time.perf_counter()
        bl.arboreto_scores(x[:, cols], targets, tfs, "grnboost2", n_workers=workers, seed=0,
                           n_estimators=p["baselines"].get("grnboost2_trees"))
        sec = time.perf_counter() - t0
        print(f"grnboost2 {workers} dask worker(s): {len(targets)} targets x {len(x)} cells, {len(tfs)} regulators "
              f"in {sec:.1f} s (cluster start included) = {len(targets) / sec:.2f} targets per second")


if __name__ == "__main__":
    main()
