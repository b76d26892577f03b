"""Large-scale scoring mode vs scib-metrics' defaults: seconds at 20k and 100k cells (prints a
table and a JSON; asserts nothing).

    python benchmarks/scoring_scale.py                         # 20k and 100k cells
    python benchmarks/scoring_scale.py --sizes 20000 --subsample 5000 --timeout 1800

Data: a simulated embedding (30 dims; 15 cell types as Gaussian clusters; 2 batches, the second
shifted in part) and its "unintegrated" version for PCR comparison. Each run is its own process
(JIT compiles included, as a user pays them):

* ``scib_defaults``: ``Benchmarker(BioConservation(), BatchCorrection())`` with ``prepare()`` as
  shipped (pynndescent neighbours, kBET per label on);
* ``scib_no_kbet``: the same without kBET (how this repository scores, ``scib_benchmark``);
* ``large``: :func:`scprior.tasks.integration.large_scale.large_scale_scores` (exact sklearn kNN
  once, subsample of ``--subsample`` cells for silhouette/BRAS/isolated labels, computed in numpy
  by :mod:`scprior.tasks.integration.silhouette`; no kBET);
* ``large_kbet``: the same with kBET per label on all cells;
* ``large_scib``: ``large`` with ``backend="scib"`` (scib-metrics' JAX silhouette metrics and k-means).

A run past ``--timeout`` seconds is stopped and reported as a lower bound. Scores of every mode
are printed beside scib's so the agreement can be read at these sizes too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from scprior.safe_io import write_text_atomic

ROOT = Path(__file__).resolve().parents[1]
MODES = ("scib_defaults", "scib_no_kbet", "large", "large_kbet", "large_scib")


def simulated(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 15, n)
    batch = rng.integers(0, 2, n)
    centres = rng.normal(scale=3.0, size=(15, 30))
    emb = centres[labels] + rng.normal(size=(n, 30))
    shift = rng.normal(scale=1.0, size=30)
    emb[batch == 1] += 0.3 * shift
    pre = emb.copy()
    pre[batch == 1] += 2.0 * shift
    return (emb.astype(np.float32), pre.astype(np.float32), np.char.add("type", labels.astype(str)),
            np.char.add("batch", batch.astype(str)))


def one(mode: str, n: int, subsample: int) -> dict:
    import torch

    torch.set_num_threads(1)
    emb, pre, labels, batch = simulated(n)
    t0 = time.perf_counter()
    if mode.startswith("scib"):
        import anndata as ad
        import pandas as pd
        from scib_metrics.benchmark import BatchCorrection, Benchmarker, BioConservation

        a = ad.AnnData(X=np.zeros((n, 1), dtype=np.float32), obs=pd.DataFrame({"l": labels, "b": batch}))
        a.obsm["X_emb"], a.obsm["X_pre"] = emb, pre
        bm = Benchmarker(a, batch_key="b", label_key="l", embedding_obsm_keys=["X_emb"],
                         pre_integrated_embedding_obsm_key="X_pre", bio_conservation_metrics=BioConservation(),
                         batch_correction_metrics=BatchCorrection(kbet_per_label=mode == "scib_defaults"),
                         n_jobs=1, progress_bar=False)
        bm.benchmark()
        table = bm.get_results(min_max_scale=False, clean_names=False)
        scores = table.drop(index="Metric Type").apply(pd.to_numeric, errors="coerce").loc["X_emb"].to_dict()
        info = {}
    else:
        from scprior.tasks.integration.large_scale import large_scale_scores

        s, info = large_scale_scores(emb, labels, batch, pre, subsample=subsample, kbet=mode == "large_kbet",
                                     backend="scib" if mode == "large_scib" else "numpy")
        scores = s.to_dict()
    return {"mode": mode, "cells": n, "seconds": time.perf_counter() - t0, "scores": scores,
            "subsample": info.get("subsample"), "steps": info.get("seconds")}


GOAL = 10.0  # speed-up of the large-scale mode over scib-metrics' defaults at 20k cells
PAIRS = (("scib_defaults", "large"), ("scib_defaults", "large_kbet"), ("scib_no_kbet", "large"),
         ("scib_no_kbet", "large_kbet"))


def summarize(rows: list[dict]) -> dict:
    """Speed-ups per size and pair of modes, the goal verdict (>= ``GOAL`` x over scib-metrics'
    defaults, no-kBET large mode) and the largest metric difference between like-for-like modes;
    prints them."""
    speed, verdict, diff = {}, {}, {}
    for n in sorted({r["cells"] for r in rows}):
        t = {r["mode"]: r for r in rows if r["cells"] == n}
        for base, fast in PAIRS:
            if base in t and fast in t:
                bound = ">=" if t[base].get("timed_out") else ""
                speed[f"{n}:{base}/{fast}"] = f"{bound}{t[base]['seconds'] / t[fast]['seconds']:.1f}x"
        if "scib_defaults" in t and "large" in t:
            x = t["scib_defaults"]["seconds"] / t["large"]["seconds"]
            met = x >= GOAL
            verdict[str(n)] = (f"{'met' if met else 'NOT met'}: large-scale mode {x:.1f}x faster than scib-metrics' "
                               f"defaults at {n} cells (goal >= {GOAL:.0f}x)")
        for base, fast in (("scib_no_kbet", "large"), ("scib_defaults", "large_kbet")):
            if base in t and fast in t and t[base]["scores"] and t[fast]["scores"]:
                a, b = t[base]["scores"], t[fast]["scores"]
                d = {k: abs(float(a[k]) - float(b[k])) for k in b if k in a}
                worst = max(d, key=d.get)
                diff[f"{n}:{base}/{fast}"] = {"metric": worst, "abs_diff": d[worst]}
    for k, v in speed.items():
        print(f"speed-up {k}: {v}")
    for k, v in verdict.items():
        print(f"goal at {k} cells: {v}")
    for k, v in diff.items():
        print(f"largest score difference {k}: {v['metric']} {v['abs_diff']:.4f}")
    return {"speed_up": speed, "verdict": verdict, "max_score_diff": diff}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[20_000, 100_000])
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    ap.add_argument("--subsample", type=int, default=5_000)
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--out", default=str(ROOT / "figures" / "benchmarks" / "scoring_scale.json"))
    ap.add_argument("--summarize", metavar="JSON", help="recompute speed-ups/verdict of a saved result file")
    ap.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.summarize:
        res = json.loads(Path(args.summarize).read_text())
        res.update(summarize(res["runs"]))
        write_text_atomic(Path(args.summarize), json.dumps(res, indent=1))
        return
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]), args.subsample)))
        return
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "lib"),
           "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}
    rows = []
    print(f"{'cells':>8} {'mode':<14}{'seconds':>10}  Bio / Batch / Total", flush=True)
    for n in args.sizes:
        for mode in args.modes:
            cmd = [sys.executable, __file__, "--one", mode, str(n), "--subsample", str(args.subsample)]
            load_before = os.getloadavg()[0]
            try:
                proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
                lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
                if proc.returncode or not lines:
                    print(proc.stderr[-2000:], file=sys.stderr)
                    continue
                r = json.loads(lines[-1])
            except subprocess.TimeoutExpired:
                r = {"mode": mode, "cells": n, "seconds": args.timeout, "timed_out": True, "scores": {}}
            r["load_1min_before_after"] = [load_before, os.getloadavg()[0]]  # other jobs on the machine
            rows.append(r)
            s = r["scores"]
            agg = " / ".join(f"{s[k]:.3f}" for k in ("Bio conservation", "Batch correction", "Total") if k in s)
            print(f"{n:>8} {mode:<14}{r['seconds']:>9.1f}{'+' if r.get('timed_out') else ' '}  {agg}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, json.dumps({"machine": f"{os.cpu_count()} CPU cores, 1 thread per process, shared with "
                                       "other jobs", "subsample": args.subsample, "runs": rows,
                                       **summarize(rows)}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
