"""Streamed vs in-memory training on real cells: the UCE-style encoder and GeneCompass on Baron human
pancreas (``data/processed/baron_human.h5ad``, read backed chunk by chunk) with the repository's
protein k-mer embeddings and gene table (prints a table, writes a JSON; asserts nothing).

    python benchmarks/stream_training.py                 # chunks of 500 cells, 2 epochs
    python benchmarks/stream_training.py --chunk-size 1000 --epochs 3

For each model: the in-memory recipe (``train_uce`` / ``build_vocab`` + ``pretrain_genecompass``)
and the streamed one (``pretrain_uce_stream`` / ``build_vocab_stream`` + ``pretrain_genecompass_stream``)
with the same settings (notebook 01's UCE-style configuration; a small GeneCompass without priors),
``fit``'s seconds and the held-out loss of the chosen epoch (the two recipes hold out different
cells, so the losses are on different cells). Then an exactness check on the same real data: one
chunk holding every cell, no held-out cells, one epoch: do both recipes give the same weights?
One thread (``torch.set_num_threads(1)``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _same(a, b) -> bool:
    import torch

    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(ROOT / "data" / "processed" / "baron_human.h5ad"))
    ap.add_argument("--knowledge", default=str(ROOT / "data" / "processed" / "knowledge"))
    ap.add_argument("--chunk-size", type=int, default=500)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "figures" / "benchmarks" / "stream_training_baron.json"))
    args = ap.parse_args()

    import anndata as ad
    import torch
    import yaml

    from scprior.data.stream import CellSource
    from scprior.knowledge import store
    from scprior.models.genecompass import (
        PretrainConfig,
        build_model,
        build_vocab,
        pretrain_genecompass,
    )
    from scprior.models.genecompass.model import GeneCompassConfig
    from scprior.models.genecompass.stream import build_vocab_stream, pretrain_genecompass_stream
    from scprior.models.uce import UCEConfig, train_uce
    from scprior.models.uce_stream import pretrain_uce_stream
    from scprior.safe_io import write_text_atomic

    torch.set_num_threads(1)
    adata = ad.read_h5ad(args.data)
    protein = {"human": store.load_embeddings("protein_kmer", "human", args.knowledge)}
    tables = {"human": store.load_gene_table("human", args.knowledge)}
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    uce_params = dict(params["notebooks"]["01_cross_species_integration"]["uce"])
    base = {**uce_params, "epochs": args.epochs, "progress": False, "device": "cpu"}
    load = [os.getloadavg()[0]]
    rows = []

    def row(model, path, seconds, extra_s, result_hist, best):
        rows.append({"model": model, "path": path, "fit_s": seconds, "other_s": extra_s, "cells": int(adata.n_obs),
                     "cells_per_s_per_epoch": adata.n_obs * len(result_hist) / seconds, "epochs": len(result_hist),
                     "best_val_loss": best})
        print(f"{model:<12}{path:<10}{seconds:>9.1f}{extra_s:>9.1f}{rows[-1]['cells_per_s_per_epoch']:>10.0f}"
              f"{best:>10.4f}", flush=True)

    print(f"{'model':<12}{'path':<10}{'fit s':>9}{'other s':>9}{'cells/s':>10}{'val loss':>10}", flush=True)
    # UCE-style encoder
    cfg = UCEConfig(**base)
    t0 = time.perf_counter()
    mem = train_uce({"human": adata}, protein, tables, config=cfg, diagnostics=0)
    row("uce", "memory", mem.train.seconds, time.perf_counter() - t0 - mem.train.seconds, mem.train.history,
        mem.train.best_val_loss)
    t0 = time.perf_counter()
    st = pretrain_uce_stream({"human": CellSource(args.data)}, protein, tables, config=cfg, chunk_size=args.chunk_size)
    row("uce", "stream", st.train.seconds, time.perf_counter() - t0 - st.train.seconds, st.train.history,
        st.train.best_val_loss)
    one = UCEConfig(**{**base, "epochs": 1, "val_fraction": 0.0})
    a = train_uce({"human": adata}, protein, tables, config=one, diagnostics=0)
    b = pretrain_uce_stream({"human": CellSource(args.data)}, protein, tables, config=one, chunk_size=adata.n_obs)
    exact = {"uce": _same(a.model, b.model) and a.train.history == b.train.history}
    # GeneCompass (no priors: the streamed path does not touch them)
    gcfg = GeneCompassConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, top_k=128, priors=(),
                             dropout=0.0)
    pcfg = PretrainConfig(epochs=args.epochs, batch_size=64, lr=1e-3, progress=False, device="cpu")
    t0 = time.perf_counter()
    vocab = build_vocab([("human", adata)])
    vocab_mem_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    vocab_st = build_vocab_stream({"human": args.data}, chunk_size=args.chunk_size)
    vocab_st_s = time.perf_counter() - t0
    vocab_equal = (vocab.symbols == vocab_st.symbols and bool(np.array_equal(vocab.medians, vocab_st.medians)))
    g1 = build_model(vocab, {}, gcfg, seed=0)
    t0 = time.perf_counter()
    r1 = pretrain_genecompass(g1, g1.encode(adata, "human"), pcfg)
    row("genecompass", "memory", r1.seconds, time.perf_counter() - t0 - r1.seconds + vocab_mem_s, r1.history,
        r1.best_val_loss)
    g2 = build_model(vocab_st, {}, gcfg, seed=0)
    t0 = time.perf_counter()
    r2 = pretrain_genecompass_stream(g2, {"human": args.data}, pcfg, chunk_size=args.chunk_size)
    row("genecompass", "stream", r2.seconds, time.perf_counter() - t0 - r2.seconds + vocab_st_s, r2.history,
        r2.best_val_loss)
    p1 = PretrainConfig(**{**pcfg.__dict__, "epochs": 1, "val_fraction": 0.0})
    g3, g4 = build_model(vocab, {}, gcfg, seed=0), build_model(vocab, {}, gcfg, seed=0)
    h3 = pretrain_genecompass(g3, g3.encode(adata, "human"), p1).history
    h4 = pretrain_genecompass_stream(g4, {"human": args.data}, p1, chunk_size=adata.n_obs).history
    exact["genecompass"] = _same(g3.model, g4.model) and h3 == h4
    load.append(os.getloadavg()[0])
    out = {"data": str(Path(args.data).relative_to(ROOT)) if Path(args.data).is_relative_to(ROOT) else args.data,
           "cells": int(adata.n_obs), "genes": int(adata.n_vars), "chunk_size": args.chunk_size, "epochs": args.epochs,
           "uce_config": {k: v for k, v in base.items() if k not in ("progress", "device")},
           "genecompass_config": {"hidden_size": 32, "num_layers": 2, "top_k": 128, "priors": [], "batch_size": 64},
           "rows": rows, "vocab_seconds": {"build_vocab": vocab_mem_s, "build_vocab_stream": vocab_st_s},
           "vocab_stream_equals_build_vocab": vocab_equal, "one_chunk_equals_in_memory": exact,
           "load_1min": load, "machine": f"{os.cpu_count()} CPU cores, 1 thread, shared with other jobs"}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, json.dumps(out, indent=1))
    print(f"vocabulary: build_vocab {vocab_mem_s:.1f} s, build_vocab_stream {vocab_st_s:.1f} s, equal: {vocab_equal}")
    print(f"one chunk of every cell, no held-out cells, 1 epoch: same weights as in memory: {exact}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
