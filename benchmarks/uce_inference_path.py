"""UCE-style inference on CPU: PyTorch's fused transformer path vs the plain one.

Embeds every Baron cell (one sentence each, 1 thread) with notebook 01's UCE settings
(``params.yaml``; weights untrained, which does not change the cost) twice, with
``torch.backends.mha`` fast path on and off, and prints the seconds of each and the largest
difference between the two embeddings. ``UCEModel.forward`` turns the fast path off in eval mode
because it is the slower one at these sizes.

Usage: ``PYTHONPATH=lib .venv/bin/python benchmarks/uce_inference_path.py [--repeats 2]``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import yaml


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--processed-dir", default="data/processed")
    p.add_argument("--knowledge-dir", default="data/processed/knowledge")
    args = p.parse_args()

    from scprior.tasks.integration.methods import fixed_threads, prepare_task

    task = prepare_task(args.processed_dir, args.knowledge_dir, n_hvg=1000, n_hvg_orthologs=2000,
                        hvg_ortholog_partners=True)
    fixed_threads(1)
    import torch

    from scprior.models import uce

    section = yaml.safe_load(open("params.yaml"))["notebooks"]["01_cross_species_integration"]
    cfg = uce.UCEConfig(**{**section["uce"], "seed": 0, "progress": False})
    tables = uce.restricted_tables(task.knowledge.gene_tables, task.species_hvg_genes())
    vocab = uce.build_vocabulary(task.knowledge.embeddings["protein"], tables, seed=cfg.token_seed)
    model = uce.UCEModel(vocab.tokens, cfg).eval()
    out, z = {}, {}
    for fused in (True, False):
        times = []
        for _ in range(args.repeats):
            t = time.process_time()
            with torch.no_grad():
                h = None
                for tokens, in uce.sentence_loader(uce.SentenceData(vocab, task.adatas, cfg, queries=False),
                                                   batch_size=64):
                    x = model.tokens_in(tokens)
                    with uce._mha_fastpath(fused):
                        y = model.transformer(x, src_key_padding_mask=tokens == uce.PAD)
                    h = y if h is None else torch.cat([h, y])
            times.append(time.process_time() - t)
        z[fused] = h.numpy()
        out["fused" if fused else "plain"] = {"cpu_seconds": [round(v, 2) for v in times]}
    out["cells"] = int(z[True].shape[0])
    out["max_abs_difference"] = float(np.abs(z[True] - z[False]).max())
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
