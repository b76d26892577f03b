"""Where notebook 01's time goes: per-method seconds per seed from the last run's detail file.

Reads ``metrics/integration_detail.json`` (``timings``, ``wall_seconds``) and prints a table of
seconds per (method, seed), each method's share of the training time, and the time left for
scoring and figures (wall minus the training critical path: with ``n_jobs`` parallel seeds the
seeds run in rounds, each round as long as its slowest seed), and the wall time had every seed
run as fast as the fastest one did.

Usage: ``python benchmarks/integration_timings.py [--n-jobs 2] [path]``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd


def timing_table(detail: dict) -> pd.DataFrame:
    """(method x seed) seconds from a detail file's ``timings`` rows."""
    rows = pd.DataFrame(detail["timings"])
    return rows.pivot_table(index="method", columns="seed", values="seconds", aggfunc="sum")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("path", nargs="?", default="metrics/integration_detail.json")
    p.add_argument("--n-jobs", type=int, default=2)
    args = p.parse_args()
    detail = json.loads(Path(args.path).read_text())
    table = timing_table(detail)
    per_seed = table.sum(axis=0)
    table["share"] = (table.sum(axis=1) / table.sum().sum()).round(3)
    print(table.sort_values("share", ascending=False).to_string())
    seeds = list(per_seed.index)
    rounds = [seeds[i:i + args.n_jobs] for i in range(0, len(seeds), args.n_jobs)]
    critical = sum(per_seed[r].max() for r in rounds)
    wall = float(detail.get("wall_seconds", float("nan")))
    print(f"\ntraining seconds per seed: {per_seed.round(1).to_dict()}")
    print(f"training critical path with n_jobs={args.n_jobs}: {critical:.0f} s; wall {wall:.0f} s; "
          f"scoring, UMAPs and figures: {wall - critical:.0f} s")
    fastest = per_seed.min()
    print(f"if every seed ran as fast as the fastest one ({fastest:.0f} s, e.g. alone on the machine): "
          f"{len(rounds) * fastest + wall - critical:.0f} s")


if __name__ == "__main__":
    main()
