"""Speed and memory of the knowledge layer on this machine (prints numbers; asserts nothing).

    python benchmarks/knowledge.py                     # embedding rates (needs a built knowledge folder)
    python benchmarks/knowledge.py --stage             # + the whole `knowledge` stage, wall time and peak memory
    python benchmarks/knowledge.py --stage --quick     # + the quick (test-fixture) build instead

Rates: genes embedded per second (wall; and per CPU-second, which does not depend on what else
runs on the machine) by ``text_minilm`` (MiniLM on CPU, the documents and
max_seq_length of params.yaml) and by ``protein_kmer`` (k-mer TF-IDF + SVD). The stage runs
``python -m scprior.knowledge.build`` into a temporary folder, polling the resident memory of
the process every 0.2 s. Target (README): the full stage under 10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _peak_rss_run(cmd: list[str], env: dict) -> tuple[float, float, int]:
    """Run ``cmd``; return (wall seconds, peak RSS in GiB of it and its children, return code)."""
    import psutil

    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ps, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            rss = ps.memory_info().rss + sum(c.memory_info().rss for c in ps.children(recursive=True))
            peak = max(peak, rss)
        except psutil.Error:
            pass
        time.sleep(0.2)
    err = proc.stderr.read() if proc.stderr else ""
    if proc.returncode:
        print(err[-2000:], file=sys.stderr)
    return time.perf_counter() - start, peak / 2**30, proc.returncode


def embedding_rates(knowledge_dir: Path, n_text: int, seed: int) -> dict:
    from scprior.config import section
    from scprior.knowledge import store
    from scprior.knowledge.protein_kmer import protein_kmer_embedding
    from scprior.knowledge.text import embed_texts, gene_documents, load_minilm
    from scprior.runtime import set_threads

    params = section("knowledge")
    threads = set_threads(params.get("threads") or None)
    genes = store.load_gene_table("human", knowledge_dir)
    genes = genes[genes.gene_type == "protein-coding"].sample(n_text, random_state=seed)
    docs = gene_documents(genes, store.load_go_annotations("human", knowledge_dir),
                          max_terms_per_ontology=params["text_max_terms"],
                          max_designations=params["text_max_designations"]).tolist()
    t = time.perf_counter()
    model = load_minilm("cpu")
    load_s = time.perf_counter() - t
    n_tok = int(np.minimum([len(x) for x in model.tokenizer(docs)["input_ids"]], params["text_max_seq_length"]).sum())
    t, c = time.perf_counter(), time.process_time()
    embed_texts(docs, model=model, batch_size=params["text_batch_size"],
                max_seq_length=params["text_max_seq_length"], progress=False)
    text_s, text_cpu = time.perf_counter() - t, time.process_time() - c
    seqs = store.load_protein_sequences("human", knowledge_dir)["sequence"].tolist()
    t = time.perf_counter()
    protein_kmer_embedding(seqs, dim=params["protein_dim"], ks=params["protein_kmers"], seed=seed)
    prot_s = time.perf_counter() - t
    return {"threads": threads, "minilm_load_s": round(load_s, 1),
            "text_minilm_genes_per_s": round(n_text / text_s, 1), "text_minilm_tokens_per_s": round(n_tok / text_s),
            "text_minilm_genes_per_cpu_s": round(n_text / text_cpu, 1),
            "text_max_seq_length": params["text_max_seq_length"], "text_genes_timed": n_text,
            "protein_kmer_genes_per_s": round(len(seqs) / prot_s, 1), "protein_genes_timed": len(seqs)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--knowledge-dir", default="data/processed/knowledge")
    parser.add_argument("--raw", default="data/raw")
    parser.add_argument("--n-text", type=int, default=1000, help="gene documents timed")
    parser.add_argument("--stage", action="store_true", help="also time the whole build")
    parser.add_argument("--quick", action="store_true", help="with --stage: the quick fixture build")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from scprior.paths import project_root, resolve

    root = project_root()
    results: dict = {"cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()}
    kdir = resolve(args.knowledge_dir)
    if (kdir / "manifest.json").is_file():
        results.update(embedding_rates(kdir, args.n_text, args.seed))
    else:
        print(f"{kdir} not built: skipping the embedding rates (run `dvc repro knowledge`).", file=sys.stderr)
    if args.stage:
        env = {**os.environ, "PYTHONPATH": str(root / "lib") + os.pathsep + os.environ.get("PYTHONPATH", "")}
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "scprior.knowledge.build", "--raw", str(resolve(args.raw)),
                   "--out", str(Path(tmp) / "knowledge"), "--timings", str(Path(tmp) / "timings.json"), "--quiet"]
            if args.quick:
                sys.path.insert(0, str(root / "tests"))
                from conftest import QUICK_HVG, perturbation_genes  # the fixture's own gene choice
                from scprior.knowledge.gene_selection import quick_gene_set

                t = time.perf_counter()
                genes = quick_gene_set(resolve(args.raw), n_top_genes=QUICK_HVG, extra={"human": perturbation_genes()})
                results["quick_gene_selection_s"] = round(time.perf_counter() - t, 1)
                results["quick_genes"] = {k: len(v) for k, v in genes.items()}
                (Path(tmp) / "genes.json").write_text(json.dumps(genes))
                cmd += ["--genes-file", str(Path(tmp) / "genes.json")]
            wall, peak, rc = _peak_rss_run(cmd, env)
            key = "quick_stage" if args.quick else "stage"
            results[f"{key}_wall_s"] = round(wall, 1)
            results[f"{key}_peak_rss_gib"] = round(peak, 2)
            results[f"{key}_returncode"] = rc
            timing = Path(tmp) / "timings.json"
            if timing.is_file():
                results[f"{key}_steps_s"] = json.loads(timing.read_text())["timings_s"]
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
