"""Speed and memory of the cross-species integration models on CPU (prints numbers; asserts nothing).

    python benchmarks/integration.py                      # demo size and 100k cells, every model
    python benchmarks/integration.py --sizes 4028 --models unify
    python benchmarks/integration.py --threads 2 --batches 20

Per model (``unify`` = macrogene integrator with protein + text macrogenes, ``uce``, ``scilama``)
and per size (synthetic negative-binomial counts for two species with the demo's gene numbers and
random gene embeddings and positions; the demo size is the processed Baron cells, both species):

* training seconds per epoch: the first ``--batches`` batches are trained through
  :func:`scprior.models.training.fit` and the time is scaled to a full epoch (stated as such);
* cells embedded per second (inference of up to ``--embed-cells`` cells);
* peak resident memory of the process that ran it (each (model, size) runs in its own process).

Settings are the notebook's (``params.yaml``, ``notebooks.01_cross_species_integration``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import time

import numpy as np

MODELS = ("unify", "uce", "scilama")


def demo_cells() -> int:
    """Cells of the processed Baron demo (both species), read in backed mode (no matrix loaded)."""
    import anndata as ad

    from scprior.data.processed import processed_path

    try:
        return sum(ad.read_h5ad(processed_path(n), backed="r").n_obs for n in ("baron_human", "baron_mouse"))
    except (OSError, FileNotFoundError):
        sys.exit("benchmarks/integration.py: data/processed lacks the Baron files; run `dvc repro prepare` "
                 "or pass --sizes.")


def synthetic(n_cells: int, n_genes: int, *, seed: int = 0, n_types: int = 8):
    """Two species of NB counts (half the cells each), cell types, random embeddings and gene tables."""
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    from scprior.knowledge.embeddings import GeneEmbeddings

    rng = np.random.default_rng(seed)
    adatas, protein, text, tables = {}, {}, {}, {}
    for k, species in enumerate(("human", "mouse")):
        n = n_cells // 2 + (n_cells % 2 if k == 0 else 0)
        genes = [f"GENE{i}" if species == "human" else f"Gene{i}" for i in range(n_genes)]
        types = rng.integers(0, n_types, n)
        means = rng.gamma(0.3, 2.0, size=(n_types, n_genes))
        lib = rng.lognormal(0.0, 0.3, size=(n, 1))
        counts = rng.poisson(means[types] * lib).astype(np.float32)
        a = ad.AnnData(X=sp.csr_matrix(counts), obs=pd.DataFrame({"cell_type": [f"t{t}" for t in types]},
                                                                  index=[f"{species}{i}" for i in range(n)]),
                       var=pd.DataFrame(index=genes))
        a.layers["counts"] = a.X.copy()
        adatas[species] = a
        protein[species] = GeneEmbeddings(np.asarray(genes), rng.normal(size=(n_genes, 256)), species, "protein_kmer")
        text[species] = GeneEmbeddings(np.asarray(genes), rng.normal(size=(n_genes, 384)), species, "text_minilm")
        tables[species] = pd.DataFrame({"symbol": genes, "chromosome": rng.choice([str(c) for c in range(1, 20)], n_genes),
                                        "start": rng.integers(0, 10**8, n_genes)})
    return adatas, {"protein": protein, "text": text}, tables


def _timed_fit(model, loss_fn, loader, n_batches: int, lr: float):
    from scprior.models.training import TrainConfig, fit

    batches = list(itertools.islice(iter(loader), n_batches))
    start = time.perf_counter()
    fit(model, loss_fn, batches, None, TrainConfig(max_epochs=1, lr=lr, patience=None, progress=False, device="cpu"))
    return (time.perf_counter() - start) / len(batches), len(batches)


def bench_one(model_name: str, n_cells: int, *, n_batches: int, embed_cells: int, seed: int = 0) -> dict:
    """Run one (model, size) measurement in this process; return the numbers."""
    import torch

    from scprior.config import notebook_params
    from scprior.models import macrogene_integrator as mi
    from scprior.models import scilama as sl
    from scprior.models import uce
    from scprior.models.batching import predict_batches, rows_loader

    params = notebook_params("01_cross_species_integration")
    # genes as the notebook gives them: the macrogene models n_hvg per species, sciLaMA the n_hvg_orthologs
    # one-to-one orthologs; UCE samples sample_size genes per cell whatever the gene count, so n_hvg is used
    n_genes = int(params["n_hvg_orthologs"] if model_name == "scilama" else params["n_hvg"])
    adatas, emb, tables = synthetic(n_cells, n_genes, seed=seed)
    out = {"model": model_name, "cells": n_cells, "genes": n_genes, "threads": torch.get_num_threads()}
    if model_name == "unify":
        cfg = mi.MacrogeneIntegratorConfig(**{**params["macrogenes"], "pretrain_epochs": 0, "progress": False,
                                              "device": "cpu", "adversarial_weight": params["unify_adversarial_weight"]})
        pre = mi.pretrain(adatas, emb, config=cfg)  # builds macrogenes and the model; 0 epochs
        model = pre.model
        loader = rows_loader(pre.counts, torch.as_tensor(pre.cell_species), batch_size=cfg.batch_size, shuffle=True)
        per_batch, n = _timed_fit(model, mi.pretrain_loss, loader, n_batches, cfg.pretrain_lr)
        epoch_batches = int(np.ceil(n_cells / cfg.batch_size))
        idx = np.arange(min(embed_cells, n_cells))
        model.eval()
        start = time.perf_counter()
        predict_batches(lambda x, s: model.encode(x, s), pre.counts[idx], torch.as_tensor(pre.cell_species[idx]),
                        batch_size=1024)
        rate = len(idx) / (time.perf_counter() - start)
    elif model_name == "uce":
        cfg = uce.UCEConfig(**{**params["uce"], "epochs": 0, "progress": False, "device": "cpu"})
        vocab = uce.build_vocabulary(emb["protein"], tables)
        model = uce.UCEModel(vocab.tokens, cfg)
        data = uce.SentenceData(vocab, adatas, cfg, mode="train")
        loader = uce.sentence_loader(data, batch_size=cfg.batch_size, shuffle=True)
        per_batch, n = _timed_fit(model, uce.masked_expression_loss, loader, n_batches, cfg.lr)
        epoch_batches = int(np.ceil(n_cells / cfg.batch_size))
        sub = {s: a[: max(1, min(embed_cells, n_cells) // 2)] for s, a in adatas.items()}
        start = time.perf_counter()
        z = uce.embed_cells(model, vocab, sub, batch_size=max(cfg.batch_size, 64))
        rate = len(z) / (time.perf_counter() - start)
    elif model_name == "scilama":
        import anndata as ad
        import pandas as pd
        import scipy.sparse as sp

        from scprior.tasks.integration.methods import scaled

        cfg = sl.SciLaMAConfig(**{**params["scilama"], "progress": False, "device": "cpu"})
        x = scaled(ad.AnnData(X=np.log1p(sp.vstack([a.X for a in adatas.values()]).toarray()))).X  # as the notebook
        species = np.concatenate([[s] * a.n_obs for s, a in adatas.items()])
        genes, inputs = sl.match_gene_inputs(list(adatas["human"].var_names), {k: v["human"] for k, v in emb.items()})
        model = sl.SciLaMA(len(genes), 2, inputs, cfg)
        codes = torch.as_tensor(pd.factorize(species)[0])
        loader = rows_loader(x, codes, batch_size=cfg.batch_size, shuffle=True)
        per_batch, n = _timed_fit(model, sl.joint_loss, loader, n_batches, cfg.lr)
        epoch_batches = int(np.ceil(n_cells / cfg.batch_size))
        model.eval()
        idx = np.arange(min(embed_cells, n_cells))
        start = time.perf_counter()
        predict_batches(lambda xb, c: model.encode_cells(xb, c)[0], x[idx], codes[idx], batch_size=1024)
        rate = len(idx) / (time.perf_counter() - start)
    else:
        raise SystemExit(f"unknown model {model_name!r}; choose from {MODELS}")
    import resource

    out.update({"train_s_per_epoch": per_batch * epoch_batches, "batches_timed": n, "batches_per_epoch": epoch_batches,
                "cells_embedded_per_s": rate, "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--sizes", nargs="+", type=int, default=None, help="cells (default: the demo's and 100,000)")
    parser.add_argument("--batches", type=int, default=20, help="training batches timed per measurement")
    parser.add_argument("--embed-cells", type=int, default=5000, help="cells embedded to time inference")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: all CPUs)")
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "CELLS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from scprior.runtime import set_threads

    set_threads(args.threads or None)
    if args.one:
        res = bench_one(args.one[0], int(args.one[1]), n_batches=args.batches, embed_cells=args.embed_cells)
        print("RESULT " + json.dumps(res))
        return 0
    print(f"{'model':8s} {'cells':>7s} {'genes':>6s} {'threads':>7s} {'train s/epoch':>14s} {'cells/s embed':>14s} "
          f"{'peak GiB':>9s}")
    sizes = args.sizes or [demo_cells(), 100_000]
    for model, size in itertools.product(args.models, sizes):
        cmd = [sys.executable, __file__, "--one", model, str(size), "--batches", str(args.batches),
               "--embed-cells", str(args.embed_cells), "--threads", str(args.threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if line is None:
            print(f"{model:8s} {size:7d}  failed:\n{proc.stderr[-1500:]}")
            continue
        r = json.loads(line[7:])
        print(f"{model:8s} {size:7d} {r['genes']:6d} {r['threads']:7d} {r['train_s_per_epoch']:14.1f} "
              f"{r['cells_embedded_per_s']:14.0f} {r['peak_rss_gib']:9.2f}", flush=True)
    print(f"train s/epoch: {args.batches} batches timed through scprior.models.training.fit, scaled to a full epoch.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
