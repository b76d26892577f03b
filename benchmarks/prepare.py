"""Wall time and peak memory of the `prepare` stage (data/raw -> data/processed), on this machine.

    python benchmarks/prepare.py [--repeat 3]

Prints one line per run and the median. Needs data/raw (python -m scprior.data.fetch).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

from scprior.config import section
from scprior.data.prepare import prepare
from scprior.data.sources import read_sources
from scprior.paths import project_root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    root = project_root()
    sources = {s.path: s for s in read_sources(root / "data.dvc")}
    target_sum = float(section("prepare")["target_sum"])
    times = []
    for i in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            prepare(root / "data" / "raw", Path(tmp), sources, target_sum=target_sum)
            times.append(time.perf_counter() - start)
        print(f"run {i + 1}: {times[-1]:.2f} s")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"prepare: median {statistics.median(times):.2f} s over {args.repeat} runs; peak RSS {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
