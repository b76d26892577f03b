"""Speed of the GeneCompass encoder: pretraining tokens/s, cells classified/s, peak memory, and
the forward pass's achieved FLOP/s as a fraction of this machine's measured fp32 matmul peak.

    python benchmarks/annotation.py [--size notebook|base] [--cells 256] [--batch 32] [--threads 0] [--device auto]

``--size notebook`` uses ``params.yaml`` (``notebooks.02_cell_type_annotation.model``); ``base`` is
GeneCompass's released size (768-d, 12 layers, 12 heads, 2048 genes; for a GPU). Inputs are
synthetic rank encodings (random tokens, every cell full): speed does not depend on the data.
FLOPs are counted analytically (multiply-add = 2) for the knowledge MLP and the encoder layers.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from scprior.config import notebook_params
from scprior.models.genecompass import GeneCompassConfig, GeneVocab, build_model
from scprior.models.genecompass.encoding import RankEncoding
from scprior.models.genecompass.model import mlm_loss_fn
from scprior.runtime import pick_device, set_threads

BASE = {"hidden_size": 768, "num_layers": 12, "num_heads": 12, "intermediate_size": 3072, "top_k": 2048}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_peak(device: str, n: int = 2048, reps: int = 10) -> float:
    """Measured fp32 FLOP/s of an n x n matmul (TF32 off on CUDA)."""
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = False
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    for _ in range(2):
        a @ b
    _sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t)


def forward_flops(cfg: GeneCompassConfig, n_priors_dim: int, cells: int) -> float:
    """FLOPs of one forward pass over ``cells`` full cells (knowledge MLP + encoder, no heads)."""
    d, L, ff = cfg.hidden_size, cfg.top_k, cfg.intermediate_size
    n_in = d * (1 + len(cfg.priors)) + 1
    per_token_emb = 2 * (n_priors_dim * d + n_in * d + d * d)
    seq = L + 1
    per_layer = seq * (2 * 4 * d * d + 2 * 2 * d * ff) + 2 * 2 * seq * seq * d
    return cells * (L * per_token_emb + cfg.num_layers * per_layer)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", choices=["notebook", "base"], default="notebook")
    ap.add_argument("--cells", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--vocab", type=int, default=6000)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    set_threads(args.threads or None)
    device = pick_device(args.device)
    params = notebook_params("02_cell_type_annotation")
    model = dict(params["model"]) if args.size == "notebook" else {**dict(params["model"]), **BASE}
    prior_names = list(params["priors"])
    rng = np.random.default_rng(0)
    n = args.vocab
    vocab = GeneVocab(["human"] * n, [f"G{i}" for i in range(n)], [f"G{i}" for i in range(n)], np.ones(n))
    dims = {p: int(params["prior_dim"]) for p in prior_names}  # every prior table is reduced to prior_dim
    tables = {p: rng.normal(size=(len(vocab), dims[p])).astype(np.float32) for p in prior_names}
    gc = build_model(vocab, tables, GeneCompassConfig(**{**model, "priors": tuple(prior_names)}))
    gc.model.to(device)
    k = gc.config.top_k
    ids = np.stack([rng.choice(np.arange(2, len(vocab)), size=k, replace=False) for _ in range(args.cells)])
    enc = RankEncoding(ids, rng.random((args.cells, k)).astype(np.float32) * 4, np.zeros(args.cells))

    # pretraining step throughput (forward + backward + AdamW), tokens = cells x top_k
    opt = torch.optim.AdamW(gc.model.parameters(), lr=1e-4)
    loss_fn = mlm_loss_fn()
    gc.model.train()
    batches = [tuple(torch.as_tensor(a[s:s + args.batch], device=device) for a in (enc.input_ids, enc.values, enc.species))
               for s in range(0, args.cells, args.batch)]
    loss_fn(gc.model, batches[0], 0)["loss"].backward()  # warm-up
    _sync(device)
    t = time.perf_counter()
    for b in batches:
        opt.zero_grad()
        loss_fn(gc.model, b, 0)["loss"].backward()
        opt.step()
    _sync(device)
    train_s = time.perf_counter() - t
    # inference: cell embeddings (what the classifier reads)
    gc.embed(enc.subset(np.arange(min(args.batch, args.cells))), batch_size=args.batch)
    _sync(device)
    t = time.perf_counter()
    gc.embed(enc, batch_size=args.batch)
    _sync(device)
    infer_s = time.perf_counter() - t
    flops = forward_flops(gc.config, sum(dims.values()), args.cells)
    peak = matmul_peak(device)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    gpu_peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else float("nan")
    print(f"device {device}, size {args.size}: hidden {gc.config.hidden_size}, layers {gc.config.num_layers}, "
          f"top_k {k}, priors {prior_names}, cells {args.cells}, batch {args.batch}, threads {torch.get_num_threads()}")
    print(f"pretraining: {args.cells * k / train_s:,.0f} tokens/s ({args.cells / train_s:,.1f} cells/s)")
    print(f"classification (cell embeddings): {args.cells / infer_s:,.1f} cells/s")
    print(f"encoder forward: {flops / infer_s / 1e9:,.2f} GFLOP/s achieved vs measured fp32 matmul peak "
          f"{peak / 1e9:,.1f} GFLOP/s = {flops / infer_s / peak:.1%}")
    print(f"peak memory: RSS {rss:.2f} GiB" + (f", GPU {gpu_peak:.2f} GiB" if device.startswith("cuda") else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
