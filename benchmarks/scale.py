"""How embedding cost grows with cells, for the macrogene integrator, the UCE-style encoder and
GeneCompass, through the streaming data path (prints a table, writes a plot and a JSON; asserts nothing).

    python benchmarks/scale.py                                   # 10k, 100k, 1M (macrogenes); encoders to 100k
    python benchmarks/scale.py --quick                           # 2k and 10k cells, every model
    python benchmarks/scale.py --sizes 10000 100000 --models macrogene
    python benchmarks/scale.py --train 20000                     # + training throughput, 1 and 2 processes
    python benchmarks/scale.py --train 20000 --train-only --train-models uce genecompass   # -> scale_train.json

Data: synthetic sparse counts shaped like real droplet data, ~2,000 of 20,000 genes detected per
cell (column gaps ~ geometric, counts ~ 1 + geometric), generated chunk by chunk from a seed (never
held whole; generation time is measured and reported apart). Every (model, size) runs in its own
process through :func:`scprior.models.streaming.embed_to_npy` (chunks of ``--chunk-size`` cells,
the embedding written to an ``.npy`` memmap): embedding seconds, cells per second, peak resident
memory of that process (``ru_maxrss``: Python, torch and the model included). The exponent is the
slope of log(time) on log(cells). Models are the configurations this repository's notebooks run on
CPU (``params.yaml``): macrogene integrator with 2 x 128 macrogenes (protein + text), hidden 256,
latent 64; UCE-style 2 layers, d_model 32, 64 genes per sentence; GeneCompass 2 layers, hidden 32,
top 64 genes. Training throughput (one epoch, every cell a training cell, 1 process and ``torchrun``
with 2, gloo): macrogene pretraining through the one training loop on a
:class:`~scprior.models.batching.ChunkBatches` stream; the UCE-style encoder and GeneCompass through
their streamed recipes (:func:`scprior.models.uce_stream.pretrain_uce_stream`,
:func:`scprior.models.genecompass.stream.pretrain_genecompass_stream`), same architectures as above.
One thread per process (``OMP_NUM_THREADS=1``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("macrogene", "uce", "genecompass")
N_GENES, DETECTED = 20_000, 2_000


class SyntheticSource:
    """A :class:`scprior.data.stream.CellSource` look-alike whose chunks are generated from a seed."""

    def __init__(self, n_obs: int, *, n_genes: int = N_GENES, detected: int = DETECTED, seed: int = 0) -> None:
        import pandas as pd

        self.n_obs, self.n_genes, self.p, self.seed = int(n_obs), n_genes, detected / n_genes, seed
        self.sizes = [self.n_obs]
        self.var = pd.DataFrame(index=[f"GENE{i}" for i in range(n_genes)])
        self.gen_seconds = 0.0

    def fingerprint(self) -> str:
        return f"synthetic-{self.n_obs}-{self.n_genes}-{self.p}-{self.seed}"

    def boundaries(self, chunk_size: int) -> list[tuple[int, int, int]]:
        return [(0, lo, min(lo + chunk_size, self.n_obs)) for lo in range(0, self.n_obs, chunk_size)]

    def n_chunks(self, chunk_size: int) -> int:
        return len(self.boundaries(chunk_size))

    def counts(self, index: int, n: int):
        import scipy.sparse as sp

        t0 = time.perf_counter()
        rng = np.random.default_rng([self.seed, index])
        width = int(self.n_genes * self.p * 1.3) + 50
        cols = np.cumsum(rng.geometric(self.p, size=(n, width)), axis=1) - 1
        keep = cols < self.n_genes
        indptr = np.concatenate([[0], np.cumsum(keep.sum(1))])
        indices = cols[keep].astype(np.int32)
        data = (1 + rng.geometric(0.4, size=len(indices))).astype(np.float32)
        x = sp.csr_matrix((data, indices, indptr), shape=(n, self.n_genes))
        self.gen_seconds += time.perf_counter() - t0
        return x

    def chunks(self, chunk_size: int, *, skip=(), rank: int = 0, world: int = 1, order=None):
        import anndata as ad
        import pandas as pd

        from scprior.data.stream import Chunk

        bounds = self.boundaries(chunk_size)
        order = range(len(bounds)) if order is None else order
        for i in order:
            if i in set(skip) or i % world != rank:
                continue
            _, lo, hi = bounds[i]
            obs = pd.DataFrame(index=[f"c{j}" for j in range(lo, hi)])
            yield Chunk(int(i), lo, ad.AnnData(X=self.counts(int(i), hi - lo), obs=obs, var=self.var))


# ------------------------------------------------------------------------------ models
def _genes(species: str) -> list[str]:
    return [f"GENE{i}" for i in range(N_GENES)] if species == "human" else [f"Gene{i}" for i in range(N_GENES)]


def build_macrogene():
    import pandas as pd
    import torch

    from scprior.models.macrogene_integrator import MacrogeneIntegrator, MacrogeneIntegratorConfig
    from scprior.models.macrogenes import MacrogeneLayer

    cfg = MacrogeneIntegratorConfig(n_macrogenes=128, hidden_dim=256, latent_dim=64, progress=False, device="cpu")
    axis = pd.DataFrame({"species": ["human"] * N_GENES + ["mouse"] * N_GENES, "gene": _genes("human") + _genes("mouse")})
    torch.manual_seed(0)
    layers = {}
    for k, dim in (("protein", 64), ("text", 32)):
        layer = MacrogeneLayer(len(axis), cfg.n_macrogenes, dim)
        with torch.no_grad():
            layer.log_w.copy_(torch.randn_like(layer.log_w) - 3.0)
            layer.mask.fill_(1.0)
        layers[k] = layer
    return MacrogeneIntegrator(layers, np.repeat([0, 1], N_GENES), 2, cfg), axis


def embedder(model: str):
    import pandas as pd

    from scprior.models import streaming

    if model == "macrogene":
        net, axis = build_macrogene()
        return streaming.macrogene_chunk_embedder(net, axis, "human")
    if model == "uce":
        from scprior.knowledge.embeddings import GeneEmbeddings
        from scprior.models.uce import UCEConfig, UCEModel, build_vocabulary

        rng = np.random.default_rng(0)
        genes = _genes("human")
        protein = {"human": GeneEmbeddings(np.asarray(genes), rng.normal(size=(N_GENES, 64)), "human", "protein")}
        table = pd.DataFrame({"symbol": genes, "chromosome": rng.choice([str(c) for c in range(1, 23)] + ["X"], N_GENES),
                              "start": rng.integers(0, 10**8, N_GENES)})
        vocab = build_vocabulary(protein, {"human": table})
        cfg = UCEConfig(d_model=32, nhead=2, d_hid=64, nlayers=2, output_dim=32, head_hidden=64, decoder_hidden=(64, 32),
                        sample_size=64, progress=False, device="cpu")
        net = UCEModel(vocab.tokens, cfg).eval()
        return streaming.uce_chunk_embedder(net, vocab, "human", batch_size=256)
    if model == "genecompass":
        from scprior.models.genecompass import GeneVocab, build_model
        from scprior.models.genecompass.model import GeneCompassConfig

        vocab = GeneVocab(["human"] * N_GENES, _genes("human"), _genes("human"), np.full(N_GENES, 2.0))
        cfg = GeneCompassConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, top_k=64, priors=(),
                                dropout=0.0)
        gc = build_model(vocab, {}, cfg, seed=0)
        return streaming.genecompass_chunk_embedder(gc, "human", batch_size=256)
    raise SystemExit(f"unknown model {model!r}; choose from {MODELS}")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def one(model: str, n: int, chunk_size: int) -> dict:
    """Embed ``n`` synthetic cells with ``model`` in this process; the measurements as a dict."""
    import torch

    from scprior.models.streaming import embed_to_npy

    torch.set_num_threads(1)
    fn = embedder(model)
    src = SyntheticSource(n)
    with tempfile.TemporaryDirectory(dir=os.environ.get("SCALE_TMP")) as tmp:
        t0 = time.perf_counter()
        z = embed_to_npy(src, fn, Path(tmp) / "z.npy", chunk_size=chunk_size)
        total = time.perf_counter() - t0
        shape = list(z.shape)
        del z
    seconds = total - src.gen_seconds
    return {"model": model, "cells": n, "embed_s": seconds, "generate_s": src.gen_seconds, "cells_per_s": n / seconds,
            "peak_rss_mib": peak_rss_mib(), "shape": shape, "chunk_size": chunk_size}


def _uce_parts():
    """Synthetic protein tokens and gene positions for the UCE-style encoder (as :func:`embedder`)."""
    import pandas as pd

    from scprior.knowledge.embeddings import GeneEmbeddings

    rng = np.random.default_rng(0)
    genes = _genes("human")
    protein = {"human": GeneEmbeddings(np.asarray(genes), rng.normal(size=(N_GENES, 64)), "human", "protein")}
    table = pd.DataFrame({"symbol": genes, "chromosome": rng.choice([str(c) for c in range(1, 23)] + ["X"], N_GENES),
                          "start": rng.integers(0, 10**8, N_GENES)})
    return protein, {"human": table}


UCE_BENCH = dict(d_model=32, nhead=2, d_hid=64, nlayers=2, output_dim=32, head_hidden=64, decoder_hidden=(64, 32),
                 sample_size=64)


def train_one(model: str, n: int, chunk_size: int, batch_size: int) -> dict | None:
    """One epoch of ``model``'s pretraining over ``n`` streamed cells through the one training loop
    (run under torchrun or alone): macrogene pretraining on :class:`ChunkBatches`, the UCE-style
    encoder with :func:`~scprior.models.uce_stream.pretrain_uce_stream`, GeneCompass with
    :func:`~scprior.models.genecompass.stream.pretrain_genecompass_stream` (no held-out cells, so
    every cell is a training cell; the UCE set-up and detection pass before training are timed apart)."""
    import torch

    from scprior.models.training import TrainConfig, fit
    from scprior.runtime import dist_info, init_distributed

    torch.set_num_threads(1)
    init_distributed()
    src = SyntheticSource(n, seed=1)
    extra: dict = {}
    if model == "macrogene":
        from scprior.models.batching import ChunkBatches
        from scprior.models.macrogene_integrator import pretrain_loss

        net, axis = build_macrogene()

        def transform(chunk):
            import scipy.sparse as sp

            x = chunk.counts
            full = sp.csr_matrix((x.data, x.indices, x.indptr), shape=(x.shape[0], len(axis)))  # human block first
            return full, torch.zeros(x.shape[0], dtype=torch.long)

        loader = ChunkBatches(src, transform, batch_size=batch_size, chunk_size=chunk_size, seed=0)
        res = fit(net, pretrain_loss, loader, None, TrainConfig(max_epochs=1, patience=None, progress=False,
                                                                device="cpu"))
    elif model == "uce":
        from scprior.models.uce import UCEConfig
        from scprior.models.uce_stream import pretrain_uce_stream

        protein, tables = _uce_parts()
        cfg = UCEConfig(**UCE_BENCH, batch_size=batch_size, epochs=1, val_fraction=0.0, patience=None,
                        progress=False, device="cpu")
        t0 = time.perf_counter()
        out = pretrain_uce_stream({"human": src}, protein, tables, config=cfg, chunk_size=chunk_size)
        res = out.train
        extra["setup_detection_s"] = time.perf_counter() - t0 - res.seconds  # vocabulary, model, detection pass
    elif model == "genecompass":
        from scprior.models.genecompass import GeneVocab, PretrainConfig, build_model
        from scprior.models.genecompass.model import GeneCompassConfig
        from scprior.models.genecompass.stream import pretrain_genecompass_stream

        vocab = GeneVocab(["human"] * N_GENES, _genes("human"), _genes("human"), np.full(N_GENES, 2.0))
        gcfg = GeneCompassConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, top_k=64,
                                 priors=(), dropout=0.0)
        gc = build_model(vocab, {}, gcfg, seed=0)
        cfg = PretrainConfig(epochs=1, batch_size=batch_size, val_fraction=0.0, patience=None, progress=False,
                             device="cpu")
        res = pretrain_genecompass_stream(gc, {"human": src}, cfg, chunk_size=chunk_size)
    else:
        raise SystemExit(f"unknown model {model!r}; choose from {MODELS}")
    rank, world = dist_info()
    if rank:
        return None
    return {"model": model, "processes": world, "cells": n, "seconds": res.seconds, "cells_per_s": n / res.seconds,
            "generate_s": src.gen_seconds, "batch_size": batch_size, "chunk_size": chunk_size,
            "peak_rss_mib_rank0": peak_rss_mib(), **extra}


def _run(cmd: list[str], timeout: float) -> dict | None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "lib")}
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"  timed out after {timeout:.0f} s: {' '.join(cmd[-4:])}", flush=True)
        return None
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        print(proc.stderr[-2000:], file=sys.stderr)
        return None
    return json.loads(lines[-1])


def exponent(rows: list[dict]) -> float:
    if len(rows) < 2:
        return float("nan")
    return float(np.polyfit(np.log([r["cells"] for r in rows]), np.log([r["embed_s"] for r in rows]), 1)[0])


def plot(rows: list[dict], path: Path, machine: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for model in MODELS:
        r = sorted((x for x in rows if x["model"] == model), key=lambda x: x["cells"])
        if not r:
            continue
        cells = [x["cells"] for x in r]
        axes[0].loglog(cells, [x["embed_s"] for x in r], "o-", label=f"{model} (slope {exponent(r):.2f})")
        axes[1].semilogx(cells, [x["peak_rss_mib"] / 1024 for x in r], "o-", label=model)
    axes[0].set(xlabel="cells (simulated counts)", ylabel="embedding seconds", title="Embedding time, simulated cells")
    axes[1].axhline(4, color="grey", ls="--", lw=1, label="4 GiB target")
    axes[1].set(xlabel="cells (simulated counts)", ylabel="peak RSS (GiB)", title="Peak memory, simulated cells")
    for ax in axes:
        ax.legend(fontsize=8)
    fig.suptitle(machine, fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--encoder-max", type=int, default=100_000, help="largest size for the UCE-style / GeneCompass")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--chunk-size", type=int, default=10_000)
    ap.add_argument("--quick", action="store_true", help="2k and 10k cells")
    ap.add_argument("--train", type=int, default=0, help="cells for the 1- vs 2-process training throughput (0: skip)")
    ap.add_argument("--train-batch", type=int, default=256)
    ap.add_argument("--train-models", nargs="+", default=list(MODELS), choices=MODELS,
                    help="models whose training throughput is measured")
    ap.add_argument("--train-only", action="store_true",
                    help="skip the embedding runs; write <out> = figures/benchmarks/scale_train unless --out")
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--out", default=None, help="output path without suffix (default figures/benchmarks/scale)")
    ap.add_argument("--replot", nargs="+", metavar="JSON", help="merge result JSONs of earlier runs, print, plot")
    ap.add_argument("--one", nargs=2, metavar=("MODEL", "CELLS"), help=argparse.SUPPRESS)
    ap.add_argument("--train-one", nargs=2, metavar=("MODEL", "CELLS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]), args.chunk_size)))
        return
    if args.train_one:
        out = train_one(args.train_one[0], int(args.train_one[1]), args.chunk_size, args.train_batch)
        if out is not None:
            print(json.dumps(out))
        return
    machine = (f"{os.cpu_count()} CPU cores ({os.uname().machine}), 1 thread per process, torch CPU; "
               "cores shared with other jobs while measured")
    out = Path(args.out or ROOT / "figures" / "benchmarks" / ("scale_train" if args.train_only else "scale"))
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.replot:
        runs = [json.loads(Path(f).read_text()) for f in args.replot]
        rows = [r for run in runs for r in run["embedding"]]
        train = [r for run in runs for r in run["training"]]
        save(out, machine, rows, train)
        return
    sizes = [] if args.train_only else [2_000, 10_000] if args.quick else sorted(args.sizes)
    rows = []
    if sizes:
        print(f"{'model':<12}{'cells':>10}{'embed s':>10}{'cells/s':>10}{'peak MiB':>10}{'gen s':>8}", flush=True)
    for model in args.models:
        for n in sizes:
            if model != "macrogene" and n > args.encoder_max:
                continue
            r = _run([sys.executable, __file__, "--one", model, str(n), "--chunk-size", str(args.chunk_size)],
                     args.timeout)
            if r is None:
                continue
            rows.append(r)
            save(out, machine, rows, [], quiet=True)
            print(f"{model:<12}{n:>10}{r['embed_s']:>10.1f}{r['cells_per_s']:>10.0f}{r['peak_rss_mib']:>10.0f}"
                  f"{r['generate_s']:>8.1f}", flush=True)
    train = []
    if args.train:
        for model in args.train_models:
            for procs in (1, 2):
                cmd = [sys.executable, __file__, "--train-one", model, str(args.train), "--chunk-size",
                       str(min(args.chunk_size, args.train)), "--train-batch", str(args.train_batch)]
                if procs > 1:
                    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={procs}",
                           "--master_addr=127.0.0.1", "--master_port=29533", *cmd[1:]]
                load = os.getloadavg()[0]
                r = _run(cmd, args.timeout)
                if r is not None:
                    r.update({"load_1min_before": load, "load_1min_after": os.getloadavg()[0]})
                    train.append(r)
                    save(out, machine, rows, train, quiet=True)
                    print(f"training ({model}, {args.train} cells, global batch {args.train_batch}): "
                          f"{procs} process(es) {r['cells_per_s']:.0f} cells/s ({r['seconds']:.1f} s)", flush=True)
    save(out, machine, rows, train)


def save(out: Path, machine: str, rows: list[dict], train: list[dict], *, quiet: bool = False) -> None:
    """Write the JSON (and, unless ``quiet``, print the table and exponents and draw the plot)."""
    models = [m for m in MODELS if any(r["model"] == m for r in rows)]
    fits = {m: exponent(sorted((r for r in rows if r["model"] == m), key=lambda r: r["cells"])) for m in models}
    out.with_suffix(".json").write_text(json.dumps({"machine": machine, "embedding": rows, "exponents": fits,
                                                    "training": train}, indent=1))
    if quiet:
        return
    print("| model | cells | embed s | cells/s | peak RSS MiB | generation s |\n|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (MODELS.index(r["model"]), r["cells"])):
        print(f"| {r['model']} | {r['cells']:,} | {r['embed_s']:.1f} | {r['cells_per_s']:.0f} | {r['peak_rss_mib']:.0f} "
              f"| {r['generate_s']:.1f} |")
    print("exponent of time vs cells: " + ", ".join(f"{m} {e:.2f}" for m, e in fits.items()))
    for r in train:
        print(f"training ({r.get('model', 'macrogene')}, {r['cells']} cells, global batch {r['batch_size']}): "
              f"{r['processes']} process(es) {r['cells_per_s']:.0f} cells/s ({r['seconds']:.1f} s)")
    if rows:
        plot(rows, out.with_suffix(".png"), machine)
    print(f"wrote {out.with_suffix('.json')}" + (f" and {out.with_suffix('.png')}" if rows else ""))


if __name__ == "__main__":
    main()
